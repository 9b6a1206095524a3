package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/stretchr/testify/require"
)

// repoDigest is a hash over every file of the repository directory: names,
// sizes and contents.
func repoDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", p)
		_, err = io.Copy(h, f)
		return err
	})
	require.NoError(t, err)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// bootRepo makes a repository in work holding the bootable test disk as
// restore point good and the same disk without its kernel as broken
// (both VM@TIME), after checking verify-boot's prerequisites.
func bootRepo(t *testing.T, work, good, broken string) string {
	t.Helper()
	testenv.Commands(t, "qemu-system-x86_64", "qemu-img")
	testenv.FUSE(t)
	err := mkimage.CheckBootable()
	testenv.RequireOrSkip(t, err == nil, fmt.Sprint(err))
	repo := filepath.Join(work, "repo")
	mustCLI(t, "init", "--repo", repo)
	for i, rp := range []string{good, broken} {
		img := filepath.Join(work, fmt.Sprintf("boot-%d.raw", i))
		require.NoError(t, mkimage.BuildBootable(context.Background(), img, mkimage.BootSpec{NoKernel: i == 1}))
		vm, at, _ := strings.Cut(rp, "@")
		mustCLI(t, "import", "--repo", repo, "--vm", vm, "--time", at, img)
	}
	return repo
}

// TestVerifyBoot imports the bootable test disk and the same disk without
// its kernel as two restore points, then checks each with verify-boot
// through the FUSE mount: the first boots (exit 0, a PNG screenshot), the
// second is reported as not booted with its console (exit 8). The
// repository is not written.
func TestVerifyBoot(t *testing.T) {
	work := t.TempDir()
	repo := bootRepo(t, work, "bootvm@2026-11-01T10:00:00Z", "bootvm@2026-11-02T10:00:00Z")
	before := repoDigest(t, repo)

	shot := filepath.Join(work, "screen.png")
	out, errs, code := runCLI(t, "", "verify-boot", "--repo", repo, "--json", "--screenshot", shot, "bootvm@2026-11-01T10:00:00Z")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errs)
	var rep struct {
		RestorePoint string `json:"restore_point"`
		Booted       bool   `json:"booted"`
		Reason       string `json:"reason"`
		Matched      string `json:"matched"`
		Console      string `json:"console"`
		Screenshot   string `json:"screenshot"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.Booted)
	require.Equal(t, "matched", rep.Reason)
	require.Equal(t, "ahvfs-boot login:", rep.Matched)
	require.Equal(t, shot, rep.Screenshot)
	f, err := os.Open(shot)
	require.NoError(t, err)
	_, err = png.Decode(f)
	f.Close()
	require.NoError(t, err, "the screenshot is not a PNG")

	out, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "bootvm@latest")
	require.Equal(t, exitNotBooted, code, "stdout: %s\nstderr: %s", out, errs)
	require.Contains(t, out, "NOT BOOTED: bootvm@2026-11-02T10:00:00Z: boot failure")
	require.Contains(t, out, "  | Loading /vmlinuz... failed: No such file or directory")
	require.Contains(t, errs, "did not boot")

	// An expectation the guest never prints fails at the timeout.
	out, _, code = runCLI(t, "", "verify-boot", "--repo", repo, "--expect", "never printed", "--timeout", "2s", "bootvm@2026-11-01T10:00:00Z")
	require.Equal(t, exitNotBooted, code, out)
	require.Contains(t, out, "NOT BOOTED: bootvm@2026-11-01T10:00:00Z: timeout")

	require.Equal(t, before, repoDigest(t, repo), "verify-boot wrote to the repository")

	// A UEFI VM (its configuration record says so) boots with OVMF.
	uefi := filepath.Join(work, "uefi.raw")
	require.NoError(t, mkimage.BuildBootable(context.Background(), uefi, mkimage.BootSpec{UEFI: true}))
	cfg := filepath.Join(work, "uefi.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"version":1,"name":"uefivm","boot_type":"UEFI","memory_bytes":536870912,"vcpus":1,`+
		`"disks":[{"disk":0,"bus":"scsi","index":0,"size_bytes":67108864}],"nics":[]}`), 0o644))
	mustCLI(t, "import", "--repo", repo, "--vm", "uefivm", "--config", cfg, uefi)
	out, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "uefivm@latest")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errs)
	require.Contains(t, out, `printed "ahvfs-boot login:"`)

	_, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "--nfs", "127.0.0.1:2050", "bootvm@latest")
	require.Equal(t, exitUsage, code, errs)
	_, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "--expect", "(", "bootvm@latest")
	require.Equal(t, exitUsage, code, errs)
}

