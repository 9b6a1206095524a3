package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestRestoreXenCLI: `ahvfs restore --target xapi://HOST` restores an
// XCP-ng VM's restore point (made by `ahvfs backup --source`) onto the
// pool under a new name, on a named SR and a mapped network, powered on:
// the new VM's disk files equal the live disks, the JSON summary says
// what it did, the text one warns of the MAC in use. AHV-only flags,
// other schemes, --sr without --target are usage errors; a name clash
// fails before anything exists. --overwrite replaces the original.
func TestRestoreXenCLI(t *testing.T) {
	clearSiteEnv(t)
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", Firmware: "uefi",
		Files: []string{enginetest.Ext4Image(t, 32<<20, 3), enginetest.DataDisk(t, 16<<20, 4)}}}})
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	pool := []string{"--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
	mustCLI(t, append([]string{"backup", "--repo", repo, "--source", "xapi://" + s.Addr(), "--vm", "xen01"}, pool...)...)

	args := append([]string{"restore", "--repo", repo, "--target", "xapi://" + s.Addr()}, pool...)
	js := mustCLI(t, append(args, "--name", "xen01-cli", "--sr", "Local storage", "--network-map",
		"Pool-wide network associated with eth0=vlan20", "--power-on", "--json", "xen01@latest")...)
	var res struct {
		VMUUID    string   `json:"vm_uuid"`
		Name      string   `json:"name"`
		DataPath  string   `json:"data_path"`
		NICs      []string `json:"nics"`
		PoweredOn bool     `json:"powered_on"`
		Warnings  []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Name != "xen01-cli" || res.VMUUID == "" || !res.PoweredOn ||
		res.DataPath != "import_raw_vdi" || len(res.NICs) != 1 || res.NICs[0] != "vlan20" {
		t.Fatalf("%v: %s", err, js)
	}
	vi, err := s.VM("xen01-cli")
	if err != nil || vi.UUID != res.VMUUID || vi.PowerState != "Running" || len(vi.Disks) != 2 {
		t.Fatalf("VM %+v %v", vi, err)
	}
	for n, got := range vi.Disks {
		live, err := s.DiskFile("xen01", n)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(got)
		b, _ := os.ReadFile(live)
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("disk %d of the restored VM differs from the live disk", n)
		}
	}

	// Text output; the original still has the recorded MAC.
	out, errs, code := runCLI(t, "", append(args, "--name", "xen01-txt", "xen01@latest")...)
	if code != 0 || !strings.Contains(out, "restored xen01@") || !strings.Contains(out, "as VM xen01-txt") ||
		!strings.Contains(errs, "warning: NIC 0: MAC") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}

	before := s.Inventory()
	for _, bad := range [][]string{
		append(args, "--container", "default"),
		append(args, "--data-path", "iscsi"),
		append(args, "--target-cluster", "cluster-a"),
		append(args, "--prism", "127.0.0.1:9440"),
		{"restore", "--repo", repo, "--target", "prism://" + s.Addr(), "--password-file", s.PasswordFile()},
		{"restore", "--repo", repo, "--target", "https://" + s.Addr(), "--password-file", s.PasswordFile()},
		{"restore", "--repo", repo, "--sr", "Local storage", "--password-file", s.PasswordFile()},
	} {
		if _, errs, code := runCLI(t, "", append(bad, "xen01@latest")...); code != exitUsage {
			t.Errorf("%v: exit %d %s", bad, code, errs)
		}
	}
	_, errs, code = runCLI(t, "", append(args, "--name", "xen01-cli", "xen01@latest")...)
	if code != exitError || !strings.Contains(errs, "already exists") {
		t.Errorf("name clash: exit %d %s", code, errs)
	}
	xapisimtest.RequireUnchanged(t, before, s.Inventory())

	// --overwrite replaces the original, xen01, under its name.
	orig, err := s.VM("xen01")
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code = runCLI(t, "", append(args, "--overwrite", "xen01@latest")...)
	if code != 0 || !strings.Contains(out, "replaced the original VM "+orig.UUID) {
		t.Errorf("overwrite: exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	if now, err := s.VM("xen01"); err != nil || now.UUID == orig.UUID {
		t.Errorf("after the overwrite: %+v %v (the original was %s)", now, err, orig.UUID)
	}
	// The original's reference snapshot went with it.
	for _, v := range s.Inventory().VMs {
		if v.IsSnapshot {
			t.Errorf("snapshot %s (of %s) left on the pool", v.Name, v.SnapshotOf)
		}
	}
}
