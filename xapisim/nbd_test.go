package xapisim_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/nbd"
)

type nbdInfo struct {
	Address    string  `json:"address"`
	Port       float64 `json:"port"`
	Cert       string  `json:"cert"`
	Subject    string  `json:"subject"`
	ExportName string  `json:"exportname"`
}

func (c *client) nbdInfo(vdi string) nbdInfo {
	c.t.Helper()
	var infos []nbdInfo
	c.mustInto(&infos, "VDI.get_nbd_info", vdi)
	if len(infos) != 1 {
		c.t.Fatalf("get_nbd_info: %v", infos)
	}
	return infos[0]
}

// TestNBD: get_nbd_info names an export that ahvfs's NBD client reads
// byte-exact over TLS, trusting the certificate it returns.
func TestNBD(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	want := readFile(t, mustDisk(t, sim, "web", 0))
	snap := c.snapDisks(c.async("VM.snapshot", vm, "s"))
	if err := sim.Write("web", 0, 0, bytes.Repeat([]byte{0xee}, 4096)); err != nil {
		t.Fatal(err)
	}
	info := c.nbdInfo(snap[0])
	var uuid string
	c.mustInto(&uuid, "VDI.get_uuid", snap[0])
	if info.Address != "127.0.0.1" || info.Subject != "xapisim.local" || info.ExportName != "/"+uuid+"?session_id="+c.session ||
		!strings.HasPrefix(info.Cert, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("nbd info %+v", info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := net.JoinHostPort(info.Address, strconv.Itoa(int(info.Port)))
	nc, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: info.ExportName, CAPEM: []byte(info.Cert), ServerName: info.Subject})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Size() != int64(len(want)) {
		t.Fatalf("export size %d, want %d", nc.Size(), len(want))
	}
	got := make([]byte, len(want))
	if _, err := nc.ReadAtContext(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("NBD read differs from the disk at snapshot time")
	}

	// Without TLS, with another name, with a bad session: refused.
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: info.ExportName}); !errors.Is(err, nbd.ErrTLSRequired) {
		t.Errorf("plain dial: %v", err)
	}
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: info.ExportName, CAPEM: []byte(info.Cert), ServerName: "wrong.name"}); err == nil {
		t.Error("a wrong server name was accepted")
	}
	bad := "/" + uuid + "?session_id=OpaqueRef:forged"
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: bad, CAPEM: []byte(info.Cert), ServerName: info.Subject}); err == nil {
		t.Error("a forged session was accepted")
	}
	sim.FailNext("nbd", "VDI_IN_USE")
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: info.ExportName, CAPEM: []byte(info.Cert), ServerName: info.Subject}); err == nil {
		t.Error("an injected NBD fault was not seen")
	}
}

// TestNBDTools: libnbd's nbdinfo and nbdcopy read the export too (the CA
// in a tls-certificates directory, the host's IP SAN checked).
func TestNBDTools(t *testing.T) {
	testenv.Commands(t, "nbdinfo", "nbdcopy")
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	want := readFile(t, mustDisk(t, sim, "web", 1))
	snap := c.snapDisks(c.async("VM.snapshot", vm, "s"))
	info := c.nbdInfo(snap[1])
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca-cert.pem"), readFile(t, sim.CAFile()), 0o644); err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "nbds", Host: net.JoinHostPort(info.Address, strconv.Itoa(int(info.Port))),
		Path: "/" + info.ExportName, RawQuery: "tls-certificates=" + certs}
	out, err := exec.Command("nbdinfo", "--size", u.String()).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(len(want)) {
		t.Fatalf("nbdinfo --size %s: %v: %s", u.String(), err, out)
	}
	dst := filepath.Join(t.TempDir(), "copy.raw")
	if out, err := exec.Command("nbdcopy", u.String(), dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v: %s", err, out)
	}
	if !bytes.Equal(readFile(t, dst), want) {
		t.Fatal("nbdcopy's copy differs from the disk")
	}
}
