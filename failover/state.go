package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// VM states in a plan's state.
const (
	VMPending   = "pending"   // not started
	VMRestoring = "restoring" // restore running (or killed while it ran)
	VMOn        = "on"        // restored and powered on
	VMFailed    = "failed"    // its restore failed (the restore removed what it made)
	VMRemoved   = "removed"   // undo deleted it
)

// State is what a failover of a plan did, kept beside the DR repository
// (its state directory, failover/<plan>.json) and written before and after
// every step, so that status tells the truth and undo removes exactly
// what the failover made, after a kill too.
type State struct {
	V       int       `json:"v"`
	Plan    string    `json:"plan"`
	Mode    string    `json:"mode"` // test, unplanned
	Site    string    `json:"site"` // target Prism endpoint
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Done is set when every stage ran.
	Done bool      `json:"done,omitempty"`
	VMs  []VMState `json:"vms"`

	file string
}

// VMState is one VM of the plan.
type VMState struct {
	Stage int    `json:"stage"`
	VM    string `json:"vm"`    // source VM name
	Point string `json:"point"` // the restore point restored, VM@TIME
	// PointTime is its time: what a real failover loses is what the VM
	// wrote after it.
	PointTime time.Time `json:"point_time"`
	Name      string    `json:"name"` // the VM's name at the DR site
	UUID      string    `json:"uuid,omitempty"`
	// Status is one of the VM* constants.
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	PoweredOn time.Time `json:"powered_on,omitzero"`
}

const stateVersion = 1

func stateFile(dir, plan string) string { return filepath.Join(dir, "failover", plan+".json") }

// loadState reads a plan's state; nil when there is none.
func loadState(dir, plan string) (*State, error) {
	f := stateFile(dir, plan)
	b, err := os.ReadFile(f)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failover state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil || s.V != stateVersion {
		return nil, fmt.Errorf("failover state %s is damaged (%v): the VMs it names must be checked by hand", f, err)
	}
	s.file = f
	return &s, nil
}

// save writes the state durably (a rename over the old file).
func (s *State) save() error {
	s.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.file), 0o700); err != nil {
		return fmt.Errorf("failover state: %w", err)
	}
	if err := atomicfile.WriteFile(s.file, b, 0o600); err != nil {
		return fmt.Errorf("failover state: %w", err)
	}
	return nil
}

// remove deletes the state once nothing it names is left.
func (s *State) remove() error {
	if err := os.Remove(s.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failover state: %w", err)
	}
	return nil
}

// up reports whether VMs of the state may exist at the DR site.
func (s *State) up() bool {
	for _, v := range s.VMs {
		if v.Status == VMRestoring || v.Status == VMOn {
			return true
		}
	}
	return false
}
