package clusterjob_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// The crash tests run a job in a child process (this test binary again,
// with AHVFS_JOURNAL_CHILD naming a scenario), kill it with SIGKILL once
// it has created its objects, and sweep.
func TestMain(m *testing.M) {
	if sc := os.Getenv("AHVFS_JOURNAL_CHILD"); sc != "" {
		if err := runChild(sc); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

func clientOptions(url, ca, pw string, api nutanix.APIVersion) nutanix.Options {
	return nutanix.Options{Endpoint: url, PasswordFile: pw, CACertFile: ca, API: api, RateLimit: -1,
		TaskPollInterval: 10 * time.Millisecond}
}

// runChild creates the scenario's objects through a job, says "ready" and
// waits to be killed.
func runChild(scenario string) error {
	ctx := context.Background()
	cl, err := nutanix.Connect(ctx, clientOptions(os.Getenv("SIM_URL"), os.Getenv("SIM_CA"), os.Getenv("SIM_PW"),
		nutanix.APIVersion(os.Getenv("SIM_API"))))
	if err != nil {
		return err
	}
	j, err := clusterjob.OpenJournal(os.Getenv("JOURNAL"))
	if err != nil {
		return err
	}
	jb, err := j.Begin("test", cl, clusterjob.JobOptions{})
	if err != nil {
		return err
	}
	vm, err := cl.GetVM(ctx, os.Getenv("VM_UUID"))
	if err != nil {
		return err
	}
	switch scenario {
	case "temporaries":
		snap, _, err := jb.CreateSnapshot(ctx, vm.UUID, vm.Name, false)
		if err != nil {
			return err
		}
		if _, _, err := jb.CreateVolumeGroupFromSnapshotDisk(ctx, snap, vm.Disks[0].UUID, vm.Name+"-disk0"); err != nil {
			return err
		}
		if cl.API() == nutanix.APIV3 {
			if _, _, err := jb.CreateImage(ctx, nutanix.ImageSpec{Type: nutanix.DiskImage, ClusterUUID: vm.ClusterUUID}, "upload"); err != nil {
				return err
			}
		}
		// Killed between a record and its create call: nothing exists.
		if err := jb.Record(clusterjob.Object{Kind: clusterjob.KindVolumeGroup, Name: jb.Name("vg", "never-created")}); err != nil {
			return err
		}
	case "overwrite-building", "overwrite-committed":
		_, o, err := jb.CreateVM(ctx, nutanix.VMSpec{Name: vm.Name, ClusterUUID: vm.ClusterUUID, NumSockets: 1, CoresPerSocket: 1,
			MemoryBytes: 1 << 30}, &vm)
		if err != nil {
			return err
		}
		if err := jb.PowerOffOriginal(ctx, &o); err != nil {
			return err
		}
		if scenario == "overwrite-committed" {
			o.Replaces.Committed = true // as CommitReplacement writes it before deleting the original
			if err := jb.Record(o); err != nil {
				return err
			}
		}
	case "snapshot-in-flight":
		// Killed while the cluster's snapshot task runs (the parent waits
		// for the task in the journal).
		fmt.Println("ready")
		_, _, err := jb.CreateSnapshot(ctx, vm.UUID, vm.Name, false)
		return err
	case "instant-result":
		// An instant restore killed between forgetting its VM (the
		// result) and its repository, once the VM's disk is hydrated: the
		// disk has no data source left, the description names the
		// repository.
		repo, _, err := jb.CreateExternalRepository(ctx, nutanix.ExternalRepository{Name: jb.Name("nfs", "test"), ExportName: "/", Host: "127.0.0.1", Port: 2049})
		if err != nil {
			return err
		}
		_, o, err := jb.CreateVM(ctx, nutanix.VMSpec{Name: "restored", ClusterUUID: vm.ClusterUUID, MemoryBytes: 1 << 30,
			Description: "restored" + clusterjob.InstantMark + repo.Name, Disks: []nutanix.DiskSpec{{SizeBytes: 1 << 20}}}, nil)
		if err != nil {
			return err
		}
		if err := jb.Forget(o); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return nil
}

type env struct {
	t   *testing.T
	sim *prismsim.Sim
	j   *clusterjob.Journal
	vm  prismsim.VMInfo
}

func newEnv(t *testing.T, vmOpts prismsim.VMOptions) *env {
	s := simtest.Start(t, simtest.Options{})
	vm, err := s.AddVM(context.Background(), "web01", []string{enginetest.DataDisk(t, 4<<20, 1)}, vmOpts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, sim: s, j: openJournal(t), vm: vm}
}

func (e *env) client(api nutanix.APIVersion) nutanix.Cluster {
	e.t.Helper()
	cl, err := nutanix.Connect(context.Background(), clientOptions(e.sim.URL(), e.sim.CAFile(), e.sim.PasswordFile(), api))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	return cl
}

// crash runs scenario in a child job through api and kills it once its
// objects exist.
func (e *env) crash(scenario string, api nutanix.APIVersion) {
	e.t.Helper()
	e.crashWhen(scenario, api, nil)
}

// crashWhen is crash, killing the child once it is ready and then ready
// (nil: at once) reports true.
func (e *env) crashWhen(scenario string, api nutanix.APIVersion, ready func() bool) {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AHVFS_JOURNAL_CHILD="+scenario, "SIM_URL="+e.sim.URL(), "SIM_CA="+e.sim.CAFile(),
		"SIM_PW="+e.sim.PasswordFile(), "SIM_API="+string(api), "JOURNAL="+e.j.Dir(), "VM_UUID="+e.vm.UUID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	for deadline := time.Now().Add(30 * time.Second); ready != nil && !ready() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if strings.TrimSpace(line) != "ready" {
		e.t.Fatalf("child %s: %q, stderr: %s", scenario, line, stderr.String())
	}
	if ready == nil {
		e.sim.WaitIdle(30*time.Second, 0)
	}
}

// inventory is every object on the simulated cluster a job may leave.
func (e *env) inventory() []string {
	e.t.Helper()
	ctx := context.Background()
	cl := e.client(nutanix.APIV4)
	var out []string
	// v3 vm_snapshots and v4 recovery points are listed by their own API.
	seen := map[string]bool{}
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		snaps, err := e.client(api).ListSnapshots(ctx, "")
		if err != nil {
			e.t.Fatal(err)
		}
		for _, s := range snaps {
			if !seen[s.Name] { // one snapshot may be both (a v4 VM recovery point)
				seen[s.Name] = true
				out = append(out, "snapshot "+s.Name)
			}
		}
	}
	vgs, err := cl.ListVolumeGroups(ctx, "")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range vgs {
		out = append(out, "vg "+g.Name)
	}
	ims, err := cl.ListImages(ctx, "")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, im := range ims {
		out = append(out, "image "+im.Name)
	}
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range vms {
		out = append(out, fmt.Sprintf("vm %s %s %s", v.Name, v.UUID, v.PowerState))
	}
	sort.Strings(out)
	return out
}

func (e *env) sweep(clusters clusterjob.Clusters) (*clusterjob.Report, error) {
	return clusterjob.Sweep(context.Background(), e.j, clusters, nil)
}

// TestSweepAfterKill: a job killed after creating a snapshot (or recovery
// point), a volume group and an image leaves them; the sweep deletes them
// through the API that created them and reports exactly those; the cluster
// is as before; a second sweep finds nothing.
func TestSweepAfterKill(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) {
			e := newEnv(t, prismsim.VMOptions{})
			before := e.inventory()
			e.crash("temporaries", api)
			during := e.inventory()
			want := 2
			if api == nutanix.APIV3 {
				want = 3
			}
			if len(during) != len(before)+want {
				t.Fatalf("the killed job left %d objects, want %d:\n%s", len(during)-len(before), want, strings.Join(during, "\n"))
			}
			// A client of the other API family cannot address them: the
			// sweep says so and keeps the entries.
			other := nutanix.APIV4
			if api == nutanix.APIV4 {
				other = nutanix.APIV3
			}
			rep, err := e.sweep(clusterjob.Only(e.client(other)))
			if err == nil || len(rep.Deleted) != 0 || len(rep.Unresolved) != want+1 || !strings.Contains(rep.Unresolved[0], "cleanup --api "+string(api)) {
				t.Fatalf("sweep through %s: %v %+v", other, err, rep)
			}
			conn := clusterjob.NewConnector(clientOptions(e.sim.URL(), e.sim.CAFile(), e.sim.PasswordFile(), other), e.client(other))
			defer conn.Close()
			rep, err = e.sweep(conn.Clusters)
			if err != nil {
				t.Fatalf("sweep: %v %+v", err, rep)
			}
			if len(rep.Deleted) != want || len(rep.Unresolved) != 0 {
				t.Fatalf("sweep report %+v, want %d deletions", rep, want)
			}
			if after := e.inventory(); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Fatalf("cluster after the sweep:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
			}
			if p, _ := e.j.Pending(); len(p) != 0 {
				t.Fatalf("journal keeps %+v", p)
			}
			rep, err = e.sweep(conn.Clusters)
			if err != nil || rep.Summary() != "nothing to clean up" {
				t.Fatalf("second sweep: %v %+v", err, rep)
			}
		})
	}
}

