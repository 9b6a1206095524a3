package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// StateStore is the part of the repository the job keeps its state in:
// synced, atomic single-key writes (engine.Repository).
type StateStore interface {
	PutState(ctx context.Context, key string, value []byte) error
	GetState(ctx context.Context, key string) ([]byte, error)
	DeleteState(ctx context.Context, key string) error
	ListState(ctx context.Context, prefix string) (map[string][]byte, error)
}

var _ StateStore = (*engine.Repository)(nil)

// Kinds of cluster objects in the ledger.
const (
	KindSnapshot    = "snapshot"
	KindVolumeGroup = "vg"
	KindImage       = "image"
)

const ledgerPrefix = "obj/"

// LedgerEntry is one cluster object a job created or is about to create.
type LedgerEntry struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	ID     string `json:"id,omitempty"` // empty until the create call returned
	VMUUID string `json:"vm_uuid,omitempty"`
	VM     string `json:"vm,omitempty"`
	// InitiatorIQN attached to a volume group (detached before deletion).
	InitiatorIQN string    `json:"initiator_iqn,omitempty"`
	Created      time.Time `json:"created"`
}

func (e LedgerEntry) key() string { return ledgerPrefix + e.Kind + "/" + e.Name }

func (e LedgerEntry) String() string {
	s := e.Kind + " " + e.Name
	if e.ID != "" {
		s += " (" + e.ID + ")"
	}
	return s
}

// ledger records cluster objects in the repository state.
type ledger struct{ st StateStore }

func (l ledger) put(ctx context.Context, e LedgerEntry) error {
	b, _ := json.Marshal(e)
	if err := l.st.PutState(ctx, e.key(), b); err != nil {
		return fmt.Errorf("record %s in the ledger: %w", e, err)
	}
	return nil
}

func (l ledger) remove(ctx context.Context, e LedgerEntry) error {
	return l.st.DeleteState(ctx, e.key())
}

