package backup_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

const (
	disk0Size = 64 << 20
	disk1Size = 32 << 20
)

type fixture struct {
	t    *testing.T
	sim  *prismsim.Sim
	repo *engine.Repository
	cl   *nutanix.Client
	vms  []prismsim.VMInfo
	port int // iSCSI portal port (0 without iSCSI)
}

type fixtureOptions struct {
	ISCSI bool
	API   nutanix.APIVersion
	VMs   []string // names (default "vm1")
	NGT   []prismsim.NGT
	Sim   prismsim.Options
	Shape prismsim.VMOptions // of every VM (NGT comes from NGT)
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	if len(o.VMs) == 0 {
		o.VMs = []string{"vm1"}
	}
	s := simtest.Start(t, simtest.Options{Options: o.Sim, ISCSI: o.ISCSI})
	f := &fixture{t: t, sim: s}
	img0 := enginetest.Ext4Image(t, disk0Size, 1)
	img1 := enginetest.Ext4Image(t, disk1Size, 2)
	for i, name := range o.VMs {
		ngt := prismsim.NGTAbsent
		if i < len(o.NGT) {
			ngt = o.NGT[i]
		}
		vo := o.Shape
		vo.NGT = ngt
		info, err := s.AddVM(context.Background(), name, []string{img0, img1}, vo)
		if err != nil {
			t.Fatal(err)
		}
		f.vms = append(f.vms, info)
	}
	if o.ISCSI {
		_, p, _ := net.SplitHostPort(s.ISCSIPortal())
		f.port, _ = strconv.Atoi(p)
	}
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 1 << 20})
	f.repo = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	api := o.API
	if api == "" {
		api = nutanix.APIAuto
	}
	cl, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: s.URL(), PasswordFile: s.PasswordFile(),
		CACertFile: s.CAFile(), API: api, RateLimit: -1, TaskPollInterval: 10 * time.Millisecond,
		RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 200 * time.Millisecond, MaxAttempts: 9})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	f.cl = cl
	return f
}

func (f *fixture) opts(o backup.Options) backup.Options {
	if o.ISCSIPort == 0 {
		o.ISCSIPort = f.port
	}
	o.InitiatorIQN = "iqn.2026-11.io.ahvfs:test"
	o.Logger = nil
	return o
}

// run backs up and fails the test if the run or any VM failed.
func (f *fixture) run(o backup.Options) *backup.Report {
	f.t.Helper()
	rep, err := backup.Run(context.Background(), f.repo, f.cl, f.opts(o))
	if err != nil {
		f.t.Fatalf("backup: %v", err)
	}
	for _, v := range rep.VMs {
		f.t.Logf("backup %s: %s %s via %s, read %d, new %d, in %v", v.VM, v.Level, v.Consistency, v.DataPath, v.BytesRead, v.BytesNew, v.Duration.Round(time.Millisecond))
	}
	for _, v := range rep.VMs {
		if v.Err != "" {
			f.t.Fatalf("backup of %s: %s", v.VM, v.Err)
		}
	}
	return rep
}

// checkDisks asserts that the restore point holds exactly the VM's live
// disks (the guest has not written since the snapshot).
func (f *fixture) checkDisks(vr backup.VMReport, vm prismsim.VMInfo) {
	f.t.Helper()
	rp, err := f.repo.RestorePointByID(context.Background(), vr.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(rp.Disks) != len(vm.Disks) {
		f.t.Fatalf("%s: %d disks stored, the VM has %d", rp.Name(), len(rp.Disks), len(vm.Disks))
	}
	for i, file := range vm.Disks {
		want, err := os.ReadFile(file)
		if err != nil {
			f.t.Fatal(err)
		}
		dr, err := f.repo.OpenDisk(context.Background(), rp, i)
		if err != nil {
			f.t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(dr, 0, dr.Size()))
		dr.Close()
		if err != nil {
			f.t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			f.t.Fatalf("%s disk-%d (%s): %d bytes differ from the live disk (%d bytes)", rp.Name(), i, rp.Level, diffCount(got, want), len(want))
		}
	}
}

func diffCount(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// guestWrite overwrites n 1 MiB ranges (at unaligned offsets) of a live
// disk with bytes of another real image, as the guest would.
func guestWrite(t *testing.T, file string, n int, seed uint64) {
	t.Helper()
	src, err := os.ReadFile(enginetest.Ext4Image(t, disk1Size, 3))
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	rnd := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < n; i++ {
		l := int64(1 << 20)
		off := rnd.Int64N(st.Size()-l) &^ 511
		soff := rnd.Int64N(int64(len(src)) - l)
		if _, err := fh.WriteAt(src[soff:soff+l], off); err != nil {
			t.Fatal(err)
		}
	}
}

// clusterObjects counts the ahvfs snapshots per VM, volume groups and
// images on the simulated cluster.
func (f *fixture) clusterObjects() (snaps map[string]int, vgs, images int) {
	f.t.Helper()
	list, err := f.cl.ListSnapshots(context.Background(), "")
	if err != nil {
		f.t.Fatal(err)
	}
	snaps = map[string]int{}
	for _, s := range list {
		if strings.HasPrefix(s.Name, "ahvfs-") {
			snaps[s.VMUUID]++
		}
	}
	return snaps, countDir(filepath.Join(f.sim.StateDir(), "vgs")), countDir(filepath.Join(f.sim.StateDir(), "images"))
}

func countDir(d string) int {
	es, _ := os.ReadDir(d)
	return len(es)
}

func (f *fixture) assertClean(wantSnaps int) {
	f.t.Helper()
	snaps, vgs, images := f.clusterObjects()
	for _, vm := range f.vms {
		if snaps[vm.UUID] != wantSnaps {
			f.t.Errorf("VM %s has %d ahvfs snapshots on the cluster, want %d", vm.Name, snaps[vm.UUID], wantSnaps)
		}
	}
	if vgs != 0 || images != 0 {
		f.t.Errorf("cluster keeps %d volume groups and %d images, want none", vgs, images)
	}
	pending, err := f.journal().Pending()
	if err != nil {
		f.t.Fatal(err)
	}
	if len(pending) != 0 {
		f.t.Errorf("journal not empty: %v", pending)
	}
}

// journal is the repository's journal of temporary cluster objects.
func (f *fixture) journal() *clusterjob.Journal {
	f.t.Helper()
	j, err := clusterjob.OpenJournal(filepath.Join(f.repo.Dir(), "journal"))
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// sweep runs the cleanup `ahvfs cleanup` runs.
func (f *fixture) sweep() (*clusterjob.Report, error) {
	return clusterjob.Sweep(context.Background(), f.journal(), clusterjob.Only(f.cl), nil)
}