// TestSweepLeavesOtherPrism: a dead job records the Prism it worked
// through. A sweep through another Prism (a second site, to which the
// objects are unknown, and an object not found counts as gone) leaves the
// job alone and says where it belongs; the sweep through its own Prism
// deletes its objects.
func TestSweepLeavesOtherPrism(t *testing.T) {
	e := newEnv(t, prismsim.VMOptions{})
	before := e.inventory()
	e.crash("temporaries", nutanix.APIV3)
	during := e.inventory()
	other := &env{t: t, sim: simtest.Start(t, simtest.Options{})}
	rep, err := e.sweep(clusterjob.Only(other.client(nutanix.APIV3)))
	if err != nil || len(rep.Deleted) != 0 || len(rep.Unresolved) != 0 || len(rep.Elsewhere) != 1 ||
		!strings.Contains(rep.Elsewhere[0], e.sim.URL()) || !strings.Contains(rep.Summary(), "another Prism") {
		t.Fatalf("sweep through another Prism: %v %+v", err, rep)
	}
	if now := e.inventory(); strings.Join(now, "\n") != strings.Join(during, "\n") {
		t.Fatalf("a sweep through another Prism changed the job's site:\n%s", strings.Join(now, "\n"))
	}
	if p, _ := e.j.Pending(); len(p) != 4 {
		t.Fatalf("journal after the other Prism's sweep: %+v, want the job's 4 entries", p)
	}
	rep, err = e.sweep(clusterjob.Only(e.client(nutanix.APIV3)))
	if err != nil || len(rep.Deleted) != 3 || len(rep.Elsewhere) != 0 {
		t.Fatalf("sweep through the job's Prism: %v %+v", err, rep)
	}
	if after := e.inventory(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("cluster after the sweep:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// TestSweepOverwrite: an overwriting restore killed before its commit is
// undone (new VM deleted, the original powered on again); killed after it,
// finished (original deleted, new VM kept). Never neither VM.
func TestSweepOverwrite(t *testing.T) {
	for _, tc := range []struct {
		scenario     string
		originalLeft bool
	}{{"overwrite-building", true}, {"overwrite-committed", false}} {
		t.Run(tc.scenario, func(t *testing.T) {
			e := newEnv(t, prismsim.VMOptions{PowerState: "ON"})
			before := e.inventory()
			e.crash(tc.scenario, nutanix.APIV4)
			cl := e.client(nutanix.APIV4)
			if v, err := cl.GetVM(context.Background(), e.vm.UUID); err != nil || v.PowerState != nutanix.PowerOff {
				t.Fatalf("the original after the kill: %+v %v (want powered off)", v, err)
			}
			rep, err := e.sweep(clusterjob.Only(cl))
			if err != nil {
				t.Fatalf("sweep: %v %+v", err, rep)
			}
			after := e.inventory()
			if tc.originalLeft {
				if strings.Join(after, "\n") != strings.Join(before, "\n") || len(rep.Deleted) != 1 {
					t.Fatalf("undo: report %+v; cluster\n%s\nwant\n%s", rep, strings.Join(after, "\n"), strings.Join(before, "\n"))
				}
				return
			}
			if _, err := cl.GetVM(context.Background(), e.vm.UUID); err == nil {
				t.Fatal("the original survived a committed overwrite")
			}
			vms, _ := cl.ListVMs(context.Background())
			if len(vms) != 1 || vms[0].Name != e.vm.Name || len(rep.Finished) != 1 {
				t.Fatalf("finished overwrite: VMs %+v, report %+v", vms, rep)
			}
		})
	}
}

// lyingCluster acknowledges deletions and performs none.
type lyingCluster struct{ nutanix.Cluster }

func (lyingCluster) DeleteSnapshot(context.Context, string) error    { return nil }
func (lyingCluster) DeleteVolumeGroup(context.Context, string) error { return nil }
func (lyingCluster) DeleteImage(context.Context, string) error       { return nil }

// TestSweepNeverClaimsAbsentDeletion: a cluster that acknowledges
// deletions without performing them gets no "deleted" in the report; the
// entries stay for the next sweep, which deletes them for real.
func TestSweepNeverClaimsAbsentDeletion(t *testing.T) {
	e := newEnv(t, prismsim.VMOptions{})
	before := e.inventory()
	e.crash("temporaries", nutanix.APIV3)
	cl := e.client(nutanix.APIV3)
	rep, err := e.sweep(clusterjob.Only(lyingCluster{cl}))
	if err == nil || len(rep.Deleted) != 0 || len(rep.Unresolved) != 3 {
		t.Fatalf("sweep through a lying cluster: %v %+v", err, rep)
	}
	for _, u := range rep.Unresolved {
		if !strings.Contains(u, "still present") {
			t.Errorf("unresolved %q does not say the object is still there", u)
		}
	}
	if rep, err = e.sweep(clusterjob.Only(cl)); err != nil || len(rep.Deleted) != 3 {
		t.Fatalf("honest sweep: %v %+v", err, rep)
	}
	if after := e.inventory(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("cluster after the sweeps:\n%s", strings.Join(after, "\n"))
	}
}

// TestSweepKeepsKeptAndRunning: a snapshot handed over to a kept record is
// released from a dead job's entries without deletion; a running job's
// objects are left alone.
func TestSweepKeepsKeptAndRunning(t *testing.T) {
	e := newEnv(t, prismsim.VMOptions{})
	ctx := context.Background()
	cl := e.client(nutanix.APIV4)
	e.crash("temporaries", nutanix.APIV4)
	pending, err := e.j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var snap clusterjob.Object
	for _, o := range pending {
		if o.Kind == clusterjob.KindSnapshot {
			snap = o
		}
	}
	if err := e.j.Keep("ref-"+e.vm.UUID, []clusterjob.Object{snap}, map[string]string{"why": "reference"}); err != nil {
		t.Fatal(err)
	}
	live, err := e.j.Begin("backup", cl, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	liveSnap, liveObj, err := live.CreateSnapshot(ctx, e.vm.UUID, e.vm.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.sweep(clusterjob.Only(cl))
	if err != nil {
		t.Fatalf("sweep: %v %+v", err, rep)
	}
	if len(rep.Released) != 1 || len(rep.Deleted) != 1 || len(rep.Running) != 1 || rep.Running[0] != live.ID() {
		t.Fatalf("report %+v: want the kept snapshot released, the volume group deleted, the live job skipped", rep)
	}
	for _, id := range []string{snap.ID, liveSnap.ID} {
		if _, err := cl.GetSnapshot(ctx, id); err != nil {
			t.Fatalf("snapshot %s: %v", id, err)
		}
	}
	if err := live.Release(ctx, liveObj); err != nil {
		t.Fatal(err)
	}
	if err := live.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(e.j.Dir()); len(ents) != 1 {
		t.Fatalf("journal directory holds %d entries, want only kept/", len(ents))
	}
}

// TestSweepWaitsForCreateTask: a job killed while the cluster's snapshot
// task runs leaves an entry without ID, but with the task; a sweep at
// once (the snapshot does not exist yet) waits for the task, then finds
// the snapshot by name and deletes it: the cluster is as before.
func TestSweepWaitsForCreateTask(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) {
			// Long enough a task that a busy machine still sweeps while it
			// runs.
			s := simtest.Start(t, simtest.Options{Options: prismsim.Options{TaskDelay: time.Second}})
			vm, err := s.AddVM(context.Background(), "web01", []string{enginetest.DataDisk(t, 4<<20, 1)}, prismsim.VMOptions{})
			if err != nil {
				t.Fatal(err)
			}
			e := &env{t: t, sim: s, j: openJournal(t), vm: vm}
			before := e.inventory()
			e.crashWhen("snapshot-in-flight", api, func() bool { return journalNamesTask(e.j.Dir()) })
			if s.WaitTasks(0) {
				t.Fatal("the snapshot task ended before the sweep: the test proves nothing")
			}
			rep, err := e.sweep(clusterjob.Only(e.client(api)))
			if err != nil || len(rep.Deleted) != 1 {
				t.Fatalf("sweep: %v, deleted %v", err, rep.Deleted)
			}
			s.WaitIdle(30*time.Second, 0)
			if after := e.inventory(); !slices.Equal(before, after) {
				t.Fatalf("cluster after the sweep: %v, before: %v", after, before)
			}
			if pending, _ := e.j.Pending(); len(pending) != 0 {
				t.Fatalf("journal after the sweep: %v", pending)
			}
		})
	}
}

// journalNamesTask reports whether an entry of the journal in dir
// records a task.
func journalNamesTask(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(`"tasks"`)) {
				found = true
			}
		}
		return nil
	})
	return found
}
