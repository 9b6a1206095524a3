package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nfs"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/chromedp/chromedp"
)

// TestConsoleInstant: an instant restore from the console. The VM runs at
// once from the repository's NFS export (ahvfs's own server, as ahvfs
// nfs-serve runs it, named by the cluster's instant_nfs); the instant
// restores page lists it, hydrating, to the operator scoped to its VM; a
// restore-files user may not finish it; once hydrated, finish removes the
// external repository and releases the restore point, and the list is
// empty.
func TestConsoleInstant(t *testing.T) {
	ctx := context.Background()
	e := newEnvWith(t, simtest.Options{Options: prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"},
		HydrationSettle: 200 * time.Millisecond}}, "db01")
	if err := e.sim.SetVMCategories(ctx, "db01", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Backups read through v3 (the simulator's REST data path: it has no
	// iSCSI target here); instant restores need v4.2, so the same Prism is
	// a second [[cluster]] through v4, with instant_nfs.
	e.clusterKeys = fmt.Sprintf(`[[cluster]]
name = "prod4"
prism = %q
user = "admin"
password_file = %q
ca_cert = %q
api = "v4"
instant_nfs = %q`, e.sim.Addr(), e.sim.PasswordFile(), e.sim.CAFile(), ln.Addr().String())
	users := filepath.Join(t.TempDir(), "users.json")
	token := consoleUsers(t, users)
	cfg := e.consoleConfig(users, "", `
[[policy]]
name = "silver"
cluster = "prod"
vms = ["db01"]
every = "24h"
`)
	e.start(cfg)
	point := e.expect("backup/silver")["backup/silver"].VMs[0].RestorePoint

	// The NFS server of the repository.
	r, err := engine.Open(ctx, e.repo, engine.OpenOptions{LockWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := rptree.New(r, rptree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- nfs.Serve(nctx, tree, ln, nfs.Options{}) }()
	t.Cleanup(func() { cancel(); <-served; tree.Close(); r.Close() })
	// The simulator's hydrators go before the export does.
	t.Cleanup(func() { e.sim.Close() })

	base := "http://" + serveHTTP(t, e, cfg.HTTP)
	client := func(user string) *consoleClient {
		jar, _ := cookiejar.New(nil)
		c := &consoleClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
		c.login(user)
		return c
	}
	ops, hd := client("ops"), client("helpdesk")
	admin := &consoleClient{t: t, base: base, c: &http.Client{Timeout: 30 * time.Second}, bearer: token}

	e.sim.PauseHydration(true)
	at := strings.TrimPrefix(point, "db01@")
	code, body := ops.call("POST", "/api/v1/vms/db01/points/"+at+"/restore", map[string]any{"name": "db01-ir", "power_on": true, "instant": true, "cluster": "prod4"})
	if code != http.StatusAccepted {
		t.Fatalf("instant restore: %d %s", code, body)
	}
	rj := e.expect("restore/")["restore/"]
	if !slices.ContainsFunc(rj.Notes, func(n string) bool { return strings.Contains(n, "runs from nfs://"+ln.Addr().String()) }) {
		t.Fatalf("the restore job's notes: %q", rj.Notes)
	}
	var list struct {
		VMs []struct {
			Cluster, Name string
			SourceVM      string `json:"source_vm"`
			Hydrated      bool
			Disks         []struct {
				Size      int64
				Remaining int64 `json:"remaining_bytes"`
			}
		}
	}
	code, body = ops.call("GET", "/api/v1/instant", nil)
	if json.Unmarshal([]byte(body), &list); code != http.StatusOK || len(list.VMs) != 1 || list.VMs[0].Name != "db01-ir" ||
		list.VMs[0].SourceVM != "db01" || list.VMs[0].Hydrated || len(list.VMs[0].Disks) != 1 ||
		list.VMs[0].Disks[0].Remaining != list.VMs[0].Disks[0].Size || list.VMs[0].Disks[0].Size == 0 {
		t.Fatalf("ops's instant restores: %d %s", code, body)
	}
	if code, body := hd.call("POST", "/api/v1/instant/prod4/db01-ir/finish", nil); code != http.StatusForbidden {
		t.Fatalf("helpdesk finishes: %d %s", code, body)
	}
	if code, body := ops.call("POST", "/api/v1/instant/prod4/nothing/finish", nil); code != http.StatusNotFound {
		t.Fatalf("finish of no such VM: %d %s", code, body)
	}
	if v, ok := e.sim.VM("db01-ir"); !ok || len(v.Disks) != 1 {
		t.Fatalf("db01-ir on the cluster: %+v", v)
	}

	// The page: the VM hydrating; Finish, and its job ends once
	// hydration does.
	b := newBrowser(t, base)
	b.login("ops")
	b.goTo("#/instant", `tr[data-vm="db01-ir"]`)
	if got := b.text(`tr[data-vm="db01-ir"] .muted`); !strings.HasPrefix(got, "0% ·") {
		t.Errorf("db01-ir's hydration reads %q", got)
	}
	if n := b.count("button.finish"); n != 0 {
		t.Errorf("a VM still hydrating is offered %d Finish buttons", n)
	}
	b.shot("instant-hydrating")
	if code, body := ops.call("POST", "/api/v1/instant/prod4/db01-ir/finish", nil); code != http.StatusConflict || !strings.Contains(body, "still hydrating") {
		t.Fatalf("finish while hydrating: %d %s", code, body)
	}
	e.sim.PauseHydration(false)
	// The page reloads every few seconds: Finish appears once hydrated.
	b.do(chromedp.WaitVisible(chromedp.CSS(`tr[data-vm="db01-ir"] button.finish`)))
	b.shot("instant-hydrated")
	b.do(chromedp.Click(chromedp.CSS(`tr[data-vm="db01-ir"] button.finish`)), chromedp.WaitVisible(chromedp.CSS(`h1 .badge.ok`)))
	b.shot("instant-finished")
	fj := e.expect("instant-finish/")["instant-finish/"]
	notes := strings.Join(fj.Notes, "\n")
	if !strings.Contains(notes, "removed the external repository") || !strings.Contains(notes, "released "+point) {
		t.Fatalf("the finish job's notes:\n%s", notes)
	}
	if code, body := admin.call("GET", "/api/v1/instant", nil); code != http.StatusOK || !strings.Contains(body, `"vms":[]`) {
		t.Fatalf("instant restores once finished: %d %s", code, body)
	}
}
