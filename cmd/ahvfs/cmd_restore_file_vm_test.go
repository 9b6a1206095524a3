package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/stretchr/testify/require"
)

// guestCat is the content of path in the first partition's ext4
// filesystem of disk image img, read with debugfs.
func guestCat(t *testing.T, img, path string) (string, bool) {
	t.Helper()
	cmd := exec.Command("debugfs", "-R", "cat "+path, img+"?offset=1048576")
	var out, errs strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errs
	require.NoError(t, cmd.Run())
	if strings.Contains(errs.String(), "not found") {
		return "", false
	}
	return out.String(), true
}

// TestRestoreFileToVM copies files of a restore point straight into a
// running guest of the simulator (vmm v4.3 transfer-files-to-guest, the
// disk read from nfs-serve): a file back to its own path, a directory
// under --to; an existing file is refused without --overwrite; wrong
// guest credentials, a powered-off VM and a cluster without vmm v4.3 are
// refused; no external repository or journal entry is left.
func TestRestoreFileToVM(t *testing.T) {
	testenv.Commands(t, "debugfs", "sfdisk", "mkfs.ext4")
	clearSiteEnv(t)
	ctx := context.Background()
	work := t.TempDir()
	// The backed-up guest: a file and a directory tree.
	tree := filepath.Join(work, "src")
	for p, body := range map[string]string{"etc/motd": "restored from the backup\n", "srv/data/a.txt": "alpha\n", "srv/data/b/c.txt": "gamma\n"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(tree, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tree, p), []byte(body), 0o644))
	}
	src := filepath.Join(work, "src.raw")
	require.NoError(t, mkimage.Build(ctx, src, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 16 << 20, Dir: tree}}}))
	repo := filepath.Join(work, "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "web01", "--time", "2026-11-22T01:30:00Z", src)
	nfsAddr := startNFSServe(t, repo)

	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{TaskDelay: 20 * time.Millisecond, V4Revisions: []string{"v4.0", "v4.1", "v4.2", "v4.3"}}})
	// The running guest: an ext4 filesystem whose /etc/motd differs.
	live := filepath.Join(work, "live")
	require.NoError(t, os.MkdirAll(filepath.Join(live, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(live, "etc/motd"), []byte("changed since\n"), 0o644))
	liveImg := filepath.Join(work, "live.raw")
	require.NoError(t, mkimage.Build(ctx, liveImg, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 16 << 20, Dir: live}}}))
	vi, err := s.AddVM(ctx, "web01-live", []string{liveImg}, prismsim.VMOptions{NGT: prismsim.NGTInstalled, Move: true})
	require.NoError(t, err)
	_, err = s.AddVM(ctx, "web01-off", []string{filepath.Join(work, "src.raw")}, prismsim.VMOptions{NGT: prismsim.NGTInstalled, PowerState: "OFF"})
	require.NoError(t, err)
	guest := vi.Disks[0]

	site := []string{"--repo", repo, "--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile(), "--nfs", nfsAddr}
	toVM := func(vm, creds string, args ...string) (string, string, int) {
		return runCLI(t, "", append(append([]string{"restore-file", "--to-vm", vm, "--guest-credentials-file", creds}, site...), args...)...)
	}
	creds := s.GuestCredentialsFile()

	// In place: /etc/motd exists in the guest, so --overwrite is needed.
	out, errs, code := toVM("web01-live", creds, "web01@latest", "disk-0/part-1/etc/motd")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, errs, "/etc/motd exists in the guest")
	got, _ := guestCat(t, guest, "/etc/motd")
	require.Equal(t, "changed since\n", got)
	out, errs, code = toVM("web01-live", creds, "--overwrite", "web01@latest", "disk-0/part-1/etc/motd")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errs)
	require.Contains(t, out, "copied 1 file(s) of web01@2026-11-22T01:30:00Z into VM web01-live")
	got, _ = guestCat(t, guest, "/etc/motd")
	require.Equal(t, "restored from the backup\n", got)

	// A directory, under --to: each file below it.
	out, errs, code = toVM("web01-live", creds, "--to", "/restore", "web01@latest", "disk-0/part-1/srv/data")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errs)
	for p, want := range map[string]string{"/restore/data/a.txt": "alpha\n", "/restore/data/b/c.txt": "gamma\n"} {
		got, ok := guestCat(t, guest, p)
		require.True(t, ok, "%s not in the guest", p)
		require.Equal(t, want, got, p)
	}

	// Refusals.
	bad := filepath.Join(work, "bad.credentials")
	require.NoError(t, os.WriteFile(bad, []byte("root\nnot-the-password\n"), 0o600))
	_, errs, code = toVM("web01-live", bad, "--to", "/x", "web01@latest", "disk-0/part-1/etc/motd")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "guest authentication failed")
	require.NotContains(t, errs, "not-the-password", "the guest password was printed")
	_, errs, code = toVM("web01-off", creds, "--to", "/x", "web01@latest", "disk-0/part-1/etc/motd")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "power it on first")
	_, errs, code = toVM("web01-live", creds, "web01@latest", "disk-0/part-1/no/such/file")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "no/such/file: file does not exist")
	one := filepath.Join(work, "one.credentials")
	require.NoError(t, os.WriteFile(one, []byte("root\n"), 0o600))
	_, errs, code = toVM("web01-live", one, "web01@latest", "disk-0/part-1/etc/motd")
	require.Equal(t, exitUsage, code, errs)

	// A path in two filesystems of the disk: the cluster could read
	// either, so it is refused.
	dual := filepath.Join(work, "dual.raw")
	require.NoError(t, mkimage.Build(ctx, dual, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{
		{FS: mkimage.Ext4, Size: 16 << 20, Dir: tree}, {FS: mkimage.Ext4, Size: 16 << 20, Dir: tree}}}))
	mustCLI(t, "import", "--repo", repo, "--vm", "dual", dual)
	_, errs, code = toVM("web01-live", creds, "--to", "/x", "dual@latest", "disk-0/part-2/etc/motd")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "etc/motd exists in disk-0/part-2 and in disk-0/part-1")
	_, errs, code = runCLI(t, "", "restore-file", "--repo", repo, "--to", t.TempDir(), "--nfs", nfsAddr, "web01@latest", "disk-0/part-1/etc/motd")
	require.Equal(t, exitUsage, code, errs)

	s.WaitIdle(30*time.Second, 0)
	inv := s.Objects()
	require.Empty(t, inv.ExternalRepositories, "external repositories left behind")
	pending, err := openJournal(t, repo).Pending()
	require.NoError(t, err)
	require.Empty(t, pending, "journal entries left")

	// A cluster with vmm v4.2 only says what it lacks.
	s42 := simtest.Start(t, simtest.Options{Options: prismsim.Options{TaskDelay: time.Millisecond, V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}})
	_, err = s42.AddVM(ctx, "web01-live", []string{filepath.Join(work, "src.raw")}, prismsim.VMOptions{NGT: prismsim.NGTInstalled})
	require.NoError(t, err)
	_, errs, code = runCLI(t, "", "restore-file", "--to-vm", "web01-live", "--guest-credentials-file", s42.GuestCredentialsFile(),
		"--repo", repo, "--prism", s42.URL(), "--password-file", s42.PasswordFile(), "--ca-cert", s42.CAFile(), "--nfs", nfsAddr,
		"web01@latest", "disk-0/part-1/etc/motd")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, fmt.Sprintf("needs vmm %s", "v4.3"))
}
