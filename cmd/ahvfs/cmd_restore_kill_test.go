package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestRestoreKill kills `ahvfs restore` with SIGKILL at several points —
// once the temporary volume group (or image) exists, while disks are
// written, once the new VM exists, and during an overwrite once the
// original is powered off — then runs `ahvfs cleanup`. The simulated
// cluster must then be exactly as it was before the restore (checked
// through the simulator's inventory), every deletion cleanup reports must
// be one that happened, and a restore afterwards must succeed.
func TestRestoreKill(t *testing.T) {
	clearSiteEnv(t)
	// Tasks of 100ms: each kill point lasts at least that long, however
	// loaded the machine.
	s := simtest.Start(t, simtest.Options{ISCSI: true, Options: prismsim.Options{TaskDelay: 100 * time.Millisecond}})
	ctx := context.Background()
	if _, err := s.AddVM(ctx, "web01", []string{enginetest.DataDisk(t, 48<<20, 1), enginetest.DataDisk(t, 16<<20, 2)},
		prismsim.VMOptions{PowerState: "ON"}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	_, port, _ := net.SplitHostPort(s.ISCSIPortal())
	cluster := []string{"--repo", repo, "--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
	iscsi := []string{"--iscsi-port", port, "--initiator-iqn", "iqn.2026-11.io.ahvfs:kill-test"}
	mustCLI(t, append(append([]string{"backup", "--vm", "web01"}, cluster...), iscsi...)...)
	// The reference snapshot the backup keeps is part of "before".

	vgName := func(o prismsim.Objects) (prismsim.VolumeGroupObject, bool) {
		for _, g := range o.VolumeGroups {
			if strings.HasPrefix(g.Name, "ahvfs-vg-restore-") {
				return g, true
			}
		}
		return prismsim.VolumeGroupObject{}, false
	}
	vmNamed := func(o prismsim.Objects, name string) int {
		n := 0
		for _, v := range o.VMs {
			if v.Name == name {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		extra []string
		ready func(prismsim.Objects) bool
	}{
		{"volume group exists", []string{"--name", "web01-r", "--data-path", "iscsi"}, func(o prismsim.Objects) bool {
			_, ok := vgName(o)
			return ok
		}},
		{"disks being written", []string{"--name", "web01-r", "--data-path", "iscsi"}, func(o prismsim.Objects) bool {
			g, ok := vgName(o)
			return ok && len(g.Clients) > 0 && written(s, g.Name) >= 4<<20
		}},
		{"VM exists", []string{"--name", "web01-r", "--data-path", "iscsi"}, func(o prismsim.Objects) bool {
			return vmNamed(o, "web01-r") > 0
		}},
		{"image being uploaded", []string{"--name", "web01-r", "--data-path", "rest", "--api", "v3"}, func(o prismsim.Objects) bool {
			for _, im := range o.Images {
				if strings.HasPrefix(im.Name, "ahvfs-img-restore-") {
					return true
				}
			}
			return false
		}},
		{"overwrite, original powered off", []string{"--overwrite", "--data-path", "iscsi"}, func(o prismsim.Objects) bool {
			for _, v := range o.VMs {
				if v.Name == "web01" && v.PowerState == "OFF" {
					return vmNamed(o, "web01") == 2
				}
			}
			return false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.WaitIdle(30*time.Second, 0)
			before := s.Objects()
			args := append(append(append([]string{"restore", "web01@latest", "--bwlimit", "8MiB/s"}, cluster...), iscsi...), tc.extra...)
			cmd := exec.Command(ahvfsBin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			deadline := time.Now().Add(60 * time.Second)
			for !tc.ready(s.Objects()) {
				select {
				case err := <-done:
					t.Fatalf("restore ended (%v) before the kill point: %s", err, stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("kill point not reached in 60s: %s", stderr.String())
				}
			}
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			s.WaitIdle(30*time.Second, 0) // the cluster serves what the dead process sent
			during := s.Objects()
			if len(prismsim.Diff(before, during)) == 0 {
				t.Fatal("the killed restore left nothing to clean up: the kill came too late")
			}
			out, errs, code := runCLI(t, "", append([]string{"cleanup", "--json"}, cluster...)...)
			var rep clusterjob.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
				t.Fatalf("cleanup: exit %d (%v): %s %s", code, err, out, errs)
			}
			s.WaitIdle(30*time.Second, 0)
			after := s.Objects()
			simtest.RequireUnchanged(t, before, after)
			// Every deletion reported is of an object that was there and is
			// gone now.
			requireDeletionsHappened(t, rep.Deleted, prismsim.Diff(during, after))
			t.Logf("killed at %q: cleanup %s", tc.name, rep.Summary())
		})
	}
	// Nothing is left in the journal, and a restore now succeeds.
	if p, err := openJournal(t, repo).Pending(); err != nil || len(p) != 0 {
		t.Fatalf("journal: %+v %v", p, err)
	}
	mustCLI(t, append(append(append([]string{"restore", "web01@latest", "--name", "web01-ok"}, cluster...), iscsi...), "--data-path", "iscsi")...)
	if _, ok := s.VM("web01-ok"); !ok {
		t.Fatal("restore after the kills made no VM")
	}
}

// written is the number of bytes stored in a volume group's disk files
// (blank disks are sparse: what a restore wrote is what is allocated).
func written(s *prismsim.Sim, vg string) int64 {
	files, err := s.VolumeGroupDiskFiles(vg)
	if err != nil {
		return 0
	}
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				n += sys.Blocks * 512
			}
		}
	}
	return n
}

// requireDeletionsHappened fails unless every deletion a cleanup reported
// names an object (by name or UUID) that changed on the cluster during the
// cleanup.
func requireDeletionsHappened(t *testing.T, deleted []string, changes prismsim.Changes) {
	t.Helper()
	for _, d := range deleted {
		found := false
		for _, c := range changes {
			if c.Name != "" && strings.Contains(d, c.Name) || c.UUID != "" && strings.Contains(d, c.UUID) {
				found = true
			}
		}
		if !found {
			t.Errorf("cleanup reports %q, which the cluster did not lose:\n%s", d, changes)
		}
	}
}
