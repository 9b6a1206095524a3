package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

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

// TestVerifyBoot imports the bootable test disk and the same disk without
// its kernel as two restore points, then checks each with verify-boot
// through the FUSE mount: the first boots (exit 0, a PNG screenshot), the
// second is reported as not booted with its console (exit 8). The
// repository is not written.
func TestVerifyBoot(t *testing.T) {
	testenv.Commands(t, "qemu-system-x86_64", "qemu-img")
	testenv.FUSE(t)
	err := mkimage.CheckBootable()
	testenv.RequireOrSkip(t, err == nil, fmt.Sprint(err))
	work := t.TempDir()
	good, broken := filepath.Join(work, "boot.raw"), filepath.Join(work, "nokernel.raw")
	require.NoError(t, mkimage.BuildBootable(context.Background(), good, mkimage.BootSpec{}))
	require.NoError(t, mkimage.BuildBootable(context.Background(), broken, mkimage.BootSpec{NoKernel: true}))
	repo := filepath.Join(work, "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "bootvm", "--time", "2026-11-01T10:00:00Z", good)
	mustCLI(t, "import", "--repo", repo, "--vm", "bootvm", "--time", "2026-11-02T10:00:00Z", broken)
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

	_, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "--nfs", "127.0.0.1:2050", "bootvm@latest")
	require.Equal(t, exitUsage, code, errs)
	_, errs, code = runCLI(t, "", "verify-boot", "--repo", repo, "--expect", "(", "bootvm@latest")
	require.Equal(t, exitUsage, code, errs)
}
