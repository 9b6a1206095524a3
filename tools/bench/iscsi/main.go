// Command iscsi-bench compares ahvfs's iSCSI initiator with libiscsi's
// iscsi-perf on the same LUN in the same run: it builds a LUN file of
// non-zero data (copies of files under /usr/lib), serves it with tgtd on
// loopback, checks one full read by ahvfs against the file, then alternates
// timed sequential reads by iscsi-perf (-b 256 -m 32) and by package iscsi
// (4 callers of 1 MiB ReadAt taking chunks in order, default Options),
// printing both rates in MB/s (10^6; iscsi-perf's MiB/s are converted),
// their ratio per round and the medians. -v adds the CPU seconds per GB
// spent by each initiator and by tgtd.
//
//	go run ./tools/bench/iscsi [-size 1073741824] [-rounds 5] [-seconds 6] [-v]
//
// -portal reads an existing target with ahvfs only, for profiling
// (-cpuprofile). -cpu N measures only ahvfs's cost: each round reads the
// LUN N times and prints the user+system CPU seconds per GB (10^9 bytes)
// of this process (getrusage), which the load of the machine disturbs far
// less than the rates. Needs root, tgtd/tgtadm (Debian tgt) and iscsi-perf
// (libiscsi-bin). The machine should be otherwise idle: both sides share
// its cores with tgtd.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/iscsi"
)

const targetIQN = "iqn.2024-01.io.ahvfs:bench"

