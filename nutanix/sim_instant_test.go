package nutanix_test

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	gonfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// exportDir serves dir over NFSv3 (MOUNT on the same port) on loopback
// and returns its port.
func exportDir(t *testing.T, dir string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := nfshelper.NewCachingHandler(nfshelper.NewNullAuthHandler(osfs.New(dir)), 1024)
	go gonfs.Serve(ln, h)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestInstantRecovery: an external repository on an NFS export; a VM
// whose disk is backed by a file on it exists at once, reads the file's
// bytes before they are hydrated, keeps the guest's writes made during
// hydration, and ends as a local disk equal to the file plus the writes;
// the repository cannot go while a disk still reads from it. Endpoints
// without the v4.2 APIs say so (ErrUnsupported).
func TestInstantRecovery(t *testing.T) {
	const size = 12 << 20
	dir := t.TempDir()
	img := make([]byte, size)
	r := mrand.New(mrand.NewPCG(7, 7))
	for i := 0; i < size; i += 4096 {
		if i%(3<<20) < 2<<20 { // some of it stays zero
			for j := i; j < i+4096; j++ {
				img[j] = byte(r.Uint32())
			}
		}
	}
	rel := "vm1/2026-01-01T00:00:00Z/disk-0.raw"
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rel), img, 0o644); err != nil {
		t.Fatal(err)
	}
	port := exportDir(t, dir)

	s := startSim(t, prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"}, HydrationRate: 32 << 20})
	c := simClient(t, s, nutanix.APIV4)
	ctx := ctxT(t)
	repo, err := c.CreateExternalRepository(ctx, nutanix.ExternalRepository{Name: "ahvfs-test", ExportName: "/", Host: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := c.ListExternalRepositories(ctx, "ahvfs-test"); err != nil || len(l) != 1 || l[0] != repo {
		t.Fatalf("list: %+v %v; want %+v", l, err, repo)
	}
	if _, err := c.CreateExternalRepository(ctx, nutanix.ExternalRepository{Name: "ahvfs-test", ExportName: "/", Host: "127.0.0.1", Port: port}); err == nil {
		t.Error("a second repository of the same name was created")
	}
	if _, err := c.CreateVM(ctx, nutanix.VMSpec{Name: "missing", Disks: []nutanix.DiskSpec{{External: &nutanix.ExternalDisk{RepositoryID: repo.ID, Path: "vm1/nothing.raw"}}}}); err == nil {
		t.Error("a VM was created on a file the export lacks")
	}

	s.PauseHydration(true) // until the guest has written
	start := time.Now()
	id, err := c.CreateVM(ctx, nutanix.VMSpec{Name: "ir-vm1", MemoryBytes: 1 << 30,
		Disks: []nutanix.DiskSpec{{External: &nutanix.ExternalDisk{RepositoryID: repo.ID, Path: rel, Hydrate: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPowerState(ctx, id, nutanix.PowerOn); err != nil {
		t.Fatal(err)
	}
	vm, err := c.GetVM(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VM on in %v", time.Since(start))
	d := vm.Disks[0]
	if d.SizeBytes != size || d.External == nil || d.External.Path != rel || d.External.RepositoryID != repo.ID || !d.External.Hydrate {
		t.Fatalf("disk %+v (external %+v)", d, d.External)
	}
	if d.Hydration == nil || d.Hydration.Status != "IN_PROGRESS" || d.Hydration.RemainingBytes <= 0 {
		t.Fatalf("hydration %+v, want IN_PROGRESS with bytes remaining", d.Hydration)
	}
	if err := c.DeleteExternalRepository(ctx, repo.ID); !errors.Is(err, nutanix.ErrConflict) {
		t.Errorf("delete of a repository backing a hydrating disk: %v, want a conflict", err)
	}
	// The guest reads the file through the disk, and writes, across a
	// block boundary too, before hydration goes on.
	got := make([]byte, size)
	if err := s.ReadDisk(id, 0, 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("the disk reads differently from the external file during hydration")
	}
	want := bytes.Clone(img)
	for _, off := range []int64{size - 5000, 1<<20 - 100, 8<<20 + 3} {
		w := bytes.Repeat([]byte{0xA5}, 300)
		if err := s.WriteDisk(id, 0, off, w); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], w)
	}
	s.PauseHydration(false)
	for deadline := time.Now().Add(45 * time.Second); ; {
		vm, err = c.GetVM(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if vm.Disks[0].Hydration == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still hydrating: %+v", vm.Disks[0].Hydration)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if vm.Disks[0].External != nil {
		t.Errorf("a hydrated disk still names its external source %+v", vm.Disks[0].External)
	}
	if err := s.ReadDisk(id, 0, 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("after hydration the disk is not the external file plus the guest's writes")
	}
	if err := c.DeleteExternalRepository(ctx, repo.ID); err != nil {
		t.Fatal(err)
	}
	if l, err := c.ListExternalRepositories(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("after delete: %+v %v", l, err)
	}

	// Without v4.2 (the default revisions) and through v3: unsupported.
	old := startSim(t, prismsim.Options{})
	for _, api := range []nutanix.APIVersion{nutanix.APIV4, nutanix.APIV3} {
		c := simClient(t, old, api)
		if _, err := c.CreateExternalRepository(ctx, nutanix.ExternalRepository{Name: "x", ExportName: "/", Host: "127.0.0.1"}); !errors.Is(err, nutanix.ErrUnsupported) {
			t.Errorf("%s: create external repository: %v, want ErrUnsupported", api, err)
		}
	}
}
