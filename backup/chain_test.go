package backup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestLevelCopy: a copy reads everything, like a full, and leaves the chain
// as it was: the reference still names the previous snapshot, no snapshot
// of the copy stays on the cluster, and the next incremental continues
// from the chained backup.
func TestLevelCopy(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	first := f.run(backup.Options{DataPath: backup.PathREST}).VMs[0]
	ref0, _ := backup.LoadReference(f.journal(), f.vms[0].UUID)
	guestWrite(t, f.vms[0].Disks[0], 2, 5)
	cp := f.run(backup.Options{DataPath: backup.PathREST, Level: backup.LevelCopy}).VMs[0]
	if cp.Level != engine.LevelCopy || cp.BytesRead < first.BytesRead/2 {
		t.Fatalf("copy: level %s, read %d (the full read %d)", cp.Level, cp.BytesRead, first.BytesRead)
	}
	f.checkDisks(cp, f.vms[0])
	rp, _ := f.repo.RestorePointByID(context.Background(), cp.ID)
	if rp.Level != engine.LevelCopy || rp.Parent != "" {
		t.Fatalf("copy restore point: level %s parent %q", rp.Level, rp.Parent)
	}
	ref1, _ := backup.LoadReference(f.journal(), f.vms[0].UUID)
	if ref1.Last.Snapshot.ID != ref0.Last.Snapshot.ID || ref1.Last.RestorePoint != first.ID {
		t.Fatalf("the copy moved the reference: %+v", ref1.Last)
	}
	f.assertClean(1)
	inc := f.run(backup.Options{DataPath: backup.PathREST}).VMs[0]
	if inc.Level != engine.LevelIncremental || inc.BytesRead > first.BytesRead/4 {
		t.Fatalf("after the copy: level %s, read %d", inc.Level, inc.BytesRead)
	}
	if rp, _ := f.repo.RestorePointByID(context.Background(), inc.ID); rp.Parent != first.ID {
		t.Fatalf("the incremental's parent is %s, want the chained full %s", rp.Parent, first.ID)
	}
	f.checkDisks(inc, f.vms[0])
}

// TestBandwidthLimit: --bwlimit holds the reads of a full to the rate
// (a lower bound on the duration, which load can only lengthen).
func TestBandwidthLimit(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	const rate = 16 << 20
	start := time.Now()
	v := f.run(backup.Options{DataPath: backup.PathREST, BandwidthLimit: rate}).VMs[0]
	took := time.Since(start)
	// The limiter starts with a burst of a tenth of a second.
	if min := time.Duration(float64(v.BytesRead-rate/10) / rate * float64(time.Second)); took < min {
		t.Fatalf("read %d bytes in %v at --bwlimit %d B/s: faster than %v", v.BytesRead, took, rate, min)
	}
	t.Logf("read %d bytes in %v with a limit of 16 MiB/s", v.BytesRead, took.Round(time.Millisecond))
	f.checkDisks(v, f.vms[0])
}

// TestChainKeepsItsAPI: a VM whose chain was built through v4 continues
// through v4 although the run's client uses v3 (auto-detection fell back
// after a probe failed), incrementally; without a v4 client to be had, the
// backup is a full through v3 that says why.
func TestChainKeepsItsAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV4})
	v4 := f.cl
	f.run(backup.Options{DataPath: backup.PathISCSI})
	v3, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: f.sim.URL(), PasswordFile: f.sim.PasswordFile(),
		CACertFile: f.sim.CAFile(), API: nutanix.APIV3, RateLimit: -1, TaskPollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	guestWrite(t, f.vms[0].Disks[0], 2, 6)
	f.cl = v3
	clusters := func(_ context.Context, api nutanix.APIVersion) (nutanix.Cluster, error) {
		if clusterjob.Family(api) == nutanix.APIV4 {
			return v4, nil
		}
		return v3, nil
	}
	v := f.run(backup.Options{DataPath: backup.PathISCSI, Clusters: clusters}).VMs[0]
	if v.Level != engine.LevelIncremental {
		t.Fatalf("level %s (%v), want incremental through the chain's API", v.Level, v.Warnings)
	}
	rp, _ := f.repo.RestorePointByID(context.Background(), v.ID)
	var cfg clusterjob.VMConfig
	if err := json.Unmarshal(rp.Config, &cfg); err != nil || cfg.API != string(nutanix.APIV4) {
		t.Fatalf("restore point taken through %q (%v), want v4", cfg.API, err)
	}
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
	// No v4 client: a full through v3, saying why.
	guestWrite(t, f.vms[0].Disks[0], 1, 7)
	v = f.run(backup.Options{DataPath: backup.PathISCSI}).VMs[0]
	if v.Level != engine.LevelFull || len(v.Warnings) == 0 || !strings.Contains(strings.Join(v.Warnings, " "), "API v4") {
		t.Fatalf("without v4: level %s warnings %v", v.Level, v.Warnings)
	}
	f.checkDisks(v, f.vms[0])
}

