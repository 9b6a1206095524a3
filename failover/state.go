package failover

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// VM states in a plan's state.
const (
	VMPending   = "pending"   // not started
	VMStopping  = "stopping"  // planned: the source VM is being shut down
	VMStopped   = "stopped"   // planned: the source VM is off
	VMBackedUp  = "backed-up" // planned: its final backup is in the source repository
	VMRestoring = "restoring" // restore running (or killed while it ran)
	VMRestored  = "restored"  // restored, not yet powered on
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
	Mode    string    `json:"mode"` // test, planned, unplanned
	Site    string    `json:"site"` // target Prism endpoint
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Synced is set when a planned failover's final backups reached the
	// DR repository; BytesSent is what that sync sent.
	Synced    bool  `json:"synced,omitempty"`
	BytesSent int64 `json:"bytes_sent,omitempty"`
	// StagesDone counts the stages whose VMs are on and whose delay and
	// script ran: a resumed failover goes on after them.
	StagesDone int `json:"stages_done,omitempty"`
	// Done is set when every stage ran.
	Done bool `json:"done,omitempty"`
	// Permanent: the DR site is the source of truth (ahvfs failover
	// permanent); the failover is no longer undone, only failed back.
	Permanent bool `json:"permanent,omitempty"`
	// Back is the failback under way (ahvfs failback).
	Back *FailbackState `json:"failback,omitempty"`
	VMs  []VMState      `json:"vms"`

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
	// SourceUUID is the VM at the source site (planned failover), which
	// SourceWasOn says was on before the failover shut it down
	// (Shutdown: guest, acpi or hard) at SourceOff.
	SourceUUID string `json:"source_uuid,omitempty"`
	// SourceAHVCluster is the source VM's AHV cluster (UUID), where a
	// failback puts the VM back.
	SourceAHVCluster string    `json:"source_ahv_cluster,omitempty"`
	SourceWasOn      bool      `json:"source_was_on,omitempty"`
	Shutdown         string    `json:"shutdown,omitempty"`
	SourceOff        time.Time `json:"source_off,omitzero"`
	UUID             string    `json:"uuid,omitempty"`
	// Existing are the VMs that had Name at the DR site before the
	// restore: never the failover's, whatever undo finds by name.
	Existing []string `json:"existing,omitempty"`
	// Instant: restored instantly (instant_nfs): its disks read from the
	// DR repository through the NFS server until hydrated.
	Instant bool `json:"instant,omitempty"`
	// ExternalRepo is the external repository an instant restore
	// registered for it: removed with it.
	ExternalRepo string `json:"external_repository,omitempty"`
	// Chained: the DR VM keeps a reference snapshot in the DR repository,
	// so that its backups there continue Point's chain (planned and
	// unplanned failovers).
	Chained bool `json:"chained,omitempty"`
	// Status is one of the VM* constants.
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	PoweredOn time.Time `json:"powered_on,omitzero"`
	// DRPoint is the VM's first backup at the DR site (ahvfs failover
	// permanent): an incremental on Point.
	DRPoint string `json:"dr_point,omitempty"`
	// Back is the VM's failback.
	Back *VMBack `json:"back,omitempty"`
}

// FailbackState is a failback's progress: the DR VMs shut down and backed up
// last, the points synced to the source repository (BytesSent: what
// changed at DR), the VMs restored at the source stage by stage, then
// the old source VMs and the DR VMs removed.
type FailbackState struct {
	Started    time.Time `json:"started"`
	Synced     bool      `json:"synced,omitempty"`
	BytesSent  int64     `json:"bytes_sent,omitempty"`
	StagesDone int       `json:"stages_done,omitempty"`
	Done       bool      `json:"done,omitempty"`
}

// VMBack is one VM's failback. Status goes through the VM* statuses:
// pending, stopping and stopped (the DR VM), backed-up, restoring,
// restored and on (the new source VM), then removed (the old source VM
// and the DR VM are gone).
type VMBack struct {
	Status    string    `json:"status"`
	Shutdown  string    `json:"shutdown,omitempty"`
	Point     string    `json:"point,omitempty"` // the DR VM's last backup
	PointTime time.Time `json:"point_time,omitzero"`
	// UUID is the VM restored at the source; Existing the VMs that had
	// its name there before (the old source VM among them).
	UUID     string   `json:"uuid,omitempty"`
	Existing []string `json:"existing,omitempty"`
	Chained  bool     `json:"chained,omitempty"`
	Error    string   `json:"error,omitempty"`
}

const stateVersion = 1

// stateFile is the state of plan file planFile: its base name and a hash
// of its path, so that two plans of one name in different directories
// sharing a DR repository never read each other's state.
func stateFile(dir, name, planFile string) string {
	sum := sha256.Sum256([]byte(planFile))
	return filepath.Join(dir, "failover", fmt.Sprintf("%s-%x.json", name, sum[:4]))
}

// lockPlan takes the plan's lock beside its state for as long as a
// failover or an undo runs: a second one of the same plan is refused
// rather than writing the state the first one keeps. Close the file to
// release it (the kernel does when the process dies).
func lockPlan(stateFile string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(stateFile), 0o700); err != nil {
		return nil, fmt.Errorf("failover state: %w", err)
	}
	f, err := os.OpenFile(strings.TrimSuffix(stateFile, ".json")+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failover lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another failover or undo of this plan is running (%s is locked)", f.Name())
	}
	return f, nil
}

// loadState reads a plan's state from file f; nil when there is none.
func loadState(f string) (*State, error) {
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

// instant reports whether a VM of the failover was restored instantly
// (it runs, or ran, from an external repository on the DR repository).
func (s *State) instant() bool {
	return slices.ContainsFunc(s.VMs, func(v VMState) bool { return v.Instant || v.ExternalRepo != "" })
}

// up reports whether VMs of the state may exist at the DR site, or a
// planned failover has shut source VMs down: either must be undone (or
// resumed) before another failover of the plan.
func (s *State) up() bool {
	for _, v := range s.VMs {
		switch v.Status {
		case VMStopping, VMStopped, VMBackedUp, VMRestoring, VMRestored, VMOn:
			return true
		}
	}
	return false
}