func (l ledger) list(ctx context.Context) ([]LedgerEntry, error) {
	m, err := l.st.ListState(ctx, ledgerPrefix)
	if err != nil {
		return nil, err
	}
	var out []LedgerEntry
	for k, v := range m {
		var e LedgerEntry
		if err := json.Unmarshal(v, &e); err != nil || e.Kind == "" || e.Name == "" {
			return nil, fmt.Errorf("ledger entry %s: undecodable: %q", k, v)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out, nil
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// objectName makes the unique name of a cluster object the job creates.
func objectName(kind, vm string, t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	vm = nameUnsafe.ReplaceAllString(vm, "_")
	if len(vm) > 40 {
		vm = vm[:40]
	}
	p := "ahvfs-"
	if kind != KindSnapshot {
		p += kind + "-"
	}
	return p + vm + "-" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// notCreated reports whether err proves the create call made nothing: the
// server refused the request (4xx) or the task failed.
func notCreated(err error) bool {
	var te *nutanix.TaskError
	if errors.As(err, &te) {
		return true
	}
	var ae *nutanix.APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != 408 && ae.Status != 429
}

// CleanupReport says what Cleanup did.
type CleanupReport struct {
	// Deleted cluster objects.
	Deleted []string `json:"deleted,omitempty"`
	// Released ledger entries of snapshots now owned by a reference.
	Released []string `json:"released,omitempty"`
	// Unresolved entries: objects whose creation may have happened but
	// whose ID is unknown and which the cluster cannot list. Kept.
	Unresolved []string `json:"unresolved,omitempty"`
	// Errors deleting objects (kept in the ledger for the next sweep).
	Errors []string `json:"errors,omitempty"`
}

// Cleanup deletes the cluster objects recorded in the repository's ledger
// by jobs that did not finish (killed, cancelled, or failing to delete),
// except the snapshots that references protect. It must not run while a
// backup job writes the same repository (the repository's writer lock
// ensures that). Volume groups go first, then images, then snapshots.
// The returned error joins every failure; the report is always returned.
func Cleanup(ctx context.Context, st StateStore, cl nutanix.Cluster, logger *slog.Logger) (*CleanupReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rep := &CleanupReport{}
	l := ledger{st}
	entries, err := l.list(ctx)
	if err != nil {
		return rep, fmt.Errorf("cleanup: read ledger: %w", err)
	}
	if len(entries) == 0 {
		return rep, nil
	}
	refs, err := loadRefs(ctx, st)
	if err != nil {
		return rep, fmt.Errorf("cleanup: %w", err)
	}
	protected := map[string]bool{}
	for _, r := range refs {
		for _, s := range r.snapshots() {
			protected[s.Snapshot.ID] = true
		}
	}
	order := map[string]int{KindVolumeGroup: 0, KindImage: 1, KindSnapshot: 2}
	sort.SliceStable(entries, func(i, j int) bool { return order[entries[i].Kind] < order[entries[j].Kind] })
	var errs []error
	snapsByVM := map[string][]nutanix.Snapshot{}
	fail := func(e LedgerEntry, err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", e, err))
		errs = append(errs, fmt.Errorf("delete %s: %w", e, err))
		logger.Warn("cleanup: could not delete", "object", e.String(), "err", err)
	}
	done := func(e LedgerEntry, what string) {
		if err := l.remove(ctx, e); err != nil {
			errs = append(errs, err)
			return
		}
		rep.Deleted = append(rep.Deleted, what)
		logger.Info("cleanup: deleted", "object", what)
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		switch e.Kind {
		case KindVolumeGroup:
			ids := []string{}
			if e.ID != "" {
				ids = append(ids, e.ID)
			} else {
				// The create call was interrupted: find it by name.
				vgs, err := cl.ListVolumeGroups(ctx, e.Name)
				if errors.Is(err, nutanix.ErrUnsupported) {
					rep.Unresolved = append(rep.Unresolved, e.String()+": created by an interrupted job whose volume group ID was not recorded, and the cluster cannot list volume groups: check Prism for a volume group of this name")
					continue
				}
				if err != nil {
					fail(e, err)
					continue
				}
				for _, g := range vgs {
					if g.Name == e.Name {
						ids = append(ids, g.UUID)
					}
				}
			}
			ok := true
			for _, id := range ids {
				if e.InitiatorIQN != "" {
					if err := cl.DetachISCSIClient(ctx, id, e.InitiatorIQN); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
						logger.Warn("cleanup: detach", "vg", id, "err", err)
					}
				}
				if err := cl.DeleteVolumeGroup(ctx, id); err != nil {
					fail(e, err)
					ok = false
				}
			}
			if ok {
				done(e, e.String())
			}
		case KindImage:
			ids := []string{}
			if e.ID != "" {
				ids = append(ids, e.ID)
			} else {
				images, err := cl.ListImages(ctx, e.Name)
				if errors.Is(err, nutanix.ErrUnsupported) {
					rep.Unresolved = append(rep.Unresolved, e.String()+": created by an interrupted job whose image ID was not recorded, and the cluster cannot list images: check Prism for an image of this name")
					continue
				}
				if err != nil {
					fail(e, err)
					continue
				}
				for _, im := range images {
					if im.Name == e.Name {
						ids = append(ids, im.UUID)
					}
				}
			}
			ok := true
			for _, id := range ids {
				if err := cl.DeleteImage(ctx, id); err != nil {
					fail(e, err)
					ok = false
				}
			}
			if ok {
				done(e, e.String())
			}
		case KindSnapshot:
			ids := []string{}
			if e.ID != "" {
				ids = append(ids, e.ID)
			} else {
				// Find it by name: the create call may have succeeded.
				list, seen := snapsByVM[e.VMUUID]
				if !seen {
					if list, err = cl.ListSnapshots(ctx, e.VMUUID); err != nil {
						fail(e, err)
						continue
					}
					snapsByVM[e.VMUUID] = list
				}
				for _, s := range list {
					if s.Name == e.Name {
						ids = append(ids, s.ID)
					}
				}
			}
			if len(ids) == 0 { // never created
				if err := l.remove(ctx, e); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			ok := true
			var kept []string
			for _, id := range ids {
				if protected[id] {
					kept = append(kept, id)
					continue
				}
				if err := cl.DeleteSnapshot(ctx, id); err != nil {
					fail(e, err)
					ok = false
				}
			}
			if !ok {
				continue
			}
			if len(kept) > 0 && len(kept) == len(ids) {
				if err := l.remove(ctx, e); err != nil {
					errs = append(errs, err)
					continue
				}
				rep.Released = append(rep.Released, e.String())
				continue
			}
			done(e, e.String())
		default:
			rep.Unresolved = append(rep.Unresolved, e.String()+": unknown kind")
		}
	}
	return rep, errors.Join(errs...)
}

// Summary is a one-line description of the report.
func (r *CleanupReport) Summary() string {
	var parts []string
	if len(r.Deleted) > 0 {
		parts = append(parts, fmt.Sprintf("%d deleted", len(r.Deleted)))
	}
	if len(r.Released) > 0 {
		parts = append(parts, fmt.Sprintf("%d now references", len(r.Released)))
	}
	if len(r.Unresolved) > 0 {
		parts = append(parts, fmt.Sprintf("%d unresolved", len(r.Unresolved)))
	}
	if len(r.Errors) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", len(r.Errors)))
	}
	if len(parts) == 0 {
		return "nothing to clean up"
	}
	return strings.Join(parts, ", ")
}
