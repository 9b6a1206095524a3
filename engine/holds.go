package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// Holds (docs/FORMAT.md, "Holds"). A hold is a record file
// records/hold/<hold id>.rec naming a restore point that something outside
// the repository reads from now — a VM hydrating from it over NFS — so
// that forget and prune leave the point in place until the hold is
// removed. Unlike a retention lock a hold can be removed at any time, and
// it needs no writer lock: an instant restore opens the repository only to
// read. Holds are not indexed; forget lists them from the store.
//
// A forget and a new hold exclude each other without a lock, each writing
// its own file before looking for the other's: Forget writes its
// tombstones and then lists the holds; AddHold writes the hold and then
// looks for a tombstone and for the point's record file. Whichever looks
// second sees the first one's file, so a point is never both held and
// removed (both may back out, and are then tried again).
const (
	dirHolds       = "records/hold"
	prefixHolds    = dirHolds + "/"
	recordKindHold = 'h'
	holdVersion    = 1
	// holdTempAge is the age beyond which a writer opening the repository
	// removes a hold's temporary file: holds are written without the
	// writer lock, so a younger one may be a Put still running.
	holdTempAge = 10 * time.Minute
)

// ErrHeld: an operation would remove a restore point that a hold keeps.
var ErrHeld = errors.New("restore point is held")

// Hold keeps a restore point from being forgotten while something reads
// from it. The engine interprets only ID, RP and Set; the other fields are
// the holder's, for people and for finding its holds again.
type Hold struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// RP is the held restore point's ID, Point its name (VM@TIME).
	RP    string `json:"rp"`
	Point string `json:"point"`
	// Reason says, for people, what reads from the point and how the hold
	// ends ("instant restore of VM db1 hydrates from it: ...").
	Reason string `json:"reason"`
	// Site and Object are the holder's: the cluster it works on and the
	// object on it that the hold lasts as long as (an external
	// repository's name).
	Site   string    `json:"site,omitempty"`
	Object string    `json:"object,omitempty"`
	Set    time.Time `json:"set"`
}

func holdRecordName(id string) string { return prefixHolds + id + recordExt }

// String names the hold for messages.
func (h Hold) String() string {
	return fmt.Sprintf("%s is held since %s: %s", h.Point, FormatTime(h.Set), h.Reason)
}

// AddHold holds rp: it stores a hold with h's Reason, Site and Object, and
// returns it complete. It fails (removing the hold again) when rp is being
// forgotten or is gone.
func (r *Repository) AddHold(ctx context.Context, rp *RestorePoint, h Hold) (Hold, error) {
	var idb [16]byte
	rand.Read(idb[:])
	h.V, h.ID, h.RP, h.Point, h.Set = holdVersion, hex.EncodeToString(idb[:]), rp.ID, rp.Name(), time.Now().UTC().Truncate(time.Second)
	body, err := json.Marshal(h)
	if err != nil {
		return Hold{}, fmt.Errorf("hold %s: %w", rp.Name(), err)
	}
	if err := backend.PutBytes(ctx, r.be, holdRecordName(h.ID), encodeRecordFile(r.fileMeta(), recordKindHold, h.ID, body)); err != nil {
		return Hold{}, fmt.Errorf("hold %s: write record: %w", rp.Name(), err)
	}
	if err := fault(fpHoldWritten); err != nil {
		return Hold{}, err
	}
	if err := r.pointStays(ctx, rp); err != nil {
		if rerr := r.RemoveHold(context.WithoutCancel(ctx), h.ID); rerr != nil {
			err = fmt.Errorf("%w; and removing the hold again failed: %w", err, rerr)
		}
		return Hold{}, fmt.Errorf("hold %s: %w", rp.Name(), err)
	}
	return h, nil
}

// pointStays fails when rp has a tombstone (a forget runs or was
// interrupted) or no record file.
func (r *Repository) pointStays(ctx context.Context, rp *RestorePoint) error {
	_, err := r.be.Stat(ctx, forgetRecordName(rp.ID))
	switch {
	case err == nil:
		return fmt.Errorf("%w: it is being forgotten", ErrNotFound)
	case !errors.Is(err, backend.ErrNotExist):
		return fmt.Errorf("look for a forget of it: %w", err)
	}
	if _, err := r.be.Stat(ctx, rpRecordName(rp.ID)); errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("%w: it was forgotten", ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("look for its record: %w", err)
	}
	return nil
}

// RemoveHold removes hold id; a hold that is gone already is no error.
func (r *Repository) RemoveHold(ctx context.Context, id string) error {
	if !validRecordID(id) {
		return fmt.Errorf("remove hold %q: %w: not a hold ID", id, ErrInvalid)
	}
	if err := r.be.Delete(ctx, holdRecordName(id)); err != nil && !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("remove hold %s: %w", id, err)
	}
	return nil
}

// Holds lists the holds in the store. A hold file that is not an intact
// hold record still holds: it is returned with only its ID (and RP when
// readable), so that damage never lets a point go.
func (r *Repository) Holds(ctx context.Context) ([]Hold, error) {
	files, err := r.readRecords(ctx, prefixHolds, recordKindHold)
	if err != nil {
		return nil, err
	}
	out := make([]Hold, 0, len(files))
	for _, f := range files {
		var h Hold
		err := f.err
		if err == nil {
			err = json.Unmarshal(f.body, &h)
		}
		if err != nil || h.V != holdVersion || h.ID != f.id || !validRecordID(h.RP) {
			h = Hold{ID: f.id, Reason: fmt.Sprintf("%s is damaged, so every restore point counts as held by it (remove it by hand once nothing reads from the repository)", holdRecordName(f.id))}
		}
		out = append(out, h)
	}
	return out, nil
}

// Keeps reports whether h holds restore point rpID. A damaged hold,
// which names no point, holds every one.
func (h Hold) Keeps(rpID string) bool { return h.RP == "" || h.RP == rpID }

// heldBy returns the holds that keep any of ids.
func heldBy(holds []Hold, ids map[string]bool) []Hold {
	var out []Hold
	for _, h := range holds {
		if h.RP == "" || ids[h.RP] { // Keeps, for a set of points
			out = append(out, h)
		}
	}
	return out
}

// heldError is the ErrHeld error listing holds.
func heldError(what string, holds []Hold) error {
	msgs := make([]string, len(holds))
	for i, h := range holds {
		msgs[i] = h.String()
	}
	return fmt.Errorf("%s: %w: %s; nothing was removed ('ahvfs holds' lists the holds)", what, ErrHeld, strings.Join(msgs, "; "))
}
