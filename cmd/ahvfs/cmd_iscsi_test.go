package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/iscsi/iscsitest"
)

// runISCSI runs `ahvfs iscsi ...` in-process.
func runISCSI(t *testing.T, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := newApp(bytes.NewReader(stdin), &out, &errb).RunContext(context.Background(), append([]string{"ahvfs", "iscsi"}, args...))
	code = exitCode(err, &errb)
	return out.Bytes(), errb.Bytes(), code
}

func TestISCSICommands(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "tgtd", "tgtadm")
	const iqn = "iqn.2024-01.io.ahvfs:cli"
	const size = 20<<20 + 4096
	d := iscsitest.StartTgtd(t, "127.0.0.1")
	d.AddTarget(1, iqn)
	path := iscsitest.LUNFile(t, size, 42)
	d.AddLUN(1, 1, path)
	d.RequireCHAP(1, "cliuser", "cli-secret-0123")
	d.SetParam(1, "DataDigest", "CRC32C,None")
	base := "iscsi://cliuser%cli-secret-0123@" + d.Addr()
	lunURL := base + "/" + iqn + "/1"

	// ls --json: discovery, then LUN 0 (controller) and LUN 1 (disk).
	out, errs, code := runISCSI(t, nil, "ls", "--json", base)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errs)
	}
	var ls struct {
		Targets []iscsiTargetInfo `json:"targets"`
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatalf("ls --json output %q: %v", out, err)
	}
	if len(ls.Targets) != 1 || ls.Targets[0].Name != iqn || len(ls.Targets[0].LUNs) != 2 {
		t.Fatalf("ls: %+v", ls)
	}
	if l := ls.Targets[0].LUNs[1]; l.LUN != 1 || l.Type != "disk" || l.Size != size || l.BlockSize != 512 || l.Serial == "" {
		t.Fatalf("ls LUN 1: %+v", l)
	}
	// Plain text mentions the target and the size.
	out, _, code = runISCSI(t, nil, "ls", base)
	if code != 0 || !strings.Contains(string(out), iqn) || !strings.Contains(string(out), fmt.Sprintf("%d bytes", size)) {
		t.Fatalf("ls text (exit %d):\n%s", code, out)
	}

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// cat of a range, unaligned, longer than one internal chunk.
	out, errs, code = runISCSI(t, nil, "cat", "--offset", "1001", "--length", "9000000", lunURL)
	if code != 0 || !bytes.Equal(out, file[1001:1001+9000000]) {
		t.Fatalf("cat range: exit %d, %d bytes, equal=%v: %s", code, len(out), bytes.Equal(out, file[1001:1001+9000000]), errs)
	}
	// Humanised sizes: the issue's `iscsi cat --length 1MiB`.
	out, errs, code = runISCSI(t, nil, "cat", "--offset", "1KiB", "--length", "1MiB", lunURL)
	if code != 0 || !bytes.Equal(out, file[1024:1024+1<<20]) {
		t.Fatalf("cat --offset 1KiB --length 1MiB: exit %d, %d bytes: %s", code, len(out), errs)
	}
	// cat of the whole LUN, with the secret from the environment.
	t.Setenv("AHVFS_ISCSI_SECRET", "cli-secret-0123")
	out, errs, code = runISCSI(t, nil, "cat", "--data-digest", "iscsi://cliuser@"+d.Addr()+"/"+iqn+"/1")
	if code != 0 || !bytes.Equal(out, file) {
		t.Fatalf("cat all: exit %d, %d bytes: %s", code, len(out), errs)
	}

	// write from stdin at an unaligned offset, then cat it back.
	data := bytes.Repeat([]byte("ahvfs iscsi write test "), 500000) // 11.5 MB
	if _, errs, code = runISCSI(t, data, "write", "--offset", "777", lunURL); code != 0 {
		t.Fatalf("write: exit %d: %s", code, errs)
	}
	file, _ = os.ReadFile(path)
	if !bytes.Equal(file[777:777+len(data)], data) {
		t.Fatal("write: the backing file does not hold the data")
	}
	out, _, _ = runISCSI(t, nil, "cat", "--offset", "777", "--length", "11500000", lunURL)
	if !bytes.Equal(out, data) {
		t.Fatal("cat after write differs")
	}

	// Errors: past the end, bad URL, wrong secret.
	if _, errs, code = runISCSI(t, nil, "cat", "--offset", "20975000", "--length", "1000", lunURL); code != 2 {
		t.Errorf("cat past the end: exit %d, want 2: %s", code, errs)
	}
	if _, errs, code = runISCSI(t, nil, "write", "--offset", "20975617", lunURL); code == 0 {
		t.Errorf("write without data past the end accepted: %s", errs) // empty stdin still needs a valid offset
	}
	if _, errs, code = runISCSI(t, nil, "cat", "iscsi://"+d.Addr()+"/"+iqn); code != 2 {
		t.Errorf("cat without a LUN: exit %d, want 2: %s", code, errs)
	}
	if _, errs, code = runISCSI(t, nil, "cat", "iscsi://cliuser%wrong-secret-99@"+d.Addr()+"/"+iqn+"/1"); code != exitCluster || !bytes.Contains(errs, []byte("authentication")) {
		t.Errorf("cat with a wrong secret: exit %d: %s", code, errs)
	}
}
