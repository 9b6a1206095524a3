package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nbd/nbdtest"
)

// TestNBDCat: ahvfs nbd cat writes a qemu-nbd export's bytes, whole or a
// range, byte-exact; a range past the end and a bad URI are usage errors;
// an unknown export is an error naming it.
func TestNBDCat(t *testing.T) {
	img := nbdtest.NewImage(t, t.TempDir(), 4<<20, 11)
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{})
	uri := "nbd://" + srv.Addr + "/" + srv.Export
	out, errs, code := runCLI(t, "", "nbd", "cat", uri)
	if code != 0 || !bytes.Equal([]byte(out), img.Data) {
		t.Fatalf("nbd cat: exit %d, %d bytes (want %d): %s", code, len(out), len(img.Data), errs)
	}
	out, errs, code = runCLI(t, "", "nbd", "cat", "--offset", "1000001", "--length", "777777", uri)
	if code != 0 || !bytes.Equal([]byte(out), img.Data[1000001:1000001+777777]) {
		t.Fatalf("nbd cat of a range: exit %d, %d bytes: %s", code, len(out), errs)
	}
	if _, errs, code := runCLI(t, "", "nbd", "cat", "--offset", "4MiB", "--length", "1", uri); code != exitUsage || !strings.Contains(errs, "outside the export") {
		t.Fatalf("a range past the end: exit %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "", "nbd", "cat", "http://"+srv.Addr+"/x"); code != exitUsage {
		t.Fatalf("an http:// URI: exit %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "", "nbd", "cat", "nbd://"+srv.Addr+"/nothing"); code == 0 || !strings.Contains(errs, "nothing") {
		t.Fatalf("an unknown export: exit %d %s", code, errs)
	}
}
