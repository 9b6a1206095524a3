// Command backupkill kills `ahvfs backup` with SIGKILL at random moments,
// many times, through each Prism API (v4, v3, and v2.0 snapshots), and
// checks after each kill that `ahvfs cleanup` leaves the simulated cluster
// with nothing but the reference snapshots the repository keeps, and that
// every deletion cleanup reports really happened.
//
//	go run ./tools/crash/backupkill [-kills 20] [-apis v4,v3,v2] [-ahvfs bin/ahvfs] [-v]
//
// It needs root and tgtd (the simulator exports volume groups over
// iSCSI). It exits 1 if any check failed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/prismsim"
)

func main() {
	o := options{}
	flag.IntVar(&o.Kills, "kills", 20, "kills per API")
	apis := flag.String("apis", "v4,v3,v2", "APIs to back up through (v2: v3 client, v2.0 snapshots)")
	flag.StringVar(&o.Ahvfs, "ahvfs", "", "ahvfs binary (default: built from ./cmd/ahvfs)")
	flag.BoolVar(&o.Verbose, "v", false, "print every kill")
	flag.Parse()
	o.APIs = strings.Split(*apis, ",")
	crashproc.Main("backupkill", func(ctx context.Context) error { return run(ctx, o, os.Stdout) })
}

type options struct {
	Kills   int
	APIs    []string
	Ahvfs   string
	Verbose bool
}

// run builds ahvfs if needed and runs the kills of every API, printing a
// line per API; the error lists every failed check.
func run(ctx context.Context, o options, out *os.File) error {
	work, err := os.MkdirTemp("", "backupkill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if o.Ahvfs == "" {
		var err error
		if o.Ahvfs, err = crashproc.BuildAhvfs(work); err != nil {
			return err
		}
	}
	var errs []error
	for _, api := range o.APIs {
		res, err := killAPI(ctx, o, api, filepath.Join(work, api))
		fmt.Fprintf(out, "%-3s %2d kills: %3d objects deleted by cleanup, %d checks failed, %v\n",
			api, res.kills, res.deleted, len(res.failures), res.elapsed.Round(time.Second))
		for _, f := range res.failures {
			fmt.Fprintf(out, "    %s\n", f)
			errs = append(errs, fmt.Errorf("%s: %s", api, f))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", api, err))
		}
	}
	return errors.Join(errs...)
}

type result struct {
	kills, deleted int
	failures       []string
	elapsed        time.Duration
}

// site is one simulated cluster with two VMs and a repository.
type site struct {
	sim   *prismsim.Sim
	repo  string
	args  []string // cluster and repository flags
	disks []string // live disk files, written as the guest
	o     options
}

func newSite(ctx context.Context, o options, api, dir string) (*site, error) {
	sim, err := prismsim.New(ctx, prismsim.Options{StateDir: filepath.Join(dir, "sim"), ISCSIPortal: "127.0.0.1:0",
		TaskDelay: 5 * time.Millisecond, NoV3Snapshots: api == "v2"})
	if err != nil {
		return nil, err
	}
	s := &site{sim: sim, repo: filepath.Join(dir, "repo"), o: o}
	for i, name := range []string{"web01", "db01"} {
		img := filepath.Join(dir, name+".raw")
		if err := dataDisk(img, 48<<20, uint64(i+1)); err != nil {
			return nil, err
		}
		vm, err := sim.AddVM(ctx, name, []string{img}, prismsim.VMOptions{})
		if err != nil {
			return nil, err
		}
		s.disks = append(s.disks, vm.Disks...)
	}
	_, port, _ := strings.Cut(sim.ISCSIPortal(), ":")
	clientAPI := api
	if api == "v2" {
		clientAPI = "v3"
	}
	s.args = []string{"--repo", s.repo, "--prism", sim.URL(), "--password-file", sim.PasswordFile(), "--ca-cert", sim.CAFile()}
	if _, err := s.ahvfs(ctx, "init", "--repo", s.repo); err != nil {
		return nil, err
	}
	s.args = append(s.args, "--api", clientAPI, "--iscsi-port", port, "--initiator-iqn", "iqn.2026-11.io.ahvfs:backupkill")
	return s, nil
}

