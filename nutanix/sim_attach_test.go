package nutanix_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// replyLoser is a TLS proxy in front of the simulator that forwards the
// first POST to each v2 volume group /open or /close and then answers the
// client 500, as if the reply were lost on the way: the change is applied
// and the client's retry carries a stale logical_timestamp.
type replyLoser struct {
	mu     sync.Mutex
	lost   map[string]bool
	posts  int
	srv    *httptest.Server
	caFile string
	simCAs *x509.CertPool
}

func newReplyLoser(t *testing.T, s *prismsim.Sim) *replyLoser {
	t.Helper()
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	pem0, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem0)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	p := &replyLoser{lost: map[string]bool{}, simCAs: pool}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verb := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/volume_groups/") || verb != "open" && verb != "close" {
			rp.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		p.posts++
		first := !p.lost[r.URL.Path]
		p.lost[r.URL.Path] = true
		p.mu.Unlock()
		if !first {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("proxied %s %s: %d %s", r.Method, r.URL.Path, rec.Code, rec.Body)
		}
		http.Error(w, `{"message":"reply lost (test proxy)"}`, http.StatusInternalServerError)
	}))
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "proxy-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.caFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAttachReplyLost: a v2 attach or detach whose reply is lost after the
// cluster applied it is retried with the logical_timestamp it read
// before, which the cluster refuses (409); the client reads the group
// again, finds the initiator as wanted and succeeds.
func TestAttachReplyLost(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	direct := simClient(t, s, nutanix.APIV3)
	ctx := ctxT(t)
	ctrs, err := direct.ListStorageContainers(ctx)
	if err != nil || len(ctrs) == 0 {
		t.Fatalf("containers %v %v", ctrs, err)
	}
	vg, err := direct.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: "ahvfs-reply-lost", ClusterUUID: ctrs[0].ClusterUUID,
		ContainerUUID: ctrs[0].UUID, DiskSizes: []int64{1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	p := newReplyLoser(t, s)
	o := simOptions(s, nutanix.APIV3)
	o.Endpoint, o.CACertFile = p.srv.URL, p.caFile
	c := newClient(t, o)
	const iqn = "iqn.2026-12.io.ahvfs:reply-lost"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.simCAs}}}
	attached := func() bool {
		t.Helper()
		rq, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/api/nutanix/v2.0/volume_groups/"+vg.UUID, nil)
		rq.SetBasicAuth(s.User(), s.Password())
		resp, err := hc.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var g struct {
			AttachmentList []struct {
				ISCSIInitiatorName string `json:"iscsi_initiator_name"`
			} `json:"attachment_list"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&g); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET volume group: %d %v", resp.StatusCode, err)
		}
		for _, a := range g.AttachmentList {
			if a.ISCSIInitiatorName == iqn {
				return true
			}
		}
		return false
	}
	if _, err := c.AttachISCSIClient(ctx, vg.UUID, iqn); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !attached() {
		t.Fatal("the initiator is not attached")
	}
	if err := c.DetachISCSIClient(ctx, vg.UUID, iqn); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if attached() {
		t.Fatal("the initiator is still attached")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.posts < 4 {
		t.Errorf("%d attach/detach posts: the lost replies were not retried", p.posts)
	}
}
