package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestNFSServeCommand runs "ahvfs nfs-serve" as a process: it prints where
// it listens (NFS and the portmapper; nfs TestStandardPorts has real
// clients use port 111), libnfs's nfs-cat reads a guest file deep in a restore point
// and the whole disk through it, and SIGTERM stops it with exit 0.
func TestNFSServeCommand(t *testing.T) {
	testenv.Commands(t, "nfs-cat")
	repo, src := guestRepoDir(t)
	cmd, started, stderr := startNFSServeProcess(t, repo, "--listen", "127.0.0.1:0", "--portmap", "127.0.0.1:0")
	if !strings.HasPrefix(started.Portmap, "127.0.0.1:") {
		t.Fatalf("start report: portmap %q", started.Portmap)
	}
	if fmt.Sprint(started.Allow) != "[127.0.0.0/8 ::1/128]" {
		t.Errorf("default clients %v, want loopback only", started.Allow)
	}
	_, port, _ := net.SplitHostPort(started.Listen)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cat := func(p string) []byte {
		t.Helper()
		url := fmt.Sprintf("nfs://127.0.0.1/%s?version=3&nfsport=%s&mountport=%s&auto-traverse-mounts=0", p, port, port)
		var errb strings.Builder
		c := exec.CommandContext(ctx, "nfs-cat", url)
		c.Stderr = &errb
		out, err := c.Output()
		if err != nil {
			t.Fatalf("nfs-cat %s: %v: %s", p, err, errb.String())
		}
		return out
	}
	rp := "web01/" + guestTime
	leaf := cat(rp + "/disk-0/part-1/deep/a/b/c/d/e/f/g/leaf.txt")
	want, _ := os.ReadFile(filepath.Join(src, "deep", "a", "b", "c", "d", "e", "f", "g", "leaf.txt"))
	if string(leaf) != string(want) || len(want) == 0 {
		t.Fatalf("leaf.txt over NFS: %q, want %q", leaf, want)
	}
	disk := cat(rp + "/disk-0.raw")
	if out, errs, code := runCLI(t, "", "cat", "--repo", repo, "web01@"+guestTime, "disk-0"); code != 0 || out != string(disk) {
		t.Fatalf("disk over NFS (%d bytes) differs from ahvfs cat (%d bytes, exit %d: %s)", len(disk), len(out), code, errs)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; stderr %s", err, stderr)
	}
}
