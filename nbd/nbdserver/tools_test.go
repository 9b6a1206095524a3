package nbdserver_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
)

// run runs a program and returns its standard output.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t), name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestQemuImg: qemu-img copies exports byte for byte, in plain TCP and
// over TLS with an XCP-ng style export name.
func TestQemuImg(t *testing.T) {
	testenv.Commands(t, "qemu-img")
	cs := newCerts(t, "nbdserver")
	// A whole number of sectors: qemu's client (7.2) without structured
	// replies mis-frames the reply to a read of an unaligned tail.
	data := randomData(3<<20+512, 11)
	cat := newCatalog(memExport("disk-0", data), memExport(xenName, data))
	_, plain := serve(t, nbdserver.Options{Lookup: cat.lookup})
	_, secure := serve(t, nbdserver.Options{Lookup: cat.lookup, TLS: cs.server, RequireTLS: true})
	dir := t.TempDir()

	out := filepath.Join(dir, "plain.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", "nbd://"+plain+"/disk-0", out)
	compareFile(t, out, data)

	host, port := splitHostPort(t, secure)
	out = filepath.Join(dir, "tls.raw")
	// qemu's option syntax doubles commas; the name has none.
	run(t, "qemu-img", "convert", "-O", "raw",
		"--object", "tls-creds-x509,id=tls0,endpoint=client,dir="+cs.dir,
		"--image-opts", "driver=raw,file.driver=nbd,file.host="+host+",file.port="+port+",file.export="+xenName+",file.tls-creds=tls0",
		out)
	compareFile(t, out, data)
	if !slices.Contains(cat.names(), xenName) {
		t.Errorf("Lookup never got %q: %q", xenName, cat.names())
	}
}

// TestNbdinfo: libnbd's nbdinfo sees a read-only, multi-conn export with
// its description, over TLS, and lists the exports.
func TestNbdinfo(t *testing.T) {
	testenv.Commands(t, "nbdinfo")
	cs := newCerts(t, "nbdserver")
	e := memExport(xenName, randomData(12345, 12))
	e.Description = "disk 0 of vm-7"
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog(e).lookup, TLS: cs.server, RequireTLS: true,
		List: func(context.Context) []string { return []string{xenName} }})
	// The export name is the URI's path without its first slash.
	u := url.URL{Scheme: "nbds", Host: addr, Path: "/" + xenName, RawQuery: "tls-certificates=" + url.QueryEscape(cs.dir)}
	var info struct {
		TLS     bool `json:"TLS"`
		Exports []struct {
			Name         string `json:"export-name"`
			Description  string `json:"description"`
			Size         int64  `json:"export-size"`
			ReadOnly     bool   `json:"is_read_only"`
			CanMultiConn bool   `json:"can_multi_conn"`
			BlockMax     int64  `json:"block_size_maximum"`
		} `json:"exports"`
	}
	b := run(t, "nbdinfo", "--json", u.String())
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("nbdinfo --json: %v: %s", err, b)
	}
	if len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %s", b)
	}
	x := info.Exports[0]
	if !info.TLS || x.Name != xenName || x.Description != e.Description || x.Size != e.Size || !x.ReadOnly || !x.CanMultiConn || x.BlockMax != 32<<20 {
		t.Fatalf("nbdinfo: %s", b)
	}
	u.Path = "/"
	b = run(t, "nbdinfo", "--list", "--json", u.String())
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("nbdinfo --list: %v: %s", err, b)
	}
	if len(info.Exports) != 1 || info.Exports[0].Name != xenName {
		t.Fatalf("nbdinfo --list: %s", b)
	}
}

func compareFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the export's %d", path, len(got), len(want))
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if _, err := strconv.Atoi(addr[i+1:]); i < 0 || err != nil {
		t.Fatalf("address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
