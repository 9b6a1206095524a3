package backup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// CommandHook returns a Hook that runs command with /bin/sh -c, with the
// VM in the environment: AHVFS_VM (name), AHVFS_VM_UUID and AHVFS_HOOK
// (phase, e.g. "pre-snapshot"). A non-zero exit is an error carrying the
// last line the command printed on stderr.
func CommandHook(phase, command string) Hook {
	return func(ctx context.Context, vm VMConfig) error {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		cmd.Env = append(os.Environ(), "AHVFS_VM="+vm.Name, "AHVFS_VM_UUID="+vm.UUID, "AHVFS_HOOK="+phase)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			if msg != "" {
				return fmt.Errorf("%s hook: %w: %s", phase, err, msg)
			}
			return fmt.Errorf("%s hook: %w", phase, err)
		}
		return nil
	}
}
