package simkit_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// TestContract: the lines scripts read, values aligned, then the VM lines.
func TestContract(t *testing.T) {
	var b bytes.Buffer
	simkit.Contract{URL: "https://127.0.0.1:9440", CAFile: "/st/ca.crt", User: "admin",
		PasswordFile: "/st/admin.password", StateDir: "/st"}.Print(&b)
	simkit.PrintField(&b, "iSCSI portal", "127.0.0.1:3260 (redirects to 127.0.0.2:3260)")
	simkit.PrintVM(&b, "web", "0b6f-uuid", []string{"/st/vms/web/disk-0.raw", "/st/vms/web/disk-1.raw"})
	simkit.PrintVM(&b, "a-rather-long-name", "u2", nil)
	want := "" +
		"URL:           https://127.0.0.1:9440\n" +
		"CA cert:       /st/ca.crt\n" +
		"User:          admin\n" +
		"Password file: /st/admin.password\n" +
		"State dir:     /st\n" +
		"iSCSI portal:  127.0.0.1:3260 (redirects to 127.0.0.2:3260)\n" +
		"VM web          0b6f-uuid  /st/vms/web/disk-0.raw /st/vms/web/disk-1.raw\n" +
		"VM a-rather-long-name u2  \n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestVMFlag: --vm repeats; SplitVM reads each value.
func TestVMFlag(t *testing.T) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	var vms simkit.VMFlag
	fs.Var(&vms, "vm", "")
	if err := fs.Parse([]string{"--vm", "web:a.raw,b.raw", "--vm", "db:c.raw", "--vm", "bad"}); err != nil {
		t.Fatal(err)
	}
	if want := (simkit.VMFlag{"web:a.raw,b.raw", "db:c.raw", "bad"}); !reflect.DeepEqual(vms, want) || vms.String() != "web:a.raw,b.raw db:c.raw bad" {
		t.Fatalf("flag %q", vms)
	}
	for _, tc := range []struct {
		in    string
		name  string
		files []string
	}{
		{"web:a.raw,b.raw", "web", []string{"a.raw", "b.raw"}},
		{"db:/x/c.raw", "db", []string{"/x/c.raw"}},
		{"w:a:b", "w", []string{"a:b"}},
	} {
		name, files, err := simkit.SplitVM(tc.in)
		if err != nil || name != tc.name || !reflect.DeepEqual(files, tc.files) {
			t.Errorf("SplitVM(%q) = %q, %q, %v", tc.in, name, files, err)
		}
	}
	for _, in := range []string{"bad", ":a.raw", "web:", ""} {
		if _, _, err := simkit.SplitVM(in); err == nil || !strings.HasSuffix(err.Error(), ": want NAME:FILE[,FILE...]") {
			t.Errorf("SplitVM(%q): %v", in, err)
		}
	}
}

func TestLogf(t *testing.T) {
	var b bytes.Buffer
	logf := simkit.Logf(&b, "xapisim")
	logf("serve: %v", "closed")
	logf("100%% done")
	if want := "xapisim: serve: closed\nxapisim: 100% done\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// TestStateDirOrTemp: a given directory is used as it is; none makes a new
// temporary one named after the simulator.
func TestStateDirOrTemp(t *testing.T) {
	if dir, err := simkit.StateDirOrTemp("/some/dir", "prismsim"); err != nil || dir != "/some/dir" {
		t.Errorf("given: %q, %v", dir, err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := simkit.StateDirOrTemp("", "prismsim")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() || filepath.Dir(dir) != os.Getenv("TMPDIR") ||
		!strings.HasPrefix(filepath.Base(dir), "prismsim-") {
		t.Errorf("temporary: %q, %v", dir, err)
	}
}
