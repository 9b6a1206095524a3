package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/s3test"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/internal/testtls"
)

// s3Repo starts versitygw and returns the arguments that name a fresh
// s3:// repository on it (credentials in a file), and the server.
func s3Repo(t *testing.T) ([]string, *s3test.Server) {
	t.Helper()
	srv := s3test.StartVersitygw(t, s3test.Options{})
	creds := filepath.Join(t.TempDir(), "s3.credentials")
	body := "[default]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(creds, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AHVFS_S3_ENDPOINT", "AHVFS_CACHE_DIR"} {
		t.Setenv(k, "")
	}
	// --cache-dir comes last: tests give a second host its own.
	return []string{"--repo", s3test.URL(s3test.NewBucketName(), "site-a/repo"), "--s3-endpoint", srv.Endpoint,
		"--s3-credentials-file", creds, "--state-dir", filepath.Join(t.TempDir(), "state"), "--cache-dir", filepath.Join(t.TempDir(), "cache")}, srv
}

// withRepo replaces the --repo of args with the repository arguments repo.
func withRepo(args, repo []string) []string {
	i := slices.Index(args, "--repo")
	out := slices.Clone(args[:i])
	out = append(out, args[i+2:]...)
	return append(out, repo...)
}

// TestS3RepositoryCommands: a backup from the simulator and an import go
// into an s3:// repository on a real S3-compatible server; list, cat,
// verify --read-data, export and restore work from it byte-exact, also
// after this host's cache was deleted; the secret is in no output, log or
// object.
func TestS3RepositoryCommands(t *testing.T) {
	testenv.Commands(t, "qemu-img")
	s, _, clusterArgs := backupSim(t)
	repo, srv := s3Repo(t)
	cache := repo[len(repo)-1]
	r := func(args ...string) []string { return append(args, repo...) }
	mustCLI(t, r("init", "--chunk-size", "256KiB")...)

	_, errs, code := runCLI(t, "", append([]string{"backup", "--vm", "web01", "--log-level", "debug"}, withRepo(clusterArgs, repo)...)...)
	if code != 0 {
		t.Fatalf("backup into S3: exit %d: %s", code, errs)
	}
	logs := errs
	img := enginetest.Ext4Image(t, 64<<20, 7)
	mustCLI(t, r("import", "--vm", "imported", "--time", "2026-11-22T01:30:00Z", img)...)

	var list []listEntry
	if err := json.Unmarshal([]byte(mustCLI(t, r("list", "--json")...)), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %+v", err, list)
	}
	vi, ok := s.VM("web01")
	if !ok {
		t.Fatal("no web01")
	}
	checkCat := func(what string) {
		for i, file := range vi.Disks {
			want, _ := os.ReadFile(file)
			if got := mustCLI(t, r("cat", "web01@latest", "disk-"+string(rune('0'+i)))...); got != string(want) {
				t.Fatalf("%s: cat web01 disk-%d differs from the VM's disk", what, i)
			}
		}
		want, _ := os.ReadFile(img)
		if got := mustCLI(t, r("cat", "imported@latest", "disk-0")...); got != string(want) {
			t.Fatalf("%s: cat of the imported disk differs from the image", what)
		}
	}
	checkCat("after backup")
	if out := mustCLI(t, r("verify", "--read-data")...); !strings.Contains(out, "no errors") {
		t.Fatalf("verify --read-data: %s", out)
	}

	// The backup's journal (the reference snapshot it keeps) is host state,
	// beside the cache, not in it.
	state := repo[slices.Index(repo, "--state-dir")+1]
	if kept, _ := filepath.Glob(filepath.Join(state, "*", "journal", "kept", "*")); len(kept) == 0 {
		t.Fatalf("no kept record under the state directory %s", state)
	}

	// The cache goes; everything still works, from the bucket alone.
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	checkCat("after the cache was deleted")
	if out := mustCLI(t, r("repair", "index")...); !strings.Contains(out, "2 restore points") {
		t.Fatalf("repair index of the S3 repository's cache: %s", out)
	}
	if out := mustCLI(t, r("stats")...); !strings.Contains(out, "dedup") {
		t.Fatalf("stats: %s", out)
	}
	out := filepath.Join(t.TempDir(), "out")
	js := mustCLI(t, r("export", "--format", "qcow2", "--out", out, "--json", "imported@latest")...)
	var ex struct{ Disks []struct{ File string } }
	if err := json.Unmarshal([]byte(js), &ex); err != nil || len(ex.Disks) != 1 {
		t.Fatalf("export: %v %s", err, js)
	}
	if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, ex.Disks[0].File).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v %s", err, b)
	}
	restoreArgs := append(append([]string{"restore", "--target-cluster", "cluster-b", "--container", "default",
		"--name", "imp-s3", "--data-path", "rest", "--memory", "1GiB"}, withRepo(clusterArgs, repo)...), "imported@latest")
	if _, errs, code := runCLI(t, "", restoreArgs...); code != 0 {
		t.Fatalf("restore from S3: exit %d: %s", code, errs)
	}
	rvm, ok := s.VM("imp-s3")
	if !ok || len(rvm.Disks) != 1 {
		t.Fatalf("restored VM %+v", rvm)
	}
	a, _ := os.ReadFile(rvm.Disks[0])
	b, _ := os.ReadFile(img)
	if !bytes.Equal(a, b) {
		t.Fatal("the disk restored from S3 differs from the image")
	}

	t.Run("mount", func(t *testing.T) {
		testenv.FUSE(t)
		mountS3(t, repo, img)
	})

	// Every command removed its lock object when it ended.
	bucket, prefix, _ := backend.ParseS3URL(repo[1])
	be, err := backend.OpenS3(context.Background(), srv.Options(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if left, err := backend.ListAll(context.Background(), be, "locks/"); err != nil || len(left) != 0 {
		t.Fatalf("lock objects left after the commands ended: %v %v", left, err)
	}

	// The secret is nowhere: not in the debug log, not in the bucket.
	if strings.Contains(logs, srv.SecretKey) {
		t.Fatal("the S3 secret appears in the backup's debug log")
	}
	filepath.WalkDir(srv.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(srv.SecretKey)) {
				t.Errorf("the S3 secret is stored in %s", p)
			}
		}
		return nil
	})
}

