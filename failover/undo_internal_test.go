package failover

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestUndoByNameSparesOthers: a failover killed before it learnt its VM's
// UUID leaves only the name; undo deletes the VM of that name it made and
// never one that had the name before the restore.
func TestUndoByNameSparesOthers(t *testing.T) {
	ctx := context.Background()
	drs := simtest.Start(t, simtest.Options{})
	img := enginetest.Ext4Image(t, 8<<20, 1)
	foreign, err := drs.AddVM(ctx, "db01-drtest", []string{img}, prismsim.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	made, err := drs.AddVM(ctx, "db01-drtest", []string{img}, prismsim.VMOptions{Cluster: "cluster-b"})
	if err != nil {
		t.Fatal(err)
	}
	repo := enginetest.Init(t, engine.InitOptions{})
	planFile := filepath.Join(t.TempDir(), "p.toml")
	site := clusterjob.Site{Name: "dr", Prism: drs.Addr(), User: "admin", PasswordFile: drs.PasswordFile(), CACert: drs.CAFile()}
	p := &Plan{File: planFile, Name: "p", TargetCluster: "dr", Repository: repo, Cluster: []SiteConfig{{site}}, Sites: map[string]int{"dr": 0}}
	s := &State{V: stateVersion, Plan: planFile, Mode: ModeTest, Site: site.Prism, Started: time.Now(), file: stateFile(repo, "p", planFile),
		VMs: []VMState{{Stage: 1, VM: "db01", Name: "db01-drtest", Status: VMRestoring, Existing: []string{foreign.UUID}}}}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	tune := func(o *nutanix.Options) { o.RateLimit, o.TaskPollInterval = -1, 10*time.Millisecond }
	if _, err := Undo(ctx, p, Options{TuneCluster: tune}); err != nil {
		t.Fatal(err)
	}
	drs.WaitTasks(time.Minute)
	if _, ok := drs.VM(foreign.UUID); !ok {
		t.Fatal("undo deleted a VM that had the name before the failover")
	}
	if _, ok := drs.VM(made.UUID); ok {
		t.Fatal("undo left the VM the failover made")
	}
	if _, err := os.Stat(s.file); !os.IsNotExist(err) {
		t.Fatalf("state after undo: %v", err)
	}
}

// TestPlanLock: while a failover or undo of a plan runs, another is
// refused.
func TestPlanLock(t *testing.T) {
	f := stateFile(t.TempDir(), "p", "/etc/ahvfs/p.toml")
	first, err := lockPlan(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockPlan(f); err == nil {
		t.Fatal("a second failover of the plan got its lock")
	}
	first.Close()
	second, err := lockPlan(f)
	if err != nil {
		t.Fatalf("after the first ended: %v", err)
	}
	second.Close()
	if stateFile("/r", "p", "/a/p.toml") == stateFile("/r", "p", "/b/p.toml") {
		t.Fatal("two plans of one name in different directories share a state")
	}
}