func main() {
	size := flag.Int64("size", 1<<30, "LUN size in bytes")
	rounds := flag.Int("rounds", 5, "rounds of (iscsi-perf, ahvfs)")
	seconds := flag.Int("seconds", 6, "seconds per timed run (ahvfs reads whole passes, at least one)")
	blocks := flag.Int("b", 256, "iscsi-perf -b: blocks of 512 bytes per request")
	maxReq := flag.Int("m", 32, "iscsi-perf -m: requests in flight")
	chunk := flag.Int("chunk", 1<<20, "ahvfs: bytes per ReadAt call")
	readers := flag.Int("readers", 4, "ahvfs: concurrent ReadAt callers (more contend for tgtd and the caches: 16 read 20% slower than 4)")
	xfer := flag.Int("xfer", 0, "ahvfs: Options.MaxTransferLength (0: default)")
	qd := flag.Int("qd", 0, "ahvfs: Options.QueueDepth (0: default)")
	verbose := flag.Bool("v", false, "print CPU time used by each side")
	segments := flag.Int("segments", 0, "target MaxXmitDataSegmentLength (0: tgtd's default, 8 KiB)")
	skipPerf := flag.Bool("skip-perf", false, "run only ahvfs (for tuning)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ahvfs runs to this file")
	dir := flag.String("dir", "", "directory for the LUN file (default: a temporary directory)")
	portal := flag.String("portal", "", "read LUN 1 of -target at this existing portal with ahvfs only (for profiling)")
	target := flag.String("target", targetIQN, "target IQN for -portal")
	cpuPasses := flag.Int("cpu", 0, "ahvfs only: read the LUN this many times per round and print CPU s/GB")
	flag.Parse()
	if *segments > 0 {
		v := strconv.Itoa(*segments)
		segParams = [][2]string{{"MaxXmitDataSegmentLength", v}, {"MaxRecvDataSegmentLength", v}}
	}
	log.SetFlags(0)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		profileFile = f
	}
	if *portal != "" {
		o := iscsi.Options{Portal: *portal, TargetIQN: *target, MaxTransferLength: *xfer, QueueDepth: *qd}
		a, _, err := runAhvfs(o, "", *chunk, *readers, time.Duration(*seconds)*time.Second, false)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("ahvfs %.0f MB/s\n", a)
		return
	}

	if *dir == "" {
		d, err := os.MkdirTemp("", "iscsi-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	path := filepath.Join(*dir, "lun.img")
	if err := makeLUN(path, *size); err != nil {
		log.Fatal(err)
	}
	tg, err := startTgtd(path)
	if err != nil {
		log.Fatal(err)
	}
	defer tg.stop()
	url := fmt.Sprintf("iscsi://%s/%s/1", tg.addr, targetIQN)
	fmt.Printf("LUN: %d MiB of data from /usr/lib at %s\n", *size>>20, url)
	fmt.Printf("iscsi-perf: -b %d -m %d -t %d; ahvfs: %d readers x %d KiB ReadAt\n",
		*blocks, *maxReq, *seconds, *readers, *chunk>>10)

	o := iscsi.Options{Portal: tg.addr, TargetIQN: targetIQN, MaxTransferLength: *xfer, QueueDepth: *qd}
	// One untimed pass checks every byte ahvfs reads against the file.
	if _, _, err := runAhvfs(o, path, *chunk, *readers, 0, true); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ahvfs read the whole LUN correctly (checked against the file)")
	if *cpuPasses > 0 {
		var costs []float64
		for r := 1; r <= *rounds; r++ {
			c0, w0 := rusageCPU()
			var moved int64
			for range *cpuPasses {
				_, m, err := runAhvfs(o, path, *chunk, *readers, 0, false)
				if err != nil {
					log.Fatal(err)
				}
				moved += m
			}
			c1, w1 := rusageCPU()
			gb := float64(moved) / 1e9
			c := (c1 - c0) / gb
			costs = append(costs, c)
			fmt.Printf("round %d: ahvfs %.3f CPU s/GB, %.0f context switches/GB (%d passes)\n",
				r, c, float64(w1-w0)/gb, *cpuPasses)
		}
		fmt.Printf("median: ahvfs %.3f CPU s/GB\n", median(costs))
		return
	}
	var perfs, ours []float64
	for r := 1; r <= *rounds; r++ {
		p := 1.0
		var perfCPU, tgtdCPU1 float64
		if !*skipPerf {
			t0 := cpuTime(tg.cmd.Process.Pid)
			if p, perfCPU, err = runPerf(url, *blocks, *maxReq, *seconds); err != nil {
				log.Fatal(err)
			}
			tgtdCPU1 = cpuTime(tg.cmd.Process.Pid) - t0
		}
		t0, s0 := cpuTime(tg.cmd.Process.Pid), cpuTime(os.Getpid())
		a, moved, err := runAhvfs(o, path, *chunk, *readers, time.Duration(*seconds)*time.Second, false)
		if err != nil {
			log.Fatal(err)
		}
		tgtdCPU2, selfCPU := cpuTime(tg.cmd.Process.Pid)-t0, cpuTime(os.Getpid())-s0
		if *verbose {
			perfGB := p * float64(*seconds) / 1e3
			fmt.Printf("  CPU s/GB: iscsi-perf %.2f, its tgtd %.2f; ahvfs %.2f, its tgtd %.2f\n",
				perfCPU/perfGB, tgtdCPU1/perfGB, selfCPU/(float64(moved)/1e9), tgtdCPU2/(float64(moved)/1e9))
		}
		perfs, ours = append(perfs, p), append(ours, a)
		fmt.Printf("round %d: iscsi-perf %.0f MB/s, ahvfs %.0f MB/s, ratio %.2f\n", r, p, a, a/p)
	}
	mp, ma := median(perfs), median(ours)
	fmt.Printf("median: iscsi-perf %.0f MB/s, ahvfs %.0f MB/s, ratio %.2f\n", mp, ma, ma/mp)
}

var profileFile *os.File

// cpuTime returns user+system CPU seconds of a process from /proc.
func cpuTime(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// rusageCPU returns the user+system CPU seconds used by this process and
// its context switches.
func rusageCPU() (float64, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), ru.Nvcsw + ru.Nivcsw
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// makeLUN fills path with size bytes copied from the files under /usr/lib
// (real, mostly non-zero data).
func makeLUN(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	left := size
	stop := errors.New("full")
	for left > 0 {
		err := filepath.WalkDir("/usr/lib", func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			src, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer src.Close()
			n, _ := io.Copy(w, io.LimitReader(src, left))
			left -= n
			if left == 0 {
				return stop
			}
			return nil
		})
		if err != nil && err != stop {
			return err
		}
		if left == size {
			return errors.New("no data under /usr/lib")
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// Finish writeback now, not during the measurements.
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

type tgtd struct {
	cmd  *exec.Cmd
	addr string
}

// segParams are the target parameters set by -segments.
var segParams [][2]string

func startTgtd(path string) (*tgtd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	var ctl int
	for {
		ctl = 10000 + rand.IntN(22000)
		if exec.Command("tgtadm", "-C", strconv.Itoa(ctl), "--op", "show", "--mode", "sys").Run() != nil {
			break
		}
	}
	t := &tgtd{cmd: exec.Command("tgtd", "-f", "-C", strconv.Itoa(ctl), "--iscsi", "portal="+addr), addr: addr}
	// tgtd allocates one buffer per command. With glibc's default, a
	// 128 KiB buffer is mmap'd and unmapped per command until some larger
	// buffer has been freed, so whichever initiator ran first decided the
	// target's cost for both (iscsi-perf measured 981 or 2454 MB/s in the
	// same configuration). A fixed threshold puts every buffer on the heap
	// for both initiators.
	t.cmd.Env = append(os.Environ(), "MALLOC_MMAP_THRESHOLD_=16777216")
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tgtd: %w", err)
	}
	adm := func(args ...string) error {
		full := append([]string{"-C", strconv.Itoa(ctl), "--lld", "iscsi"}, args...)
		out, err := exec.Command("tgtadm", full...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tgtadm %v: %v: %s", args, err, out)
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for adm("--op", "show", "--mode", "sys") != nil {
		if time.Now().After(deadline) {
			t.stop()
			return nil, errors.New("tgtd did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", "1", "-T", targetIQN},
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", path},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := adm(args...); err != nil {
			t.stop()
			return nil, err
		}
	}
	// With -segments, the target sends Data-In PDUs of up to that size
	// instead of tgtd's 8 KiB default (both initiators see the same target).
	for _, kv := range segParams {
		args := []string{"--op", "update", "--mode", "target", "--tid", "1", "-n", kv[0], "-v", kv[1]}
		if err := adm(args...); err != nil {
			t.stop()
			return nil, err
		}
	}
	return t, nil
}

// stop kills tgtd with SIGKILL: it ignores SIGTERM.
func (t *tgtd) stop() {
	_ = t.cmd.Process.Kill()
	_ = t.cmd.Wait()
}

var perfAverage = regexp.MustCompile(`iops average \d+ \((\d+) MB/s\)`)

// runPerf runs iscsi-perf and returns its average rate and CPU seconds.
func runPerf(url string, blocks, maxReq, seconds int) (float64, float64, error) {
	cmd := exec.Command("iscsi-perf", "-b", strconv.Itoa(blocks), "-m", strconv.Itoa(maxReq),
		"-t", strconv.Itoa(seconds), url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("iscsi-perf: %v: %s", err, out)
	}
	m := perfAverage.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return 0, 0, fmt.Errorf("iscsi-perf: no average in output: %s", out)
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	rate, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	// iscsi-perf's "MB/s" are MiB/s (iops x request size / 2^20).
	return rate * (1 << 20) / 1e6, cpu, err
}

// runAhvfs reads the LUN sequentially with readers concurrent ReadAt
// callers taking chunks in order, whole passes until minTime has passed.
// With check, it reads one pass and compares every chunk with the file.
// It returns the rate and the bytes moved.
func runAhvfs(o iscsi.Options, path string, chunk, readers int, minTime time.Duration, check bool) (float64, int64, error) {
	ctx := context.Background()
	s, err := iscsi.Dial(ctx, o)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close(ctx)
	lun, err := s.LUN(ctx, 1)
	if err != nil {
		return 0, 0, err
	}
	if profileFile != nil && !check {
		if err := pprof.StartCPUProfile(profileFile); err == nil {
			defer pprof.StopCPUProfile()
			profileFile = nil // one round only
		}
	}
	size := lun.Size()
	nchunks := int((size + int64(chunk) - 1) / int64(chunk))
	var moved int64
	start := time.Now()
	for pass := 0; pass == 0 || time.Since(start) < minTime; pass++ {
		var next atomic.Int64
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		var sums [][32]byte
		if check {
			sums = make([][32]byte, nchunks)
		}
		for range readers {
			wg.Go(func() {
				buf := make([]byte, chunk)
				for {
					i := int(next.Add(1) - 1)
					if i >= nchunks {
						return
					}
					n, err := lun.ReadAtContext(ctx, buf, int64(i)*int64(chunk))
					if err != nil && !(err == io.EOF && int64(i)*int64(chunk)+int64(n) == size) {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						return
					}
					if check {
						sums[i] = sha256.Sum256(buf[:n])
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return 0, 0, firstErr
		}
		moved += size
		if check {
			return 0, moved, checkPass(path, sums, chunk)
		}
	}
	return float64(moved) / time.Since(start).Seconds() / 1e6, moved, nil
}

// checkPass compares per-chunk hashes of what was read with the file.
func checkPass(path string, sums [][32]byte, chunk int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, chunk)
	for i, s := range sums {
		n, err := f.ReadAt(buf, int64(i)*int64(chunk))
		if err != nil && err != io.EOF {
			return err
		}
		if sha256.Sum256(buf[:n]) != s {
			return fmt.Errorf("ahvfs read wrong data in chunk %d", i)
		}
	}
	return nil
}