// mountS3 mounts the s3:// repository with the ahvfs binary and compares
// the imported disk through the mount.
func mountS3(t *testing.T, repo []string, img string) {
	mp := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mp, 0o755)
	cmd := exec.Command(ahvfsBin, append([]string{"mount", mp}, repo...)...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.Contains(lines.Text(), "mounted") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("mount: first line %q; stderr %s", lines.Text(), stderr.String())
	}
	got, err := os.ReadFile(filepath.Join(mp, "imported", "latest", "disk-0.raw"))
	want, _ := os.ReadFile(img)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("disk-0.raw through the mount of the S3 repository: %d bytes, %v; want the image's %d", len(got), err, len(want))
	}
}

// TestS3LocksAndRepoCheck: repo check reports a bucket made with object
// lock; a dead process's lock object is a problem it names and unlock
// removes with a warning; another host's live gc lock makes an import
// exit 4 naming that host.
func TestS3LocksAndRepoCheck(t *testing.T) {
	repo, srv := s3Repo(t)
	r := func(args ...string) []string { return append(args, repo...) }
	mustCLI(t, r("init", "--s3-object-lock")...)
	var rep struct {
		OK    bool
		Store struct {
			ObjectLock bool `json:"object_lock"`
		}
		Problems []string
	}
	if err := json.Unmarshal([]byte(mustCLI(t, r("repo", "check", "--json")...)), &rep); err != nil || !rep.OK || !rep.Store.ObjectLock {
		t.Fatalf("repo check: %v %+v; want ok, object lock on", err, rep)
	}
	bucket, prefix, _ := backend.ParseS3URL(repo[1])
	be, err := backend.OpenS3(context.Background(), srv.Options(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	host, _ := os.Hostname()
	dead := exec.Command("true")
	dead.Run()
	lockBody := func(kind, host string, pid int) []byte {
		b, _ := json.Marshal(map[string]any{"v": 1, "kind": kind, "host": host, "pid": pid, "cmd": "ahvfs backup"})
		return b
	}
	if err := backend.PutBytes(context.Background(), be, "locks/shared-0123456789abcdef", lockBody("shared", host, dead.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCLI(t, "", r("repo", "check")...)
	if code != 1 || !strings.Contains(out, "stale shared lock of pid") || !strings.Contains(out, "ahvfs unlock") {
		t.Fatalf("repo check with a dead process's lock: exit %d: %s", code, out)
	}
	out, errs, code := runCLI(t, "", r("unlock")...)
	if code != 0 || !strings.Contains(errs, "warning: removed the shared lock of pid") || !strings.Contains(out, "removed 1 stale lock") {
		t.Fatalf("unlock: exit %d: %s %s", code, out, errs)
	}
	mustCLI(t, r("repo", "check")...)

	if err := backend.PutBytes(context.Background(), be, "locks/exclusive-0123456789abcdef", lockBody("exclusive", "gc-host.example", 77)); err != nil {
		t.Fatal(err)
	}
	img := enginetest.Ext4Image(t, 16<<20, 8)
	_, errs, code = runCLI(t, "", r("import", "--vm", "x", "--time", "2026-11-22T01:30:00Z", img)...)
	if code != exitLocked || !strings.Contains(errs, "gc is running") || !strings.Contains(errs, "gc-host.example") {
		t.Fatalf("import while another host's gc holds the lock: exit %d: %s", code, errs)
	}
	// unlock leaves a live lock, and says so.
	out, _, code = runCLI(t, "", r("unlock")...)
	if code != 0 || !strings.Contains(out, "removed 0 stale") || !strings.Contains(out, "live: exclusive lock of pid 77 on gc-host.example") {
		t.Fatalf("unlock with a live lock: exit %d: %s", code, out)
	}
}

// TestS3Faults: imports through a proxy that answers 503, throttles,
// hangs up before and after the store acted, and cuts replies short
// complete; what they stored reads back byte-exact and verifies. With
// every request failing, an import fails with a clear message, leaves no
// restore point, and a rerun without faults completes.
func TestS3Faults(t *testing.T) {
	repo, srv := s3Repo(t)
	proxy := s3test.StartFaultProxy(t, srv.Endpoint, s3test.Faults{Unavailable: 0.06, SlowDown: 0.02, DropBefore: 0.04, DropAfter: 0.05, CutBody: 0.08}, 1)
	direct := slices.Clone(repo)
	flaky := slices.Clone(repo)
	flaky[slices.Index(flaky, "--s3-endpoint")+1] = proxy.URL
	d := func(args ...string) []string { return append(args, direct...) }
	f := func(args ...string) []string { return append(args, flaky...) }
	mustCLI(t, d("init", "--chunk-size", "256KiB")...)

	imgs := map[string][]byte{}
	for i, vm := range []string{"vm1", "vm2", "vm3"} {
		data := make([]byte, 40<<20) // incompressible: packs of 32 MiB go as multipart uploads
		rand.NewChaCha8([32]byte{byte(i)}).Read(data)
		p := filepath.Join(t.TempDir(), vm+".raw")
		os.WriteFile(p, data, 0o600)
		imgs[vm] = data
		if _, errs, code := runCLI(t, "", f("import", "--vm", vm, "--time", "2026-11-22T01:30:00Z", p)...); code != 0 {
			t.Fatalf("import of %s through the faulty proxy: exit %d: %s", vm, code, errs)
		}
	}
	for vm, want := range imgs {
		if got := mustCLI(t, f("cat", vm+"@latest", "disk-0")...); got != string(want) {
			t.Fatalf("cat %s through the faulty proxy differs", vm)
		}
	}
	if out := mustCLI(t, f("verify", "--read-data")...); !strings.Contains(out, "no errors") {
		t.Fatalf("verify --read-data: %s", out)
	}
	for _, fault := range []string{"Unavailable", "DropBefore", "DropAfter", "CutBody"} {
		if proxy.Count(fault) == 0 {
			t.Errorf("the proxy never injected %s", fault)
		}
	}
	t.Logf("faults injected: 503 %d, SlowDown %d, dropped before %d, after %d, cut replies %d", proxy.Count("Unavailable"),
		proxy.Count("SlowDown"), proxy.Count("DropBefore"), proxy.Count("DropAfter"), proxy.Count("CutBody"))

	// Every request fails: a clear error, nothing half-visible, and the
	// rerun completes.
	dead := s3test.StartFaultProxy(t, srv.Endpoint, s3test.Faults{Unavailable: 1}, 2)
	deadRepo := slices.Clone(repo)
	deadRepo[slices.Index(deadRepo, "--s3-endpoint")+1] = dead.URL
	p := filepath.Join(t.TempDir(), "vm4.raw")
	os.WriteFile(p, imgs["vm1"][:8<<20], 0o600)
	_, errs, code := runCLI(t, "", append([]string{"import", "--vm", "vm4", "--time", "2026-11-22T01:30:00Z", p}, deadRepo...)...)
	if code != 1 || !strings.Contains(errs, "503") {
		t.Fatalf("import with a store that always answers 503: exit %d: %s", code, errs)
	}
	var list []listEntry
	if err := json.Unmarshal([]byte(mustCLI(t, d("list", "--json")...)), &list); err != nil || len(list) != 3 {
		t.Fatalf("list after the failed import: %v %+v", err, list)
	}
	mustCLI(t, d("import", "--vm", "vm4", "--time", "2026-11-22T01:30:00Z", p)...)
	if out := mustCLI(t, d("verify", "--read-data")...); !strings.Contains(out, "no errors") {
		t.Fatalf("verify --read-data after the rerun: %s", out)
	}
}

// TestS3TwoHosts: two ahvfs processes with their own caches import
// different VMs into one bucket at the same time; each then sees the
// other's point; a chunk one stored is not stored again by the other; a
// gc started while a writer runs fails with a clear lock message (exit 4)
// and loses nothing; verify --read-data passes and both points are exact.
func TestS3TwoHosts(t *testing.T) {
	repo, _ := s3Repo(t)
	hostB := slices.Clone(repo)
	hostB[len(hostB)-1] = filepath.Join(t.TempDir(), "cache-b")
	a := func(args ...string) []string { return append(args, repo...) }
	b := func(args ...string) []string { return append(args, hostB...) }
	mustCLI(t, a("init", "--chunk-size", "256KiB")...)
	imgA := enginetest.Ext4Image(t, 64<<20, 31)
	imgB := enginetest.Ext4Image(t, 64<<20, 32)

	// Both at once, as processes.
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for _, args := range [][]string{a("import", "--vm", "vm-a", "--time", "2026-11-22T01:30:00Z", imgA), b("import", "--vm", "vm-b", "--time", "2026-11-22T01:30:00Z", imgB)} {
		cmd := exec.Command(ahvfsBin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("concurrent import %d: %v: %s", i, err, outs[i])
		}
	}
	// Each host sees both points.
	for _, h := range []func(...string) []string{a, b} {
		var list []listEntry
		if err := json.Unmarshal([]byte(mustCLI(t, h("list", "--json")...)), &list); err != nil || len(list) != 2 {
			t.Fatalf("list: %v %+v", err, list)
		}
	}
	// Host B imports A's image again: nothing new but its pages.
	mustCLI(t, b("import", "--vm", "vm-a2", "--time", "2026-11-22T01:30:00Z", imgA)...)
	var list []listEntry
	if err := json.Unmarshal([]byte(mustCLI(t, b("list", "--json", "vm-a2")...)), &list); err != nil || len(list) != 1 {
		t.Fatalf("list vm-a2: %v %+v", err, list)
	}
	if n := list[0].Stats.NewRawBytes; n > 64<<10 {
		t.Fatalf("host B stored %d new bytes of a disk host A stored: want its manifest page only", n)
	}

	// gc on host A while host B writes: refused, with the holder named.
	slowLink := s3test.StartFaultProxy(t, repo[slices.Index(repo, "--s3-endpoint")+1], s3test.Faults{Delay: 300 * time.Millisecond}, 3)
	slowB := slices.Clone(hostB)
	slowB[slices.Index(slowB, "--s3-endpoint")+1] = slowLink.URL
	slow := exec.Command(ahvfsBin, append([]string{"import", "--vm", "vm-c", "--time", "2026-11-22T01:30:00Z", imgB}, slowB...)...)
	var slowOut bytes.Buffer
	slow.Stdout, slow.Stderr = &slowOut, &slowOut
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var errs string
	var code int
	for time.Now().Before(deadline) {
		_, errs, code = runCLI(t, "", a("gc")...)
		if code != 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != exitLocked || !strings.Contains(errs, "other process(es) have it open") || !strings.Contains(errs, "ahvfs import") {
		t.Fatalf("gc while host B imports: exit %d: %s", code, errs)
	}
	if err := slow.Wait(); err != nil {
		t.Fatalf("host B's import during the gc attempt: %v: %s", err, slowOut.String())
	}
	mustCLI(t, a("gc")...)
	if out := mustCLI(t, b("verify", "--read-data")...); !strings.Contains(out, "no errors") {
		t.Fatalf("verify --read-data: %s", out)
	}
	for vm, img := range map[string]string{"vm-a": imgA, "vm-b": imgB, "vm-c": imgB} {
		want, _ := os.ReadFile(img)
		if got := mustCLI(t, a("cat", vm+"@latest", "disk-0")...); got != string(want) {
			t.Fatalf("cat %s differs", vm)
		}
	}
}

// TestS3CACert: an https endpoint is verified: init fails with a
// certificate error without --s3-ca-cert, and works with it.
func TestS3CACert(t *testing.T) {
	srv := s3test.StartVersitygw(t, s3test.Options{TLS: true})
	creds := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(creds, []byte("AWS_ACCESS_KEY_ID="+srv.AccessKey+"\nAWS_SECRET_ACCESS_KEY="+srv.SecretKey+"\n"), 0o600)
	repo := []string{"--repo", s3test.URL(s3test.NewBucketName(), "r"), "--s3-endpoint", srv.Endpoint, "--s3-credentials-file", creds,
		"--state-dir", t.TempDir(), "--cache-dir", t.TempDir()}
	_, errs, code := runCLI(t, "", append([]string{"init"}, repo...)...)
	if code == 0 || !strings.Contains(errs, "certificate") {
		t.Fatalf("init against an https store without its CA: exit %d: %s", code, errs)
	}
	mustCLI(t, append([]string{"init", "--s3-ca-cert", srv.CAFile}, repo...)...)
	mustCLI(t, append([]string{"repo", "check", "--s3-ca-cert", srv.CAFile}, repo...)...)
}

// TestS3ServeGC: ahvfs serve of an s3:// repository runs a client's gc
// with the repository's exclusive lock (reclaiming what a forget left,
// the other point still whole) and a client's unlock.
func TestS3ServeGC(t *testing.T) {
	repo, _ := s3Repo(t)
	mustCLI(t, append([]string{"init"}, repo...)...)
	img := enginetest.DataDisk(t, 4<<20, 12)
	other := enginetest.DataDisk(t, 4<<20, 13)
	mustCLI(t, append([]string{"import", "--vm", "a", "--time", "2026-11-01T00:00:00Z", img}, repo...)...)
	mustCLI(t, append([]string{"import", "--vm", "b", "--time", "2026-11-01T00:00:00Z", other}, repo...)...)
	mustCLI(t, append([]string{"forget", "b@2026-11-01T00:00:00Z"}, repo...)...)
	ca := testtls.NewCA(t, t.TempDir(), "sites")
	srv := startServe(t, repo[1], "", ca, append(slices.Clone(repo[2:]), "--gc-quiet", "1ms")...)
	cert, key := ca.Client(t, "prod-backup")
	client := []string{"--repo", srv.url, "--tls-cert", cert, "--tls-key", key, "--ca-cert", ca.CertFile}
	out := mustCLI(t, append([]string{"gc", "--json", "--reader-wait", "0"}, client...)...)
	var rep struct {
		Reclaimed int64 `json:"reclaimed_bytes"`
		Points    int   `json:"restore_points"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Reclaimed <= 0 || rep.Points != 1 {
		t.Fatalf("gc through serve of an s3:// repository: %v %s", err, out)
	}
	if out := mustCLI(t, append([]string{"unlock"}, client...)...); !strings.Contains(out, "removed 0 stale lock(s)") {
		t.Fatalf("unlock through serve: %s", out)
	}
	got := mustCLI(t, append([]string{"cat", "a@2026-11-01T00:00:00Z", "disk-0"}, repo...)...)
	if want, _ := os.ReadFile(img); got != string(want) {
		t.Fatal("the point gc kept does not read back")
	}
}
