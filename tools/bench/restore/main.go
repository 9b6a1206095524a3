// Command restore-bench measures `ahvfs restore` over iSCSI into the Prism
// simulator against the local write ceiling, in the same run: it builds a
// real-data ext4 image (internal/mkimage), imports it into a repository,
// then alternates (a) cp of the raw image to a local file plus fsync and
// (b) a restore of the restore point to a new VM through a blank volume
// group written over iSCSI (tgtd on loopback), and prints both rates and
// their ratio (target: restore ≥ 0.5 × cp).
//
//	go run ./tools/bench/restore [-size 2GiB] [-rounds 2] [-dir DIR]
//
// Needs root, tgtd/tgtadm (Debian tgt) and mkfs.ext4.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/reflink"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/tools/bench/internal/benchlog"
	"github.com/dustin/go-humanize"
)

func main() {
	sizeS := flag.String("size", "2GiB", "image size")
	rounds := flag.Int("rounds", 2, "rounds of (cp, restore)")
	dir := flag.String("dir", "", "work directory (default: a temporary directory under /var/tmp)")
	conc := flag.Int("concurrency", 0, "restore writes in flight per disk (0: default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the restores to `FILE`")
	verbose := flag.Bool("v", false, "log the restore's steps with timestamps")
	flag.Parse()
	log.SetFlags(0)
	size, err := humanize.ParseBytes(*sizeS)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("/var/tmp", "restore-bench-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(work)
	}
	img := filepath.Join(work, "vm.raw")
	t0 := time.Now()
	if _, err := os.Stat(img); err == nil && *dir != "" {
		log.Printf("reusing %s", img) // a kept -dir: same image, fresh repository and simulator
	} else {
		tree := filepath.Join(work, "tree")
		if _, err := mkimage.Tree(ctx, tree, int64(size)*7/10, mkimage.TreeOptions{Seed: 1}); err != nil {
			log.Fatalf("mkimage tree: %v", err)
		}
		if err := mkimage.Build(ctx, img, mkimage.Spec{Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: int64(size), Dir: tree}}}); err != nil {
			log.Fatalf("mkimage: %v", err)
		}
		os.RemoveAll(tree)
	}
	os.RemoveAll(filepath.Join(work, "repo"))
	os.RemoveAll(filepath.Join(work, "sim"))
	st, _ := os.Stat(img)
	log.Printf("image %s (%s) built in %s", img, humanize.IBytes(uint64(st.Size())), time.Since(t0).Round(time.Second))

	repoDir := filepath.Join(work, "repo")
	if _, err := engine.Init(ctx, repoDir, engine.InitOptions{}); err != nil {
		log.Fatal(err)
	}
	w, err := engine.Open(ctx, repoDir, engine.OpenOptions{Writable: true})
	if err != nil {
		log.Fatal(err)
	}
	t0 = time.Now()
	_, err = enginetest.ImportFiles(ctx, w, "bench", time.Now().UTC().Truncate(time.Second), img)
	if err != nil {
		log.Fatal(err)
	}
	w.Close()
	log.Printf("imported in %s", time.Since(t0).Round(time.Second))
	repo, err := engine.Open(ctx, repoDir, engine.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	rp, err := repo.Resolve(ctx, "bench@latest")
	if err != nil {
		log.Fatal(err)
	}
	var nonZero int64
	d, _ := rp.Disk(0)
	ids, _ := repo.ChunkIDs(ctx, d)
	for _, id := range ids {
		if !id.IsZero() {
			nonZero += int64(repo.ChunkSize())
		}
	}

	// The simulator's state on a reflink filesystem, so that creating the VM
	// from the written volume-group disk is metadata as on a cluster.
	simDir, unmount, reflinked, err := reflink.Dir(work, 3*int64(st.Size())+(1<<30))
	if err != nil {
		log.Fatal(err)
	}
	defer unmount()
	if !reflinked {
		log.Printf("WARNING: no reflink filesystem (run as root with xfsprogs): the simulator copies the disk to create the VM")
	}
	sim, err := prismsim.New(ctx, prismsim.Options{StateDir: filepath.Join(simDir, "sim"), ISCSIPortal: "127.0.0.1:0", TaskDelay: 5 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()
	logger := benchlog.New(*verbose)
	cl, err := nutanix.Connect(ctx, nutanix.Options{Endpoint: sim.URL(), User: sim.User(), PasswordFile: sim.PasswordFile(), CACertFile: sim.CAFile(), API: nutanix.APIV4,
		Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	rc := cl
	port, _ := strconv.Atoi(sim.ISCSIPortal()[strings.LastIndex(sim.ISCSIPortal(), ":")+1:])

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	var cpBest, rsBest float64
	for r := 0; r < *rounds; r++ {
		dst := filepath.Join(work, "cp.raw")
		os.Remove(dst)
		exec.Command("sync").Run()
		t0 = time.Now()
		if out, err := exec.Command("cp", img, dst).CombinedOutput(); err != nil {
			log.Fatalf("cp: %v %s", err, out)
		}
		if out, err := exec.Command("sync", dst).CombinedOutput(); err != nil {
			log.Fatalf("sync: %v %s", err, out)
		}
		cpT := time.Since(t0)
		os.Remove(dst)
		exec.Command("sync").Run()

		t0 = time.Now()
		res, err := restore.Restore(ctx, repo, rc, rp, restore.Options{Name: fmt.Sprintf("bench-%d", r), TargetCluster: "cluster-a",
			ISCSIPort: port, Concurrency: *conc, DataPath: restore.DataPathISCSI, Logger: logger})
		if err != nil {
			log.Fatal(err)
		}
		rsT := time.Since(t0)
		cpRate := float64(st.Size()) / cpT.Seconds() / 1e6
		rsRate := float64(st.Size()) / rsT.Seconds() / 1e6
		log.Printf("round %d: cp %s in %.2fs = %.0f MB/s; restore (iSCSI, %s written) in %.2fs = %.0f MB/s; ratio %.2f",
			r+1, humanize.IBytes(uint64(st.Size())), cpT.Seconds(), cpRate, humanize.IBytes(uint64(res.Written)), rsT.Seconds(), rsRate, rsRate/cpRate)
		cpBest, rsBest = max(cpBest, cpRate), max(rsBest, rsRate)
		if vi, ok := sim.VM(res.Name); ok && r == 0 {
			if out, err := exec.Command("cmp", img, vi.Disks[0]).CombinedOutput(); err != nil {
				log.Fatalf("restored disk differs: %s", out)
			}
		}
		rc.DeleteVM(ctx, res.VMUUID)
	}
	fmt.Printf("image %s (%s non-zero chunks), %d rounds\ncp (+fsync) best: %.0f MB/s\nrestore over iSCSI best: %.0f MB/s\nratio: %.2f (target ≥ 0.5)\n",
		humanize.IBytes(uint64(st.Size())), humanize.IBytes(uint64(nonZero)), *rounds, cpBest, rsBest, rsBest/cpBest)
}
