package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/failover"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

func tune(o *nutanix.Options) {
	o.RateLimit, o.TaskPollInterval, o.RetryBaseDelay, o.RetryMaxDelay = -1, 10*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
}

func connect(t *testing.T, s *prismsim.Sim) *nutanix.Client {
	t.Helper()
	o := nutanix.Options{Endpoint: s.URL(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile(), API: nutanix.APIV3}
	tune(&o)
	cl, err := nutanix.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// backUp backs every VM of prod up, over REST, into a new repository and
// returns its path.
func backUp(t *testing.T, prod *prismsim.Sim) string {
	t.Helper()
	repo := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, repo, engine.OpenOptions{Writable: true})
	defer w.Close()
	if rep, err := backup.Run(context.Background(), w, connect(t, prod), backup.Options{DataPath: backup.PathREST}); err != nil || rep.Failed() > 0 {
		t.Fatalf("backup: %v %+v", err, rep)
	}
	return repo
}

// siteTable is a plan's [[cluster]] table for simulator s.
func siteTable(name string, s *prismsim.Sim) string {
	return fmt.Sprintf("[[cluster]]\nname = %q\nprism = %q\nuser = \"admin\"\npassword_file = %q\nca_cert = %q\napi = \"v3\"\n",
		name, s.Addr(), s.PasswordFile(), s.CAFile())
}

// inStageOrder: db01 (stage 1) first, then the stage-2 VMs web01 and
// web02 in either order (a stage's VMs come up side by side).
func inStageOrder(order []string) bool {
	return len(order) == 3 && order[0] == "db01" && slices.Equal(slices.Sorted(slices.Values(order[1:])), []string{"web01", "web02"})
}

func vmNames(o prismsim.Objects) []string {
	var out []string
	for _, v := range o.VMs {
		out = append(out, v.Name+"/"+v.PowerState)
	}
	slices.Sort(out)
	return out
}

// TestTestFailover: a two-stage plan brings the VMs up at the DR site,
// renamed, on the test subnet, stage by stage, with disks equal to the
// backed-up ones; status tells what is up; a second test is refused while
// the first is up; undo leaves the DR site as it was; production is never
// touched.
func TestTestFailover(t *testing.T) {
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	drs := simtest.Start(t, simtest.Options{})
	imgs := map[string]string{}
	for i, n := range []string{"db01", "web01", "web02"} {
		imgs[n] = enginetest.Ext4Image(t, 16<<20, uint64(i+1))
		if _, err := prod.AddVM(ctx, n, []string{imgs[n]}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	repo := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, repo, engine.OpenOptions{Writable: true})
	rep, err := backup.Run(ctx, w, connect(t, prod), backup.Options{DataPath: backup.PathREST})
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("backup: %v %+v", err, rep)
	}
	w.Close()

	planFile := filepath.Join(dir, "dr-plan.toml")
	os.WriteFile(planFile, []byte(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
data_path = "rest"
test_network_map = ["vlan10=vlan20", "vlan99=vlan20"]
test_suffix = "-drtest"
[[stage]]
vms = ["db01"]
delay = "10ms"
script = "echo stage $AHVFS_STAGE > %s/stage.out"
[[stage]]
vms = ["web*"]
`, repo, dir)+siteTable("prod", prod)+siteTable("dr", drs)), 0o600)
	plan, err := failover.Load(planFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	prodBefore, drBefore := prod.Objects(), drs.Objects()
	drc := connect(t, drs)
	// A test map that leaves the VMs' subnet out: refused, nothing made
	// (a test copy never joins an unmapped, maybe production, network).
	unmapped, err := failover.Parse(planFile, strings.Replace(string(must(os.ReadFile(planFile))), `["vlan10=vlan20", "vlan99=vlan20"]`, `["vlan99=vlan20"]`, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	unmapped.File = plan.File
	if _, err := failover.Test(ctx, unmapped, failover.Options{TuneCluster: tune}); err == nil || !strings.Contains(err.Error(), "does not map") {
		t.Fatalf("test failover with the VMs' subnet unmapped: %v", err)
	}
	if got := drs.Objects(); !slices.Equal(vmNames(got), vmNames(drBefore)) {
		t.Fatalf("the refused test failover changed the DR site: %v", vmNames(got))
	}
	var order []string
	o := failover.Options{TuneCluster: tune, Progress: func(v failover.VMState) {
		if v.Status != failover.VMRestoring {
			return
		}
		// The cluster's view: when a stage-2 VM starts, stage 1 is on.
		if v.Stage == 2 {
			vms, _ := drc.ListVMs(ctx)
			if !slices.ContainsFunc(vms, func(x nutanix.VM) bool { return x.Name == "db01-drtest" && x.PowerState == nutanix.PowerOn }) {
				t.Errorf("stage 2 (%s) started before stage 1's db01-drtest was on", v.VM)
			}
		}
		order = append(order, v.VM)
	}}
	st, err := failover.Test(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	if !inStageOrder(order) || !st.Done {
		t.Fatalf("restore order %v (done %v)", order, st.Done)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stage.out")); string(b) != "stage 1\n" {
		t.Fatalf("stage script wrote %q", b)
	}
	vms, err := drc.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"db01", "web01", "web02"} {
		i := slices.IndexFunc(vms, func(v nutanix.VM) bool { return v.Name == n+"-drtest" })
		if i < 0 {
			t.Fatalf("no %s-drtest at the DR site", n)
		}
		v := vms[i]
		if v.PowerState != nutanix.PowerOn || v.ClusterName != "cluster-b" || len(v.NICs) != 1 || v.NICs[0].SubnetName != "vlan20" {
			t.Fatalf("%s: power %s, cluster %s, NICs %+v: want on, cluster-b, the test subnet vlan20", v.Name, v.PowerState, v.ClusterName, v.NICs)
		}
		info, _ := drs.VM(v.UUID)
		got, _ := os.ReadFile(info.Disks[0])
		want, _ := os.ReadFile(imgs[n])
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: disk differs from the backed-up one", v.Name)
		}
	}
	status, err := failover.PlanStatus(ctx, plan, o)
	if err != nil || status.State == nil || len(status.Live) != 3 {
		t.Fatalf("status: %+v %v", status, err)
	}
	for _, l := range status.Live {
		if !l.Exists || l.PowerState != string(nutanix.PowerOn) {
			t.Fatalf("status says %+v", l)
		}
	}
	if _, err := failover.Test(ctx, plan, o); err == nil || !strings.Contains(err.Error(), "undo first") {
		t.Fatalf("a second test while the first is up: %v", err)
	}
	if _, err := failover.Check(ctx, plan, o, failover.ModeTest); err == nil || !strings.Contains(err.Error(), "a test failover of the plan is up") {
		t.Fatalf("dry run while a test is up: %v", err)
	}

	if _, err := failover.Undo(ctx, plan, o); err != nil {
		t.Fatal(err)
	}
	drs.WaitTasks(time.Minute)
	after := drs.Objects()
	if !slices.Equal(vmNames(after), vmNames(drBefore)) || len(after.Images) != len(drBefore.Images) || len(after.VolumeGroups) != 0 {
		t.Fatalf("DR site after undo: VMs %v images %d VGs %d; before: %v", vmNames(after), len(after.Images), len(after.VolumeGroups), vmNames(drBefore))
	}
	if p := prod.Objects(); !slices.Equal(vmNames(p), vmNames(prodBefore)) || len(p.Snapshots) != len(prodBefore.Snapshots) {
		t.Fatalf("production changed: %v, %d snapshots (was %v, %d)", vmNames(p), len(p.Snapshots), vmNames(prodBefore), len(prodBefore.Snapshots))
	}
	if s, err := failover.PlanStatus(ctx, plan, o); err != nil || s.State != nil {
		t.Fatalf("status after undo: %+v %v", s, err)
	}
}

// TestCheck: the dry run reports every problem at once — a stage pattern
// without restore points, a test subnet the DR cluster lacks, a name
// already taken, an override of no VM, a VM whose DR cluster cannot be
// told — notes a name the points give to two VMs, and changes nothing.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	drs := simtest.Start(t, simtest.Options{})
	img := enginetest.Ext4Image(t, 8<<20, 1)
	if _, err := drs.AddVM(ctx, "db01-drtest", []string{img}, prismsim.VMOptions{}); err != nil {
		t.Fatal(err)
	}
	repo := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, repo, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, w, "db01", time.Unix(1e9, 0), img); err != nil {
		t.Fatal(err)
	}
	// Points of two VMs named db01 (one deleted and made again).
	for i, u := range []string{"0e1b7c3a-1111-4222-8333-000000000001", "0e1b7c3a-1111-4222-8333-000000000002"} {
		spec := engine.RestorePointSpec{VM: "db01", VMUUID: u, Time: time.Unix(2e9+int64(i), 0), Level: engine.LevelImport}
		if _, err := enginetest.Import(ctx, w, spec, img); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	plan, err := failover.Parse("p.toml", fmt.Sprintf(`source_cluster = "dr"
target_cluster = "dr"
repository = %q
test_network_map = ["vlan10=bubble"]
[[stage]]
vms = ["db01", "app*"]
[[vm]]
name = "db02"
vcpus = 4
[[cluster]]
name = "dr"
prism = %q
user = "admin"
password_file = %q
ca_cert = %q
`, repo, drs.Addr(), drs.PasswordFile(), drs.CAFile()), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := drs.Objects()
	room, err := failover.Check(ctx, plan, failover.Options{TuneCluster: tune}, failover.ModeTest)
	if err == nil {
		t.Fatal("a bad plan passed the dry run")
	}
	if !strings.Contains(fmt.Sprint(room.Notes), "db01: the DR repository has points of 2 VMs of this name") ||
		!strings.Contains(fmt.Sprint(room.Notes), "of VM 0e1b7c3a-1111-4222-8333-000000000002") {
		t.Errorf("dry run notes: %q", room.Notes)
	}
	for _, want := range []string{`"app*" matches no VM`, `no subnet "bubble"`, "db01-drtest already exists", `vm[0].name "db02": matches no VM`,
		"db01: the DR site manages several AHV clusters and not the VM's own: set target_ahv_cluster", "5 problem(s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("dry run: no %q in:\n%v", want, err)
		}
	}
	if after := drs.Objects(); !slices.Equal(vmNames(after), vmNames(before)) {
		t.Fatal("the dry run changed the DR site")
	}
}

// TestPlanProblems: a bad plan file is refused with every problem.
func TestPlanProblems(t *testing.T) {
	_, err := failover.Parse("bad.toml", `source_cluster = "x"
colour = 1
network_map = ["vlan10"]
data_path = "carrier-pigeon"
[[stage]]
delay = "soon"
[[vm]]
name = "db["
memory = "lots"
`, nil)
	if err == nil {
		t.Fatal("a bad plan parsed")
	}
	for _, want := range []string{"colour: unknown key", `source_cluster: "x"`, `target_cluster: ""`, "repository: missing",
		`network_map: "vlan10"`, "data_path", "stage[0].vms: empty", `stage[0].delay: "soon"`, `vm[0].name: "db["`, `vm[0].memory: "lots"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in:\n%v", want, err)
		}
	}
}

// TestUnplannedFailover: refused while the source runs the plan's VMs;
// with the source simulator stopped, the VMs come up at DR under their
// own names on the production subnet, each with its recovery point in
// the state; undo refuses without --force; status with the DR site down
// still gives the state.
func TestUnplannedFailover(t *testing.T) {
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	drs := simtest.Start(t, simtest.Options{})
	img := enginetest.Ext4Image(t, 16<<20, 5)
	for _, n := range []string{"db01", "web01"} {
		if _, err := prod.AddVM(ctx, n, []string{img}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	repo := backUp(t, prod)
	w := enginetest.Open(t, repo, engine.OpenOptions{})
	rps, _ := w.ListRestorePoints(ctx, "db01")
	w.Close()
	plan, err := failover.Parse("site-loss.toml", fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
data_path = "rest"
network_map = ["vlan10=vlan20"]
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web01"]
`, repo)+siteTable("prod", prod)+siteTable("dr", drs), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := failover.Options{TuneCluster: tune}
	if _, err := failover.Unplanned(ctx, plan, o); err == nil || !strings.Contains(err.Error(), "runs db01, web01") {
		t.Fatalf("unplanned failover while the source runs the VMs: %v", err)
	}
	// A source that answers but refuses the plan's credentials may run
	// its VMs: refused too.
	badPW := filepath.Join(t.TempDir(), "bad.pw")
	os.WriteFile(badPW, []byte("wrong\n"), 0o600)
	badPlan, err := failover.Parse("site-loss.toml", strings.Replace(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
repository = %q
[[stage]]
vms = ["db01"]
`, repo)+siteTable("prod", prod)+siteTable("dr", drs), prod.PasswordFile(), badPW, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := failover.Unplanned(ctx, badPlan, o); err == nil || !strings.Contains(err.Error(), "answers, but") {
		t.Fatalf("unplanned failover with the source refusing our credentials: %v", err)
	}
	prod.Close() // the site is lost
	st, err := failover.Unplanned(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != failover.ModeUnplanned || len(st.VMs) != 2 || !st.VMs[0].PointTime.Equal(rps[0].Time) {
		t.Fatalf("state: %+v (db01's point %v)", st, rps[0].Time)
	}
	vms, err := connect(t, drs).ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"db01", "web01"} {
		i := slices.IndexFunc(vms, func(v nutanix.VM) bool { return v.Name == n })
		if i < 0 || vms[i].PowerState != nutanix.PowerOn || vms[i].NICs[0].SubnetName != "vlan20" {
			t.Fatalf("%s at DR: %+v", n, vms)
		}
	}
	if _, err := failover.Undo(ctx, plan, o); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("undo of an unplanned failover without force: %v", err)
	}
	// The DR site does not answer: status still gives the state.
	drs.Close()
	s, err := failover.PlanStatus(ctx, plan, o)
	if err != nil || s.State == nil || len(s.State.VMs) != 2 || s.Unreachable == "" || len(s.Live) != 0 {
		t.Fatalf("status with the DR site down: %+v %v", s, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestParallelStage: the VMs of a stage are restored side by side,
// `parallel` at a time: with parallel = 2, two VM creations of the stage's
// three restores are in flight together at the DR site (the simulator
// holds each until a second one comes), and never three (held until a
// third comes, none does). A VM whose restore fails does not stop its
// siblings, and the next stage does not start; run again, the failover
// completes.
func TestParallelStage(t *testing.T) {
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	drs := simtest.Start(t, simtest.Options{})
	for i, n := range []string{"app1", "app2", "app3", "db09"} {
		if _, err := prod.AddVM(ctx, n, []string{enginetest.Ext4Image(t, 8<<20, uint64(i+21))}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	repo := backUp(t, prod)
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.toml")
	os.WriteFile(planFile, []byte(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
data_path = "rest"
parallel = 2
test_network_map = ["vlan10=vlan20"]
[[stage]]
vms = ["app*"]
[[stage]]
vms = ["db09"]
`, repo)+siteTable("prod", prod)+siteTable("dr", drs)), 0o600)
	plan, err := failover.Load(planFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := failover.Options{TuneCluster: tune}
	statuses := func(s *failover.State) map[string]string {
		out := map[string]string{}
		for _, v := range s.VMs {
			out[v.VM] = v.Status
		}
		return out
	}
	allOn := func(s *failover.State) {
		t.Helper()
		for vm, st := range statuses(s) {
			if st != failover.VMOn {
				t.Errorf("%s: %s", vm, st)
			}
		}
	}
	for _, gate := range []struct {
		n       int
		timeout time.Duration
	}{{2, time.Minute}, {3, 2 * time.Second}} {
		done := drs.GateTasks("VmCreate", gate.n, gate.timeout)
		s, err := failover.Test(ctx, plan, o)
		most := done()
		if err != nil {
			t.Fatal(err)
		}
		allOn(s)
		if gate.n == 2 && most != 2 || most > 2 {
			t.Fatalf("gate of %d: %d VM creations were in flight together, want 2 (parallel = 2)", gate.n, most)
		}
		if _, err := failover.Undo(ctx, plan, o); err != nil {
			t.Fatal(err)
		}
	}
	// One VM creation of stage 1 fails.
	drs.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"VmCreate"}})
	s, err := failover.Test(ctx, plan, o)
	drs.SetFaults(prismsim.Faults{})
	st := statuses(s)
	failed, on := 0, 0
	for _, vm := range []string{"app1", "app2", "app3"} {
		switch st[vm] {
		case failover.VMFailed:
			failed++
		case failover.VMOn:
			on++
		}
	}
	if err == nil || failed != 1 || on != 2 || st["db09"] != failover.VMPending {
		t.Fatalf("a failed restore in stage 1: %v; statuses %v; want one failed, its siblings on, stage 2 not begun", err, st)
	}
	s, err = failover.Test(ctx, plan, o)
	if err != nil {
		t.Fatalf("run again after the failure: %v", err)
	}
	allOn(s)
	if _, err := failover.Undo(ctx, plan, o); err != nil {
		t.Fatal(err)
	}
}
