package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEngineImportsNoUpperLayer enforces the architecture: the repository
// engine must not depend on the cluster, transport, serving or CLI layers.
func TestEngineImportsNoUpperLayer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ahvfs/ahvfs/engine").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"nutanix", "iscsi", "fusefs", "dr", "cmd", "cbt"}
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, "github.com/ahvfs/ahvfs/")
		if !ok {
			continue
		}
		for _, f := range forbidden {
			if rest == f || strings.HasPrefix(rest, f+"/") {
				t.Errorf("engine depends on %s", dep)
			}
		}
	}
}
