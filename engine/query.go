package engine

import (
	"context"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
)

// ListVMs returns the VMs with restore points, by name.
func (r *Repository) ListVMs(ctx context.Context) (_ []VM, err error) {
	defer r.guardIndex(&err, "list VMs")
	db, done := r.reader()
	defer done()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyVM}, UpperBound: []byte{keyVM + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []VM
	for it.First(); it.Valid(); it.Next() {
		rec, err := decodeVMValue(r.meta, it.Key(), it.Value())
		if err != nil {
			return nil, fmt.Errorf("list VMs: %w", err)
		}
		vm := VM{Name: rec.Name, UUID: rec.UUID}
		rps, err := r.listRPs(db, rec.Name)
		if err != nil {
			return nil, err
		}
		vm.RestorePoints = len(rps)
		if len(rps) > 0 {
			vm.Latest = rps[len(rps)-1].Time
		}
		out = append(out, vm)
	}
	return out, it.Error()
}

// ListRestorePoints returns a VM's restore points, oldest first; vm == ""
// lists every VM's.
func (r *Repository) ListRestorePoints(ctx context.Context, vm string) (_ []*RestorePoint, err error) {
	defer r.guardIndex(&err, "list restore points")
	db, done := r.reader()
	defer done()
	if vm != "" {
		rps, err := r.listRPs(db, vm)
		if err != nil {
			return nil, err
		}
		return rps, r.fillLocks(db, rps...)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyRP}, UpperBound: []byte{keyRP + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*RestorePoint
	for it.First(); it.Valid(); it.Next() {
		rp, err := r.decodeRPValue(it.Key(), it.Value())
		if err != nil {
			return nil, fmt.Errorf("list restore points: %w", err)
		}
		out = append(out, rp)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return out, r.fillLocks(db, out...)
}

// listRPs returns vm's restore points, oldest first, without their locks
// (ListVMs counts them; ListRestorePoints fills the locks in).
func (r *Repository) listRPs(db pebble.Reader, vm string) ([]*RestorePoint, error) {
	prefix := rpPrefix(r.meta.vmPart(vm))
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*RestorePoint
	for it.First(); it.Valid(); it.Next() {
		rp, err := r.decodeRPValue(it.Key(), it.Value())
		if err != nil {
			return nil, fmt.Errorf("list restore points of %s: %w", vm, err)
		}
		out = append(out, rp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, it.Error()
}

// Resolve finds a restore point by name: "VM@TIME", "VM@latest" or "VM"
// (latest). VM may also be the VM's UUID.
func (r *Repository) Resolve(ctx context.Context, name string) (_ *RestorePoint, err error) {
	defer r.guardIndex(&err, "restore point "+name)
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("restore point %s: %w", quoteShort(name), err)
	}
	vm, when, _ := ParseName(name)
	rps, err := r.ListRestorePoints(ctx, vm)
	if err != nil {
		return nil, err
	}
	if len(rps) == 0 {
		// Maybe a UUID.
		vms, err := r.ListVMs(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range vms {
			if v.UUID != "" && v.UUID == vm {
				return r.Resolve(ctx, v.Name+"@"+when)
			}
		}
		return nil, fmt.Errorf("restore point %s: %w: no restore points of VM %q", name, ErrNotFound, vm)
	}
	if when == "latest" {
		return rps[len(rps)-1], nil
	}
	t, err := ParseTime(when)
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", name, err)
	}
	for _, rp := range rps {
		if rp.Time.Equal(t) {
			return rp, nil
		}
	}
	return nil, fmt.Errorf("restore point %s: %w (see 'ahvfs list %s')", name, ErrNotFound, vm)
}

// RestorePointByID finds a restore point by its ID.
func (r *Repository) RestorePointByID(ctx context.Context, id string) (_ *RestorePoint, err error) {
	defer r.guardIndex(&err, "restore point "+id)
	db, done := r.reader()
	defer done()
	key, err := getValue(db, rpIDKey(id))
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", id, err)
	}
	v, err := getValue(db, key)
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", id, err)
	}
	rp, err := r.decodeRPValue(key, v)
	if err != nil {
		return nil, err
	}
	return rp, r.fillLocks(db, rp)
}

// Disk returns disk n of rp.
func (rp *RestorePoint) Disk(n int) (*Disk, error) {
	for i := range rp.Disks {
		if rp.Disks[i].Index == n {
			return &rp.Disks[i], nil
		}
	}
	return nil, fmt.Errorf("%s: disk-%d: %w", rp.Name(), n, ErrNotFound)
}

// --- job state -----------------------------------------------------------

// PutState stores an opaque job-state value under key, synced. Backup jobs
// record every cluster-side object here before creating it.
func (r *Repository) PutState(ctx context.Context, key string, value []byte) error {
	if !r.writable {
		return ErrReadOnly
	}
	if err := r.db.Set(append([]byte{keyState}, key...), value, pebble.Sync); err != nil {
		return fmt.Errorf("put state %s: %w", key, err)
	}
	r.dirty.Store(true)
	return nil
}

// DeleteState removes a job-state key (no error when absent).
func (r *Repository) DeleteState(ctx context.Context, key string) error {
	if !r.writable {
		return ErrReadOnly
	}
	if err := r.db.Delete(append([]byte{keyState}, key...), pebble.Sync); err != nil {
		return fmt.Errorf("delete state %s: %w", key, err)
	}
	r.dirty.Store(true)
	return nil
}

// GetState reads a job-state key; ErrNotFound when absent.
func (r *Repository) GetState(ctx context.Context, key string) (_ []byte, err error) {
	defer r.guardIndex(&err, "get job state "+key)
	db, done := r.reader()
	defer done()
	return getValue(db, append([]byte{keyState}, key...))
}

// ListState returns the job-state keys with the prefix and their values.
func (r *Repository) ListState(ctx context.Context, prefix string) (_ map[string][]byte, err error) {
	defer r.guardIndex(&err, "list job state")
	db, done := r.reader()
	defer done()
	lo := append([]byte{keyState}, prefix...)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string][]byte{}
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key()[1:])] = append([]byte(nil), it.Value()...)
	}
	return out, it.Error()
}
