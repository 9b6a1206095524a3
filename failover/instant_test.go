package failover_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/failover"
	"github.com/ahvfs/ahvfs/nfs"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/rptree"
)

// TestInstantTestFailover: with instant_nfs, a test failover's VMs run at
// once from the DR repository through the NFS server (hydration paused:
// they read from it all along), each point held; undo removes the VMs,
// their external repository and the holds, even when the plan no longer
// names instant_nfs.
func TestInstantTestFailover(t *testing.T) {
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	drs := simtest.Start(t, simtest.Options{Options: prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}})
	for i, n := range []string{"db01", "web01"} {
		if _, err := prod.AddVM(ctx, n, []string{enginetest.Ext4Image(t, 16<<20, uint64(i+11))}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	repo := backUp(t, prod)
	// The NFS server reads the DR repository (a reader beside the
	// failover's writer, as nfs-serve is).
	ro := enginetest.Open(t, repo, engine.OpenOptions{})
	tree, err := rptree.New(ro, rptree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- nfs.Serve(sctx, tree, ln, nfs.Options{}) }()
	t.Cleanup(func() { cancel(); <-done; ro.Close() })
	t.Cleanup(func() { drs.Close() }) // the hydrators go before the export
	drs.PauseHydration(true)

	planFile := filepath.Join(t.TempDir(), "ir.toml")
	os.WriteFile(planFile, []byte(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
instant_nfs = %q
test_network_map = ["vlan10=vlan20"]
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web01"]
`, repo, ln.Addr().String())+siteTable("prod", prod)+
		fmt.Sprintf("[[cluster]]\nname = \"dr\"\nprism = %q\nuser = \"admin\"\npassword_file = %q\nca_cert = %q\napi = \"v4\"\n",
			drs.Addr(), drs.PasswordFile(), drs.CAFile())), 0o600)
	plan, err := failover.Load(planFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := failover.Options{TuneCluster: tune}
	before := drs.Objects()
	st, err := failover.Test(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	vms, _ := connect(t, drs).ListVMs(ctx)
	for _, v := range st.VMs {
		i := slices.IndexFunc(vms, func(x nutanix.VM) bool { return x.UUID == v.UUID })
		if !v.Instant || i < 0 || vms[i].PowerState != nutanix.PowerOn {
			t.Fatalf("%s: instant %v, at DR %+v", v.Name, v.Instant, vms)
		}
	}
	if got := drs.Objects(); len(got.ExternalRepositories) != 2 {
		t.Fatalf("%d external repositories registered, want 2 (one per VM)", len(got.ExternalRepositories))
	}
	r := enginetest.Open(t, repo, engine.OpenOptions{})
	holds, err := r.Holds(ctx)
	r.Close()
	if err != nil || len(holds) != 2 {
		t.Fatalf("holds while the copies hydrate: %+v %v; want 2", holds, err)
	}
	// The plan is edited before the undo to drop instant_nfs: the state,
	// not the plan, says the VMs ran from the repository.
	edited := *plan
	edited.InstantNFS = ""
	if _, err := failover.Undo(ctx, &edited, o); err != nil {
		t.Fatal(err)
	}
	drs.WaitTasks(time.Minute)
	after := drs.Objects()
	if !slices.Equal(vmNames(after), vmNames(before)) || len(after.ExternalRepositories) != 0 {
		t.Fatalf("DR site after undo: VMs %v, %d external repositories", vmNames(after), len(after.ExternalRepositories))
	}
	r = enginetest.Open(t, repo, engine.OpenOptions{})
	defer r.Close()
	if holds, err := r.Holds(ctx); err != nil || len(holds) != 0 {
		t.Fatalf("holds after undo: %+v %v", holds, err)
	}
}
