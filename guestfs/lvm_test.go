package guestfs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestLVM puts an LVM volume group on a GPT partition, with an ext4
// logical volume made of two non-contiguous segments and a second, empty
// logical volume, and browses them. The kernel here has no device-mapper,
// so the volumes are created inactive and the ext4 image is written to
// the physical extents LVM itself reports (lvs --segments).
func TestLVM(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "losetup", "pvcreate", "vgcreate", "lvcreate", "lvextend", "lvs", "pvs", "mkfs.ext4", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "lvm.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 64<<20)
	env := []string{"LVM_SUPPRESS_FD_WARNINGS=1", "DM_DISABLE_UDEV=1"}
	run := func(stdin string, name string, args ...string) string {
		t.Helper()
		return runTool(t, env, stdin, name, args...)
	}
	const partStart, partSectors = 1 << 20, 120832
	run("label: gpt\nstart=2048, size=120832, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n", "sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	// A loop device over the partition's bytes (no udev here for loopNpM).
	pv := run("", "losetup", "--find", "--show", "--offset", strconv.Itoa(partStart), "--sizelimit", strconv.Itoa(partSectors*512), img)
	t.Cleanup(func() { exec.Command("losetup", "-d", pv).Run() })
	vg := fmt.Sprintf("gfstest%d", os.Getpid())
	t.Cleanup(func() { exec.Command("vgremove", "-f", vg).Run() })
	lvm := func(cmd string, args ...string) string {
		return run("", cmd, append([]string{"--config", "global { activation = 0 } activation { udev_sync = 0 udev_rules = 0 }"}, args...)...)
	}
	lvm("pvcreate", "-q", "-ff", "-y", pv)
	lvm("vgcreate", "-q", "-s", "1M", vg, pv)
	lvm("lvcreate", "-q", "-y", "-an", "-Zn", "-L", "12M", "-n", "root", vg)
	lvm("lvcreate", "-q", "-y", "-an", "-Zn", "-L", "4M", "-n", "small", vg)
	lvm("lvextend", "-q", "-L", "24M", vg+"/root") // a second segment after "small"
	peStart, err := strconv.ParseInt(lvm("pvs", "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start", pv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if _, err := mkimage.Tree(context.Background(), src, 12<<20, mkimage.TreeOptions{Seed: 41, Symlinks: true}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "dangling-link"))
	ext := filepath.Join(dir, "root.img")
	os.WriteFile(ext, nil, 0o644)
	os.Truncate(ext, 24<<20)
	run("", "mkfs.ext4", "-q", "-F", "-d", src, ext)
	extBytes, _ := os.ReadFile(ext)
	out, _ := os.OpenFile(img, os.O_RDWR, 0)
	defer out.Close()
	segs := lvm("lvs", "--segments", "--noheadings", "--separator", ";", "-o", "seg_start_pe,seg_size_pe,seg_pe_ranges", vg+"/root")
	nseg := 0
	for _, line := range strings.Split(segs, "\n") {
		// "12;12;/dev/loop0:16-27": LV extent, count, PV extents
		f := strings.Split(strings.TrimSpace(line), ";")
		var le0, n, pe0, pe1 int64
		_, err1 := fmt.Sscanf(f[0]+" "+f[1], "%d %d", &le0, &n)
		_, err2 := fmt.Sscanf(f[2][strings.LastIndex(f[2], ":")+1:], "%d-%d", &pe0, &pe1)
		if err1 != nil || err2 != nil || pe1-pe0+1 != n {
			t.Fatalf("parse %q: %v %v", line, err1, err2)
		}
		le1 := le0 + n - 1
		const mb = 1 << 20
		if _, err := out.WriteAt(extBytes[le0*mb:(le1+1)*mb], partStart+peStart+pe0*mb); err != nil {
			t.Fatal(err)
		}
		nseg++
	}
	if nseg != 2 {
		t.Fatalf("want 2 segments, lvs says: %s", segs)
	}

	d := openImage(t, img, guestfs.Options{})
	var names []string
	for _, p := range d.Partitions() {
		names = append(names, p.Name+":"+p.Kind)
	}
	want := fmt.Sprintf("part-1:%s lv-%s-root:ext lv-%s-small:empty", guestfs.KindLVM, vg, vg)
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("partitions %s, want %s", got, want)
	}
	rd, err := d.FS().ReadFile("part-1/README.txt")
	if err != nil || !strings.Contains(string(rd), "lv-"+vg) {
		t.Errorf("PV README: %q %v", rd, err)
	}
	compareTree(t, d.FS(), "lv-"+vg+"-root", src, kindExt)
	memDisk := openInMemory(t, img)
	runTestFS(t, memDisk, "lv-"+vg+"-root", src)
}
