// Command backup benchmarks the backup job against the Prism simulator
// over iSCSI: a full backup of a VM whose disk holds a real ext4
// filesystem (GPT, internal/mkimage files), compared with libiscsi's
// iscsi-perf reading the same snapshot LUN in the same run, then an
// incremental after the guest changed ~5% of the disk.
//
//	go run ./tools/bench/backup [-size 8GiB] [-fill 0.6] [-change 0.05] [-cold=true]
//
// Every reader starts from storage, as on a cluster: the page cache is
// dropped before each backup and before iscsi-perf, and iscsi-perf runs
// for less than one pass over the LUN (it starts over at the end, and a
// second pass would come from the page cache).
//
// Targets: full ≥ 0.7× iscsi-perf; incremental ≤ 15% of the full's time.
// Needs root, tgtd/tgtadm (Debian tgt), mkfs.ext4 and iscsi-perf
// (libiscsi-bin).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/reflink"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/tools/bench/internal/benchlog"
	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

const iqn = "iqn.2026-11.io.ahvfs:bench"

var (
	perfAverage = regexp.MustCompile(`iops average \d+ \((\d+) MB/s\)`)
	perfLBA     = regexp.MustCompile(`lba (\d+),`)
)

func main() {
	sizeFlag := flag.String("size", "8GiB", "disk size")
	fill := flag.Float64("fill", 0.6, "fraction of the filesystem filled with files")
	change := flag.Float64("change", 0.05, "fraction of the disk the guest rewrites before the incremental")
	seconds := flag.Int("seconds", 0, "seconds of iscsi-perf (0: size/4e9, under one pass over the LUN below 4 GB/s, so that it reads each block once)")
	cold := flag.Bool("cold", true, "drop the page cache before each backup and before iscsi-perf, so that every reader starts from storage")
	blocks := flag.Int("b", 256, "iscsi-perf -b")
	maxReq := flag.Int("m", 32, "iscsi-perf -m")
	dirFlag := flag.String("dir", "", "work directory (default: a temporary one, removed at the end)")
	keep := flag.Bool("keep", false, "keep the work directory")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the full backup to this file")
	incProfile := flag.String("incprofile", "", "write a CPU profile of the incremental backup to this file")
	verbose := flag.Bool("v", false, "log every Prism request with its duration")
	workers := flag.Int("workers", 0, "reads in flight per disk (backup.Options.ReadWorkers; 0: default)")
	image := flag.String("image", "", "guest disk image to start from (kept; default: build one with mkimage, or reuse -dir's)")
	compression := flag.String("compression", "", "repository compression (engine.InitOptions.Compression; default: the engine's)")
	clusterDir := flag.String("cluster-dir", "", "where the simulator keeps its storage (default: the work directory; /dev/shm puts the cluster's disks in memory, off the repository's disk)")
	noPatch := flag.Bool("no-patch", false, "incremental: read changed chunks whole (backup.Options.NoPatch)")
	flag.Parse()
	log.SetFlags(0)
	size, err := humanize.ParseBytes(*sizeFlag)
	if err != nil {
		log.Fatalf("-size: %v", err)
	}
	for _, c := range []string{"tgtd", "tgtadm", "iscsi-perf", "mkfs.ext4"} {
		if _, err := exec.LookPath(c); err != nil {
			log.Fatalf("%s not found (apt-get install tgt libiscsi-bin e2fsprogs)", c)
		}
	}
	dir := *dirFlag
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ahvfs-bench-backup-*"); err != nil {
			log.Fatal(err)
		}
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ctx := context.Background()

	// The simulator's state (and the guest disk it takes over) on a
	// filesystem with reflinks, so that snapshots and clones are metadata
	// as on a cluster; the repository stays on the work directory's disk.
	cdir := dir
	if *clusterDir != "" {
		if cdir, err = os.MkdirTemp(*clusterDir, "ahvfs-bench-cluster-*"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(cdir)
	}
	simDir, unmount, reflinked, err := reflink.Dir(cdir, 4*int64(size)+(1<<30))
	if err != nil {
		log.Fatal(err)
	}
	defer unmount()
	if reflinked {
		fmt.Println("simulator state on a reflink filesystem (snapshots and clones are metadata, as on a cluster)")
	} else {
		fmt.Println("WARNING: no reflink filesystem (run as root with xfsprogs): the simulator copies and compares whole files")
	}

	// The guest disk: GPT + ext4 with real files, built once per size and
	// fill and kept in the work directory (or given with -image).
	t0 := time.Now()
	img := filepath.Join(simDir, "disk.raw")
	src := *image
	if src == "" {
		src = filepath.Join(dir, fmt.Sprintf("guest-%d-%g.raw", size, *fill))
		if _, err := os.Stat(src); err != nil {
			if err := buildGuest(ctx, dir, src, int64(size), *fill); err != nil {
				log.Fatal(err)
			}
		}
	}
	if err := exec.Command("cp", "--sparse=always", src, img).Run(); err != nil {
		log.Fatalf("copy %s: %v", src, err)
	}
	// A VM's disk is at rest on the cluster, not gigabytes of dirty pages.
	if err := syncFile(img); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("disk: %s GPT+ext4, %.0f%% filled with real files (ready in %v)\n", humanize.IBytes(size), *fill*100, time.Since(t0).Round(time.Second))

	sim, err := prismsim.New(ctx, prismsim.Options{StateDir: filepath.Join(simDir, "sim"), ISCSIPortal: "127.0.0.1:0", TaskDelay: 5 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()
	vm, err := sim.AddVM(ctx, "bench01", []string{img}, prismsim.VMOptions{Move: true})
	if err != nil {
		log.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(sim.ISCSIPortal())
	port, _ := strconv.Atoi(portStr)
	repoDir := filepath.Join(dir, "repo")
	os.RemoveAll(repoDir) // from an earlier run with -keep
	if _, err := engine.Init(ctx, repoDir, engine.InitOptions{Compression: *compression}); err != nil {
		log.Fatal(err)
	}
	repo, err := engine.Open(ctx, repoDir, engine.OpenOptions{Writable: true})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	logger := benchlog.New(*verbose)
	cl, err := nutanix.Connect(ctx, nutanix.Options{Endpoint: sim.URL(), PasswordFile: sim.PasswordFile(), CACertFile: sim.CAFile(),
		API: nutanix.APIV3, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ph := &phases{}
	o := backup.Options{DataPath: backup.PathISCSI, ISCSIPort: port, InitiatorIQN: iqn, Progress: ph, NoPatch: *noPatch, ReadWorkers: *workers}

	// Full.
	if *cold {
		dropCaches()
	}
	startProfile(*cpuProfile)
	ph.reset()
	rep, err := backup.Run(ctx, repo, cl, o)
	pprof.StopCPUProfile()
	if err != nil || rep.VMs[0].Err != "" {
		log.Fatalf("full backup: %v %+v", err, rep)
	}
	full := rep.VMs[0]
	fullMBs := float64(full.Size) / full.Duration.Seconds() / 1e6
	readMBs := float64(full.BytesRead) / full.Duration.Seconds() / 1e6
	fmt.Printf("full backup: %s disk, read %s, stored %s new, in %v: %.0f MB/s of disk, %.0f MB/s read\n",
		humanize.IBytes(uint64(full.Size)), humanize.IBytes(uint64(full.BytesRead)), humanize.IBytes(uint64(full.BytesNew)),
		full.Duration.Round(10*time.Millisecond), fullMBs, readMBs)
	fmt.Printf("  %s\n", ph)

	// iscsi-perf on the reference snapshot's disk, exposed like the job does.
	journal, err := clusterjob.OpenJournal(filepath.Join(repo.Dir(), "journal"))
	if err != nil {
		log.Fatal(err)
	}
	ref, err := backup.LoadReference(journal, vm.UUID)
	if err != nil || ref == nil {
		log.Fatalf("reference: %v", err)
	}
	snap := ref.Last.Snapshot
	vg, err := cl.CreateVolumeGroupFromSnapshotDisk(ctx, snap, snap.Disks[0].DiskUUID, "bench-iscsi-perf")
	if err != nil {
		log.Fatal(err)
	}
	defer cl.DeleteVolumeGroup(context.Background(), vg.UUID)
	tgt, err := cl.AttachISCSIClient(ctx, vg.UUID, iqn)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.DetachISCSIClient(context.Background(), vg.UUID, iqn)
	// iscsi-perf does not follow the Data Services IP's login redirect
	// reliably: point it at the CVM portal that serves the LUN.
	url := fmt.Sprintf("iscsi://%s/%s/1", sim.CVMPortal(), tgt.TargetIQN)
	secs := *seconds
	if secs == 0 {
		// iscsi-perf starts over at the LUN's end; a second pass would read
		// from the page cache, which the backup never does.
		secs = max(1, int(size/4e9))
	}
	if *cold {
		dropCaches()
	}
	perf, wrapped, err := runPerf(url, *blocks, *maxReq, secs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("iscsi-perf -b %d -m %d -t %d on the same LUN: %.0f MB/s\n", *blocks, *maxReq, secs, perf)
	// iscsi-perf prints its LBA once a second, too seldom to see a wrap in
	// a short run; reading more bytes than the LUN holds is one too.
	if wrapped || perf*1e6*float64(secs) > float64(size) {
		fmt.Println("  (iscsi-perf read the LUN more than once: its figure includes re-reads from the page cache)")
	}
	fmt.Printf("full backup / iscsi-perf: %.2f (read rate), %.2f (disk rate)  [target ≥ 0.70]\n", readMBs/perf, fullMBs/perf)

	// The guest rewrites ~change of the disk in 1 MiB pieces.
	f, err := os.OpenFile(vm.Disks[0], os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	n := int(float64(size) * *change / float64(len(buf)))
	for i := 0; i < n; i++ {
		src := rnd.Int64N(int64(size) - int64(len(buf)))
		if _, err := f.ReadAt(buf, src); err != nil {
			log.Fatal(err)
		}
		for j := range buf {
			buf[j] ^= 0x5a
		}
		if _, err := f.WriteAt(buf, rnd.Int64N(int64(size)-int64(len(buf)))&^4095); err != nil {
			log.Fatal(err)
		}
	}
	// The cluster acknowledges a guest write once it is durable.
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	f.Close()
	if *cold {
		dropCaches()
	}
	startProfile(*incProfile)
	ph.reset()
	rep, err = backup.Run(ctx, repo, cl, o)
	pprof.StopCPUProfile()
	if err != nil || rep.VMs[0].Err != "" {
		log.Fatalf("incremental backup: %v %+v", err, rep)
	}
	inc := rep.VMs[0]
	fmt.Printf("incremental after %.0f%% change: read %s, stored %s new, in %v (%.1f%% of the full's time)  [target ≤ 15%%]\n",
		*change*100, humanize.IBytes(uint64(inc.BytesRead)), humanize.IBytes(uint64(inc.BytesNew)), inc.Duration.Round(10*time.Millisecond),
		100*inc.Duration.Seconds()/full.Duration.Seconds())
	fmt.Printf("  %s\n", ph)
}

// phases times a one-VM, one-disk run: set-up until the disk's plan is
// ready (snapshot, changed regions, volume group, login), the disk's
// reading, and the rest (commit, reference promotion, clean-up).
type phases struct {
	mu                        sync.Mutex
	start, planned, read, end time.Time
}

func (p *phases) reset() {
	p.mu.Lock()
	p.start, p.planned, p.read, p.end = time.Now(), time.Time{}, time.Time{}, time.Time{}
	p.mu.Unlock()
}

func (p *phases) DiskStart(vm, disk string, size, read int64) func(int64) {
	p.mu.Lock()
	p.planned = time.Now()
	p.mu.Unlock()
	return func(int64) {}
}

func (p *phases) DiskDone(vm, disk string, err error) {
	p.mu.Lock()
	p.read = time.Now()
	p.mu.Unlock()
}

func (p *phases) VMDone(backup.VMReport) { p.mu.Lock(); p.end = time.Now(); p.mu.Unlock() }

func (p *phases) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("set-up %v, read %v, commit and clean-up %v", r(p.planned.Sub(p.start)), r(p.read.Sub(p.planned)), r(p.end.Sub(p.read)))
}

// buildGuest writes a GPT disk of size bytes holding one ext4 partition
// filled to fill with real files.
func buildGuest(ctx context.Context, dir, out string, size int64, fill float64) error {
	tree := filepath.Join(dir, "tree")
	defer os.RemoveAll(tree)
	part := size - 2<<20
	if _, err := mkimage.Tree(ctx, tree, int64(float64(part)*fill), mkimage.TreeOptions{Seed: 42}); err != nil {
		return err
	}
	// Built under another name: an interrupted build is not reused.
	tmp := out + ".tmp"
	if err := mkimage.Build(ctx, tmp, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: part, Dir: tree}}}); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// runPerf runs iscsi-perf and returns its average rate, and whether the
// LBA it printed each second ever went backwards (it started over).
func runPerf(url string, blocks, maxReq, seconds int) (rate float64, wrapped bool, err error) {
	cmd := exec.Command("iscsi-perf", "-i", iqn, "-b", strconv.Itoa(blocks), "-m", strconv.Itoa(maxReq), "-t", strconv.Itoa(seconds), url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, false, fmt.Errorf("iscsi-perf: %v: %s", err, out)
	}
	m := perfAverage.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return 0, false, fmt.Errorf("iscsi-perf: no average in output: %s", out)
	}
	rate, err = strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	var last uint64
	for _, l := range perfLBA.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseUint(string(l[1]), 10, 64)
		wrapped = wrapped || v < last
		last = v
	}
	// iscsi-perf's "MB/s" are MiB/s.
	return rate * (1 << 20) / 1e6, wrapped, err
}

// dropCaches writes dirty pages back and empties the page cache.
func dropCaches() {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		log.Fatalf("drop caches: %v", err)
	}
}

// startProfile starts a CPU profile into path, unless path is empty;
// pprof.StopCPUProfile ends it.
func startProfile(path string) {
	if path == "" {
		return
	}
	pf, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		log.Fatal(err)
	}
}
