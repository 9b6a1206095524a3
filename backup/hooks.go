package backup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
)

// CommandHook returns a Hook that runs command with /bin/sh -c on this
// host, with the VM in the environment: AHVFS_VM (name), AHVFS_VM_UUID and
// AHVFS_HOOK (phase, e.g. "pre-snapshot"). A non-zero exit is an error
// carrying the exit status and the last line the command printed on
// stderr ("exit status 3: db01: not quiesced"); the job names the phase.
func CommandHook(phase, command string) Hook {
	return func(ctx context.Context, vm clusterjob.VMConfig) error {
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
				return fmt.Errorf("%w: %s", err, msg)
			}
			return err
		}
		return nil
	}
}