// waitKilled waits for a verify-boot killed with SIGKILL. One that has
// not ended after 30 s is a failure: a thread of it left blocked in a
// request to its own FUSE mount, which no kill can end (the bug that
// fusefs.Options.OthersOnly mends). The test then aborts the FUSE
// connections of the mounts under dir (fusectl), so that the process
// ends and the suite goes on.
func waitKilled(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(30 * time.Second):
	}
	t.Errorf("the killed verify-boot did not exit after 30 s (a thread blocked in a request to its own FUSE mount?): aborting its FUSE connections")
	os.MkdirAll("/sys/fs/fuse/connections", 0o755)
	exec.Command("mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections").Run()
	info, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[4], dir) {
			continue
		}
		if _, minor, ok := strings.Cut(f[2], ":"); ok {
			os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0o200)
		}
		syscall.Unmount(f[4], syscall.MNT_DETACH)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the killed verify-boot did not exit even with its FUSE connection aborted")
	}
}

// processesUnder lists the PIDs whose command line names something under
// dir (QEMU names its overlays).
func processesUnder(dir string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

// TestVerifyBootKill kills verify-boot with SIGKILL at random moments while
// it mounts the repository and boots: QEMU goes with it every time, and
// the next check removes what the dead one left (its work directory and
// the dead FUSE mount in it).
func TestVerifyBootKill(t *testing.T) {
	work := t.TempDir()
	repo := bootRepo(t, work, "bootvm@2026-11-01T10:00:00Z", "broken@2026-11-01T10:00:00Z")
	tmp := filepath.Join(work, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o755))
	t.Setenv("TMPDIR", tmp)

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill moments from seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 29))
	sawQEMU := 0
	for round := 0; round < 5; round++ {
		cmd := exec.Command(ahvfsBin, "verify-boot", "--repo", repo, "--expect", "never printed", "--timeout", "5m", "bootvm@latest")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		require.NoError(t, cmd.Start())
		// Half the kills early (opening, mounting, starting QEMU), half
		// while the guest boots.
		spread := []int{300, 4000}[rng.IntN(2)]
		deadline := time.Now().Add(time.Duration(rng.IntN(spread)) * time.Millisecond)
		for time.Now().Before(deadline) && len(processesUnder(tmp)) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Until(deadline))
		if len(processesUnder(tmp)) > 0 {
			sawQEMU++
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		waitKilled(t, cmd, tmp)
		require.Eventually(t, func() bool { return len(processesUnder(tmp)) == 0 }, time.Minute, 50*time.Millisecond,
			"round %d: QEMU outlived verify-boot: %v", round, processesUnder(tmp))
	}
	t.Logf("qemu-img or QEMU was running at %d of 5 kills", sawQEMU)

	out, errs, code := runCLI(t, "", "verify-boot", "--repo", repo, "broken@latest")
	require.Equal(t, exitNotBooted, code, "stdout: %s\nstderr: %s", out, errs)
	left, _ := filepath.Glob(filepath.Join(tmp, "ahvfs-verify-boot-*"))
	require.Empty(t, left, "work directories left behind")
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), tmp, "a dead check's FUSE mount is still there")
}
