package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// runCLIWithin is runCLI that fails the test, instead of hanging it, when
// the command does not return within d.
func runCLIWithin(t *testing.T, d time.Duration, args ...string) (string, string, int) {
	t.Helper()
	type result struct {
		out, errs string
		code      int
	}
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), strings.NewReader(""), &out, &errb, append([]string{"ahvfs"}, args...))
		done <- result{out.String(), errb.String(), code}
	}()
	select {
	case r := <-done:
		return r.out, r.errs, r.code
	case <-time.After(d):
		t.Fatalf("ahvfs %s did not return within %s", strings.Join(args, " "), d)
		return "", "", 0
	}
}

// TestBadInput: every bad input gets a clear one-line error and the exit
// code of its class; nothing panics or hangs.
func TestBadInput(t *testing.T) {
	t.Setenv("AHVFS_REPO_PASSWORD_FILE", "")
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	img := filepath.Join(tmp, "img.raw")
	os.WriteFile(img, bytes.Repeat([]byte{7}, 1<<20), 0o644)
	mustCLI(t, "import", "--repo", repo, "--vm", "vm", "--time", "2026-11-22T01:30:00Z", img)

	dir := filepath.Join(tmp, "dir")
	os.Mkdir(dir, 0o755)
	dirLink := filepath.Join(tmp, "dirlink")
	os.Symlink(dir, dirLink)
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	imp := func(extra ...string) []string {
		return append([]string{"import", "--repo", repo}, extra...)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"directory", imp("--vm", "a", dir), 2, "is a directory"},
		{"symlink to a directory", imp("--vm", "a", dirLink), 2, "is a directory"},
		{"FIFO", imp("--vm", "a", fifo), 2, "is a named pipe (FIFO)"},
		{"socket", imp("--vm", "a", sock), 2, "is a socket"},
		{"character device", imp("--vm", "a", "/dev/null"), 2, "is a character device"},
		{"good then bad image", imp("--vm", "a", img, dir), 2, "is a directory"},
		{"missing image", imp("--vm", "a", filepath.Join(tmp, "nope")), 1, "no such file"},
		{"empty VM name", imp("--vm", "", img), 2, "empty"},
		{"VM name with a newline", imp("--vm", "a\nb", img), 2, "control character U+000A"},
		{"VM name with a NUL", imp("--vm", "a\x00b", img), 2, "control character U+0000"},
		{"VM name ..", imp("--vm", "..", img), 2, `".." are not VM names`},
		{"VM name of 5000 characters", imp("--vm", strings.Repeat("x", 5000), img), 2, "5000 characters, at most 256"},
		{"VM name not UTF-8", imp("--vm", "a\xffb", img), 2, "UTF-8"},
		{"time year 1", imp("--vm", "a", "--time", "0001-01-01T00:00:00Z", img), 2, "between 1970-01-01T00:00:00Z and 2261-12-31T23:59:59Z"},
		{"time year 9999", imp("--vm", "a", "--time", "9999-12-31T23:59:59Z", img), 2, "between 1970"},
		{"time before 1970", imp("--vm", "a", "--time", "1969-12-31T23:59:59Z", img), 2, "between 1970"},
		{"time not RFC 3339", imp("--vm", "a", "--time", "2026-11-22 01:30", img), 2, "want RFC 3339"},
		{"cat time out of range", []string{"cat", "--repo", repo, "vm@9999-12-31T23:59:59Z", "disk-0"}, 2, "between 1970"},
		{"cat time not a time", []string{"cat", "--repo", repo, "vm@noon", "disk-0"}, 2, "want RFC 3339"},
		{"cat bad VM name", []string{"cat", "--repo", repo, "a\nb@latest", "disk-0"}, 2, "control character"},
		{"cat empty VM", []string{"cat", "--repo", repo, "@latest", "disk-0"}, 2, "want VM@TIME"},
		{"list bad VM name", []string{"list", "--repo", repo, "a\tb"}, 2, "control character U+0009"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := runCLIWithin(t, time.Minute, c.args...)
			if code != c.code || !strings.Contains(errs, c.msg) || strings.Count(errs, "\n") != 1 || len(errs) > 300 {
				t.Fatalf("exit %d, stderr %q; want exit %d and one short line with %q\nstdout: %s", code, errs, c.code, c.msg, out)
			}
		})
	}
	// Nothing of the above left a restore point.
	var list []listEntry
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--repo", repo, "--json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("list: %v %+v", err, list)
	}
}

// TestImportNamesRoundTrip imports under names that stress VM@TIME and the
// key layout, then reads each back by NAME@TIME and NAME@latest.
func TestImportNamesRoundTrip(t *testing.T) {
	t.Setenv("AHVFS_REPO_PASSWORD_FILE", "")
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	names := []string{"a/b", "../x", "x@y", "x", "x@", "web 01", "日本語", strings.Repeat("é", 256), "latest"}
	t0 := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	want := map[string][]byte{}
	for i, name := range names {
		img := filepath.Join(tmp, "img.raw")
		data := bytes.Repeat([]byte{byte(i + 1)}, 200<<10)
		os.WriteFile(img, data, 0o644)
		want[name] = data
		at := engine.FormatTime(t0.Add(time.Duration(i) * time.Hour))
		mustCLI(t, "import", "--repo", repo, "--vm", name, "--time", at, img)
	}
	var list []listEntry
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--repo", repo, "--json")), &list); err != nil || len(list) != len(names) {
		t.Fatalf("list: %v, %d entries", err, len(list))
	}
	for i, name := range names {
		at := engine.FormatTime(t0.Add(time.Duration(i) * time.Hour))
		if !containsVM(list, name) {
			t.Errorf("list lacks %q", name)
		}
		for _, ref := range []string{name + "@" + at, name + "@latest"} {
			if got := mustCLI(t, "cat", "--repo", repo, ref, "disk-0"); got != string(want[name]) {
				t.Errorf("cat %q: wrong data", ref)
			}
		}
	}
}

func containsVM(list []listEntry, vm string) bool {
	for _, e := range list {
		if e.VM == vm {
			return true
		}
	}
	return false
}

// TestImportBlockDevice imports a loop device: its size comes from the
// device, and the restore point reads back byte for byte.
func TestImportBlockDevice(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "losetup")
	tmp := t.TempDir()
	backing := filepath.Join(tmp, "backing.raw")
	data := make([]byte, 3<<20)
	rnd := rand.NewChaCha8([32]byte{1})
	rnd.Read(data)
	os.WriteFile(backing, data, 0o644)
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	testenv.RequireOrSkip(t, err == nil, "needs a free loop device: "+strings.TrimSpace(string(out)))
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	repo := filepath.Join(tmp, "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	res := mustCLI(t, "import", "--repo", repo, "--vm", "dev", "--json", dev)
	var r importResult
	if err := json.Unmarshal([]byte(res), &r); err != nil || len(r.Disks) != 1 || r.Disks[0].Size != int64(len(data)) {
		t.Fatalf("import of %s: %v %s", dev, err, res)
	}
	if got := mustCLI(t, "cat", "--repo", repo, "dev@latest", "disk-0"); got != string(data) {
		t.Fatal("the block device read back differs")
	}
}