func (s *site) ahvfs(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.o.Ahvfs, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ahvfs %s: %v: %s", strings.Join(args[:1], " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func killAPI(ctx context.Context, o options, api, dir string) (res result, err error) {
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	s, err := newSite(ctx, o, api, dir)
	if err != nil {
		return res, err
	}
	defer s.sim.Close()
	// How long a run takes, to spread the kills over it.
	t0 := time.Now()
	if _, err := s.ahvfs(ctx, append([]string{"backup"}, s.args...)...); err != nil {
		return res, err
	}
	span := time.Since(t0)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	levels := []string{"auto", "full", "differential", "copy"}
	for i := 0; i < o.Kills && ctx.Err() == nil; i++ {
		for _, d := range s.disks {
			if err := scribble(d, rnd); err != nil {
				return res, err
			}
		}
		level := levels[i%len(levels)]
		delay := time.Duration(rnd.Int64N(int64(span) * 5 / 4))
		if err := s.killOnce(ctx, level, delay); err != nil {
			return res, err
		}
		res.kills++
		n, failures := s.cleanupAndCheck(ctx)
		res.deleted += n
		for _, f := range failures {
			res.failures = append(res.failures, fmt.Sprintf("kill %d (%s after %v): %s", i, level, delay.Round(time.Millisecond), f))
		}
		if o.Verbose {
			fmt.Printf("%s kill %d (%s after %v): cleanup deleted %d\n", api, i, level, delay.Round(time.Millisecond), n)
		}
	}
	// Afterwards the chain still works and the repository verifies.
	if _, err := s.ahvfs(ctx, append([]string{"backup"}, s.args...)...); err != nil {
		res.failures = append(res.failures, "backup after the kills: "+err.Error())
	}
	if _, err := s.ahvfs(ctx, "verify", "--repo", s.repo); err != nil {
		res.failures = append(res.failures, "verify after the kills: "+err.Error())
	}
	return res, nil
}

// killOnce starts a backup and kills its process group after delay (or
// lets it finish, when it is quicker).
func (s *site) killOnce(ctx context.Context, level string, delay time.Duration) error {
	cmd := exec.CommandContext(ctx, s.o.Ahvfs, append([]string{"backup", "--level", level}, s.args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	time.Sleep(delay)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	s.sim.WaitIdle(30*time.Second, 0) // the cluster serves what the dead process sent
	return nil
}

// cleanupAndCheck runs `ahvfs cleanup` (through auto: objects made through
// another API are deleted through theirs) and checks the cluster.
func (s *site) cleanupAndCheck(ctx context.Context) (deleted int, failures []string) {
	before := s.sim.Objects()
	out, err := s.ahvfs(ctx, append([]string{"cleanup", "--json"}, cleanupArgs(s.args)...)...)
	if err != nil {
		return 0, []string{err.Error()}
	}
	var rep clusterjob.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return 0, []string{fmt.Sprintf("cleanup --json: %v: %s", err, out)}
	}
	s.sim.WaitIdle(30*time.Second, 0)
	after := s.sim.Objects()
	changes := prismsim.Diff(before, after)
	for _, d := range rep.Deleted {
		if !names(changes, d) {
			failures = append(failures, fmt.Sprintf("cleanup reports %q, which the cluster did not lose (changes: %s; before: %+v)", d,
				strings.TrimSpace(changes.String()), before.Snapshots))
		}
	}
	// What may stay: the reference snapshots of each VM's kept record.
	j, err := clusterjob.OpenJournal(filepath.Join(s.repo, "journal"))
	if err != nil {
		return len(rep.Deleted), append(failures, err.Error())
	}
	if p, err := j.Pending(); err != nil || len(p) != 0 {
		failures = append(failures, fmt.Sprintf("journal still records %v (%v)", p, err))
	}
	kept := map[string]bool{}
	for _, vm := range after.VMs {
		ref, err := backup.LoadReference(j, vm.UUID)
		if err != nil {
			failures = append(failures, err.Error())
		}
		if ref != nil {
			kept[ref.Last.Snapshot.Name] = true
			if ref.Full != nil {
				kept[ref.Full.Snapshot.Name] = true
			}
		}
	}
	for _, sn := range after.Snapshots {
		if !kept[sn.Name] {
			failures = append(failures, fmt.Sprintf("snapshot %s (%s) left on the cluster", sn.Name, sn.API))
		}
	}
	for _, g := range after.VolumeGroups {
		failures = append(failures, fmt.Sprintf("volume group %s left (clients %v)", g.Name, g.Clients))
	}
	for _, im := range after.Images {
		failures = append(failures, fmt.Sprintf("image %s left", im.Name))
	}
	if len(after.VMs) != 2 {
		failures = append(failures, fmt.Sprintf("%d VMs on the cluster, want 2", len(after.VMs)))
	}
	return len(rep.Deleted), failures
}

// cleanupArgs are the backup's flags without its API choice: cleanup
// probes (auto) and reaches other APIs through their own clients.
func cleanupArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--api", "--iscsi-port", "--initiator-iqn":
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// names reports whether some change names the object of a report line
// (by name or UUID).
func names(changes prismsim.Changes, line string) bool {
	for _, c := range changes {
		if c.Name != "" && strings.Contains(line, c.Name) || c.UUID != "" && strings.Contains(line, c.UUID) {
			return true
		}
	}
	return false
}

// dataDisk writes a disk image of random data with zero stretches.
func dataDisk(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(seed, 3))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 2 << 20 {
		for i := range buf {
			buf[i] = byte(rnd.Uint32())
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return nil
}

// scribble overwrites a few random MiB of a live disk, as a guest would.
func scribble(path string, rnd *rand.Rand) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for range 3 {
		for i := range buf {
			buf[i] = byte(rnd.Uint32())
		}
		if _, err := f.WriteAt(buf, rnd.Int64N(st.Size()/(1<<20))<<20); err != nil {
			return err
		}
	}
	return nil
}