// TestLegacyStateMoves: a repository written before the journal kept its
// reference and its ledger in the index; the first backup moves the
// reference into the journal (so it continues the chain incrementally)
// and sweeps the ledger's leftover snapshot.
func TestLegacyStateMoves(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	ctx := context.Background()
	f.run(backup.Options{DataPath: backup.PathREST})
	// Turn the new state into the old one.
	ref, err := backup.LoadReference(f.journal(), f.vms[0].UUID)
	if err != nil || ref == nil {
		t.Fatal(ref, err)
	}
	refJSON, _ := json.Marshal(ref)
	if err := f.repo.PutState(ctx, "ref/"+ref.VMUUID, refJSON); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.journal().Dir(), "kept", "ref-"+ref.VMUUID+".json")); err != nil {
		t.Fatal(err)
	}
	leftover, err := f.cl.CreateSnapshot(ctx, f.vms[0].UUID, "ahvfs-vm1-20261101T000000Z-0badf00d", false)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(map[string]any{"kind": "snapshot", "name": leftover.Name, "id": leftover.ID, "vm_uuid": f.vms[0].UUID})
	if err := f.repo.PutState(ctx, "obj/snapshot/"+leftover.Name, entry); err != nil {
		t.Fatal(err)
	}

	guestWrite(t, f.vms[0].Disks[0], 1, 8)
	rep := f.run(backup.Options{DataPath: backup.PathREST})
	if v := rep.VMs[0]; v.Level != engine.LevelIncremental {
		t.Fatalf("after the move: level %s (%v)", v.Level, v.Warnings)
	}
	if rep.Cleanup == nil || len(rep.Cleanup.Deleted) != 1 || !strings.Contains(rep.Cleanup.Deleted[0], leftover.Name) {
		t.Fatalf("cleanup %+v, want the ledger's snapshot deleted", rep.Cleanup)
	}
	for _, prefix := range []string{"ref/", "obj/"} {
		if st, _ := f.repo.ListState(ctx, prefix); len(st) != 0 {
			t.Errorf("index still holds %d %s keys", len(st), prefix)
		}
	}
	f.checkDisks(rep.VMs[0], f.vms[0])
	f.assertClean(1)
}

// TestProbe500KeepsChain: every request the client sends answers 500
// once, then passes (probes included). The client's one retry policy rides
// it out: auto-detection still picks v4, and the second backup continues
// the chain incrementally through v4.
func TestProbe500KeepsChain(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV4})
	f.run(backup.Options{DataPath: backup.PathISCSI})
	if err := f.sim.SetFaults(prismsim.Faults{FailFirst: 1, Paths: []string{"/api/"}}); err != nil {
		t.Fatal(err)
	}
	auto, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: f.sim.URL(), PasswordFile: f.sim.PasswordFile(),
		CACertFile: f.sim.CAFile(), RateLimit: -1, TaskPollInterval: 10 * time.Millisecond, RetryBaseDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	if auto.API() != nutanix.APIV4 {
		t.Fatalf("auto picked %s under one 500 per request: %s", auto.API(), auto.Report())
	}
	guestWrite(t, f.vms[0].Disks[0], 2, 9)
	f.cl = auto
	v := f.run(backup.Options{DataPath: backup.PathISCSI}).VMs[0]
	f.sim.SetFaults(prismsim.Faults{})
	if v.Level != engine.LevelIncremental {
		t.Fatalf("level %s (%v), want incremental", v.Level, v.Warnings)
	}
	if f.sim.InjectedErrors(500) == 0 {
		t.Fatal("no 500 was injected")
	}
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

// TestPersistent500SentOncePerAttempt: requests the cluster answers 500
// every time are each sent once per attempt of the transport's one retry
// policy (the fixture's MaxAttempts), never again by the job: the VM fails
// with the transport's error, the recovery point the create may have made
// is left in the journal (its lookup failed too), and a sweep run once the
// cluster answers again leaves nothing behind.
func TestPersistent500SentOncePerAttempt(t *testing.T) {
	const maxAttempts = 9 // the fixture's client
	f := newFixture(t, fixtureOptions{API: nutanix.APIV4})
	if err := f.sim.SetFaults(prismsim.Faults{FailFirst: 1 << 20, Paths: []string{"/config/recovery-points"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := backup.Run(context.Background(), f.repo, f.cl, f.opts(backup.Options{}))
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(rep.VMs) != 1 || rep.VMs[0].Err == "" {
		t.Fatalf("the VM did not fail: %+v", rep.VMs)
	}
	if !strings.Contains(rep.VMs[0].Err, fmt.Sprintf("after %d attempts", maxAttempts)) {
		t.Errorf("error %q does not say the request was tried %d times", rep.VMs[0].Err, maxAttempts)
	}
	sent := f.sim.FailedFirst()
	create := false
	for req, n := range sent {
		t.Logf("%s: sent %d times", req, n)
		if n != maxAttempts {
			t.Errorf("%s reached the cluster %d times, want %d (one per attempt)", req, n, maxAttempts)
		}
		create = create || strings.HasPrefix(req, "POST ")
	}
	if !create {
		t.Errorf("the recovery point create never reached the cluster: %v", sent)
	}
	f.sim.SetFaults(prismsim.Faults{})
	if _, err := f.sweep(); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	f.assertClean(0)
}
