package rptree

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// kind is what a path of the tree names.
type kind int

const (
	kRoot   kind = iota // "."
	kVM                 // <vm>
	kRP                 // <vm>/<time>
	kLatest             // <vm>/latest
	kJSON               // <vm>/<time>/vm.json
	kRaw                // <vm>/<time>/disk-N.raw
	kGuest              // <vm>/<time>/disk-N[/...]
)

// entry is a resolved path.
type entry struct {
	kind  kind
	path  string // the tree path (cleaned, "." for the root)
	vm    string // VM name (kVM and below)
	rp    *engine.RestorePoint
	disk  int    // disk index (kRaw, kGuest)
	gpath string // kGuest: path inside the disk's guestfs tree ("." = disk-N)
	info  fs.FileInfo
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// resolve finds name. follow makes a final "latest" link resolve to its
// restore point (and a final guest symlink to its target).
func (t *Tree) resolve(ctx context.Context, op, name string, follow bool) (*entry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &entry{kind: kRoot, path: ".", info: dirInfo(".", time.Time{})}, nil
	}
	comps := strings.Split(name, "/")
	// VM.
	vms, err := t.vmDirs(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	v, ok := vms[comps[0]]
	if !ok {
		t.maybeRefresh(ctx)
		if vms, err = t.vmDirs(ctx); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if v, ok = vms[comps[0]]; !ok {
			return nil, notExist(op, name)
		}
	}
	e := &entry{kind: kVM, path: comps[0], vm: v.Name}
	if len(comps) == 1 {
		e.info = dirInfo(comps[0], v.Latest)
		return e, nil
	}
	// Restore point, or the latest link.
	set, err := t.restorePoints(ctx, v.Name)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	rpName := comps[1]
	if rpName == LatestName {
		if len(set.names) == 0 {
			return nil, notExist(op, name)
		}
		target := set.names[len(set.names)-1]
		if len(comps) == 2 && !follow {
			rp := set.byName[target]
			return &entry{kind: kLatest, path: name, vm: v.Name, rp: rp,
				info: linkInfo(LatestName, target, rp.Time)}, nil
		}
		rpName = target
	}
	rp, ok := set.byName[rpName]
	if !ok {
		t.maybeRefresh(ctx)
		if set, err = t.restorePoints(ctx, v.Name); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if rp, ok = set.byName[rpName]; !ok {
			return nil, notExist(op, name)
		}
	}
	e = &entry{kind: kRP, path: name, vm: v.Name, rp: rp}
	if len(comps) == 2 {
		e.info = dirInfo(comps[1], rp.Time)
		return e, nil
	}
	// Inside a restore point.
	leaf := comps[2]
	if leaf == VMJSONName && len(comps) == 3 {
		e.kind = kJSON
		e.info = fileInfo{name: leaf, size: int64(len(vmJSON(rp))), mode: 0o444, st: timesStat(rp.Time)}
		return e, nil
	}
	if n, ok := parseDiskName(leaf, rawSuffix); ok && len(comps) == 3 {
		d, err := rp.Disk(n)
		if err != nil {
			return nil, notExist(op, name)
		}
		e.kind, e.disk = kRaw, n
		e.info = fileInfo{name: leaf, size: d.Size, mode: 0o444, st: timesStat(rp.Time), blksize: diskBlockSize}
		return e, nil
	}
	n, ok := parseDiskName(leaf, "")
	if !ok {
		return nil, notExist(op, name)
	}
	if _, err := rp.Disk(n); err != nil {
		return nil, notExist(op, name)
	}
	e.kind, e.disk, e.gpath = kGuest, n, "."
	if len(comps) == 3 {
		e.info = dirInfo(leaf, rp.Time)
		return e, nil
	}
	e.gpath = strings.Join(comps[3:], "/")
	od, release, err := t.disks.acquire(ctx, rp, n)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	defer release()
	g, err := od.guest(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if follow {
		e.info, err = g.FS().Stat(e.gpath)
	} else {
		e.info, err = g.FS().Lstat(e.gpath)
	}
	if err != nil {
		return nil, rebase(err, op, name)
	}
	return e, nil
}

// rebase replaces the path of a guestfs PathError by the tree path.
func rebase(err error, op, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}
