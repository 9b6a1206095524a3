package dr

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/engine/retention"
	"github.com/ahvfs/ahvfs/internal/testtls"
)

// testServer serves dir (password pw) over mutual TLS on 127.0.0.1 and
// returns its URL and a client's TLS configuration.
type testServer struct {
	url    string
	ca     *testtls.CA
	client *tls.Config
	log    *enginetest.LogBuffer
	close  func()
}

func startServer(t *testing.T, dir string, pw []byte, appendOnly bool, configure ...func(*Server)) *testServer {
	t.Helper()
	tmp := t.TempDir()
	ca := testtls.NewCA(t, tmp, "site")
	cert, key := ca.Server(t, "dr-server")
	tc, err := ServerTLS(cert, key, ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := &enginetest.LogBuffer{}
	s := &Server{AppendOnly: appendOnly, Log: slog.New(slog.NewTextHandler(logs, nil)), IdleClose: time.Hour,
		Open: func(ctx context.Context, writable bool) (*engine.Repository, error) {
			return engine.Open(ctx, dir, engine.OpenOptions{Writable: writable, Password: pw, LockWait: time.Minute})
		}}
	for _, f := range configure {
		f(s)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Shutdown waits for the handlers (an import aborting after
			// its client went) before the repository closes under them.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil {
				hs.Close()
			}
			s.Close()
		})
	}
	t.Cleanup(stop)
	ccert, ckey := ca.Client(t, "prod-site")
	cc, err := ClientTLS(ccert, ckey, ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{url: "https://" + ln.Addr().String(), ca: ca, client: cc, log: logs, close: stop}
}

func dial(t *testing.T, url string, tc *tls.Config) *Remote {
	t.Helper()
	r, err := Dial(url, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestSyncOverTLS(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, true)
	src := openW(t, srcDir, testPassword)
	disk := enginetest.DataDisk(t, 32<<20, 2)
	t0 := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	rp1, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "db01", Time: t0, Level: engine.LevelFull}, disk)
	if err != nil {
		t.Fatal(err)
	}
	dstPW := []byte("another password for the DR copy")
	srv := startServer(t, dstDir, dstPW, true)
	remote := dial(t, srv.url, srv.client)

	// Push to the server.
	rep, err := Sync(ctx, &Local{R: src}, remote, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 1 || rep.BytesSent == 0 || rep.PacksSent == 0 {
		t.Fatalf("push: %+v", rep)
	}
	overwrite(t, disk, 9<<20, 2<<20, 3)
	rp2, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "db01", Time: t0.Add(time.Hour), Level: engine.LevelIncremental}, disk)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Sync(ctx, &Local{R: src}, remote, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if limit := rp2.Stats.NewStoredBytes * 12 / 10; rep.RestorePoints != 1 || rep.BytesSent > limit {
		t.Fatalf("second push sent %d bytes, the incremental stored %d: %+v", rep.BytesSent, rp2.Stats.NewStoredBytes, rep)
	}

	// The append-only server refuses a remote forget.
	if _, err := remote.Forget(ctx, []string{rp1.Name()}); !errors.Is(err, ErrAppendOnly) {
		t.Fatalf("forget on an append-only server: %v", err)
	}
	if !strings.Contains(srv.log.String(), "prod-site") || !strings.Contains(srv.log.String(), "forget refused") {
		t.Fatalf("server log lacks the refusal and the client's name:\n%s", srv.log.String())
	}

	// Pull from the server, as a source, into a third repository.
	third := enginetest.Init(t, engine.InitOptions{CopyFrom: src, Password: []byte("third")})
	r3 := openW(t, third, []byte("third"))
	rep, err = Sync(ctx, remote, &Local{R: r3}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 2 || rep.PacksSent == 0 {
		t.Fatalf("pull: %+v", rep)
	}
	sameContent(t, src, r3, rp1.Name(), rp2.Name())
	verifyData(t, r3)
}

func TestServerRefusesClients(t *testing.T) {
	ctx := context.Background()
	_, dstDir := pair(t, false)
	srv := startServer(t, dstDir, nil, false)
	if _, err := dial(t, srv.url, srv.client).Info(ctx); err != nil {
		t.Fatalf("a client of the right CA: %v", err)
	}
	// No client certificate.
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.client.RootCAs, NextProtos: []string{"http/1.1"}}
	if _, err := dial(t, srv.url, noCert).Info(ctx); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// A certificate of another CA.
	other := testtls.NewCA(t, t.TempDir(), "elsewhere")
	cert, key := other.Client(t, "intruder")
	tc, err := ClientTLS(cert, key, srv.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.url, tc).Info(ctx); err == nil {
		t.Fatal("a client with a certificate of another CA was served")
	}
	// TLS 1.2 is refused.
	old := srv.client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if _, err := dial(t, srv.url, old).Info(ctx); err == nil {
		t.Fatal("a TLS 1.2 client was served")
	}
}

func TestRemoteForget(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := openW(t, dir, nil)
	rp, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "app", Time: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)}, enginetest.DataDisk(t, 8<<20, 4))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	srv := startServer(t, dir, nil, false)
	removed, err := dial(t, srv.url, srv.client).Forget(ctx, []string{rp.Name()})
	if err != nil || len(removed) != 1 || removed[0] != rp.Name() {
		t.Fatalf("forget on a server that is not append-only: %v, %v", removed, err)
	}
	ps, err := dial(t, srv.url, srv.client).Points(ctx)
	if err != nil || len(ps) != 0 {
		t.Fatalf("points after forget: %v, %v", ps, err)
	}
}

// A remote prune plans on the server (a dry run also says what gc would
// reclaim), carries the plan out on a server that is not append-only, and
// is refused, but for its dry run, by an append-only one.
func TestRemotePrune(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := openW(t, dir, nil)
	disk := enginetest.DataDisk(t, 8<<20, 4)
	var names []string
	for i := range 3 {
		overwrite(t, disk, int64(i)<<20, 1<<20, byte(i))
		rp, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "app", Time: time.Date(2026, 10, 1+i, 0, 0, 0, 0, time.UTC)}, disk)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rp.Name())
	}
	w.Close()
	keep1 := retention.Policy{Last: 1}

	ao := startServer(t, dir, nil, true)
	plan, reclaim, err := dial(t, ao.url, ao.client).Prune(ctx, nil, keep1, true)
	if err != nil || len(plan.Keep) != 1 || plan.Keep[0].Name() != names[2] || len(plan.Remove) != 2 || reclaim <= 0 {
		t.Fatalf("dry run on an append-only server: %+v, reclaim %d, %v", plan, reclaim, err)
	}
	if _, _, err := dial(t, ao.url, ao.client).Prune(ctx, nil, keep1, false); !errors.Is(err, ErrAppendOnly) {
		t.Fatalf("prune on an append-only server: %v", err)
	}
	if _, _, err := dial(t, ao.url, ao.client).Prune(ctx, nil, retention.Policy{}, true); err == nil {
		t.Fatal("a prune with no keep rule was accepted")
	}
	ao.close()

	srv := startServer(t, dir, nil, false)
	plan, _, err = dial(t, srv.url, srv.client).Prune(ctx, []string{"app"}, keep1, false)
	if err != nil || len(plan.Remove) != 2 {
		t.Fatalf("prune: %+v, %v", plan, err)
	}
	ps, err := dial(t, srv.url, srv.client).Points(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name() != names[2] {
		t.Fatalf("points after the prune: %v, %v", ps, err)
	}
}
