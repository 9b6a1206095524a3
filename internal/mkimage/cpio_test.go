package mkimage

import (
	"bytes"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestCPIO lists an archive with cpio(1): every entry, with its type.
func TestCPIO(t *testing.T) {
	testenv.Commands(t, "cpio")
	var b bytes.Buffer
	err := writeCPIO(&b, []cpioEntry{
		{Name: "bin", Mode: fs.ModeDir | 0o755},
		{Name: "bin/busybox", Mode: 0o755, Data: []byte("binary!")},
		{Name: "bin/sh", Mode: fs.ModeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "dev/console", Mode: fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = &b
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v: %s", err, out)
	}
	for _, want := range []string{"drwxr-xr-x", "-rwxr-xr-x", "bin/busybox", "lrwxrwxrwx", "bin/sh -> busybox", "crw-------", "5,", "drwxrwxrwt"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio -itv lacks %q:\n%s", want, out)
		}
	}
}

func TestVersionLess(t *testing.T) {
	if !versionLess("/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-10-amd64") || versionLess("/boot/vmlinuz-6.1.0-10-amd64", "/boot/vmlinuz-6.1.0-9-amd64") {
		t.Error("6.1.0-10 must sort after 6.1.0-9")
	}
}
