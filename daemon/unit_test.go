package daemon_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestSystemdUnit: contrib/systemd/ahvfs.service passes systemd's own
// checks, and its exposure (systemd-analyze security) stays at or below
// 4.0 ("OK").
func TestSystemdUnit(t *testing.T) {
	testenv.Commands(t, "systemd-analyze")
	b, err := os.ReadFile("../contrib/systemd/ahvfs.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the binary to exist: this test's own stands in.
	self, _ := os.Executable()
	unit := filepath.Join(t.TempDir(), "ahvfs.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/ahvfs", self)), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=40", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 4.0 (%v)\n%s", err, out)
	}
	for _, want := range []string{"NoNewPrivileges=", "ProtectSystem=", "CapabilityBoundingSet="} {
		if !strings.Contains(string(out), "✓ "+want) {
			t.Errorf("systemd-analyze security does not credit %s\n%s", want, out)
		}
	}
}
