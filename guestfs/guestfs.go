package guestfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of them where
// it applies, so callers can map them once (FUSE errno, CLI exit code).
var (
	// ErrCorrupt means on-disk structures are inconsistent (or the reader
	// hit something it cannot interpret safely).
	ErrCorrupt = errors.New("guestfs: corrupt or unsupported on-disk structure")
	// ErrUnsupported means a feature the volume uses is not implemented
	// (e.g. an NTFS compressed stream, an LVM RAID segment).
	ErrUnsupported = errors.New("guestfs: unsupported feature")
)

// Options tunes OpenDisk. The zero value uses the defaults.
type Options struct {
	// DirCacheSize is how many directory listings each filesystem keeps
	// decoded in memory (default 4096).
	DirCacheSize int
	// MaxDirEntries bounds the entries read from one directory, a guard
	// against corrupt directories that claim billions (default 4194304).
	MaxDirEntries int
	// NoLVM, if set, shows LVM physical volumes as plain partitions with a
	// README.txt instead of exposing their logical volumes (default false).
	NoLVM bool
	// FATLocation is the time zone FAT timestamps (local wall-clock time
	// without a zone) are read in (default UTC: the guest's zone is not
	// known here).
	FATLocation *time.Location
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	var errs []error
	if o.DirCacheSize < 0 {
		errs = append(errs, fmt.Errorf("DirCacheSize %d < 0", o.DirCacheSize))
	}
	if o.MaxDirEntries < 0 {
		errs = append(errs, fmt.Errorf("MaxDirEntries %d < 0", o.MaxDirEntries))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.DirCacheSize == 0 {
		o.DirCacheSize = 4096
	}
	if o.MaxDirEntries == 0 {
		o.MaxDirEntries = 4 << 20
	}
	return o
}

// Partition tables (Partition.Table).
const (
	TableGPT  = "gpt"
	TableMBR  = "mbr"
	TableNone = "none" // the disk is one bare filesystem (part-0)
	TableLVM  = "lvm"  // an LVM logical volume found inside a partition
)

// Filesystem kinds (Partition.Kind), found by their magic numbers.
const (
	KindExt     = "ext"  // ext2, ext3 or ext4
	KindXFS     = "xfs"  //
	KindFAT     = "fat"  // FAT12, FAT16 or FAT32
	KindNTFS    = "ntfs" //
	KindLVM     = "lvm2-pv"
	KindSwap    = "swap"
	KindEmpty   = "empty" // all zeros where a filesystem would start
	KindOther   = "other" // recognised but not readable here (btrfs, LUKS, ...)
	KindUnknown = "unknown"
)

// Partition is one entry of the disk's root directory: a partition of the
// table, the bare filesystem of an unpartitioned disk, or an LVM logical
// volume.
type Partition struct {
	// Name is the directory name in Disk.FS(): "part-M" where M is the
	// partition number as Linux numbers it (GPT entry index + 1; MBR
	// primary 1-4, logical 5 and up), "part-0" for a bare filesystem, or
	// "lv-<vg>-<lv>" for an LVM logical volume.
	Name string
	// Index is M of part-M (-1 for a logical volume).
	Index int
	// Table is TableGPT, TableMBR, TableNone or TableLVM.
	Table string
	// Start and Size are in bytes on the disk. Start is -1 for a logical
	// volume whose extents are not contiguous on the disk.
	Start, Size int64
	// Type is the partition type: a GPT type GUID, "0x83" for MBR, or the
	// LVM segment type.
	Type string
	// GUID is the GPT unique partition GUID or the LVM LV UUID.
	GUID string
	// Label is the GPT partition name or "vg/lv" for a logical volume.
	Label string
	// Kind is what the first bytes look like (KindExt, KindNTFS, ...).
	Kind string
	// Note is a human explanation of what was found (e.g. the README.txt
	// text for parts that cannot be browsed), empty when all is well.
	Note string

	r io.ReaderAt // the partition's bytes, offset 0 = its first byte
}

// Disk is an opened guest disk. It is safe for concurrent use.
type Disk struct {
	opts  Options
	size  int64
	table string
	parts []*Partition
	vols  []*volMount
	root  *mount
	fsys  *FS
}

// OpenDisk reads the partition table of the disk image r (size bytes) and
// returns a Disk whose filesystems are opened lazily, on first access.
// Only a failure to read the first sectors is an error: an unknown or
// damaged partition table or filesystem shows up as a README.txt in the
// tree instead.
func OpenDisk(ctx context.Context, r io.ReaderAt, size int64, opts Options) (*Disk, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("guestfs: options: %w", err)
	}
	opts = opts.withDefaults()
	if size < 0 {
		return nil, fmt.Errorf("guestfs: negative disk size %d", size)
	}
	d := &Disk{opts: opts, size: size}
	var head [512]byte
	if size >= 512 {
		if _, err := r.ReadAt(head[:], 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("guestfs: read first sector: %w", err)
		}
	}
	if err := d.scan(ctx, r); err != nil {
		return nil, err
	}
	d.build()
	return d, nil
}

// scan reads the partition table, probes each partition and finds LVM
// logical volumes. The parsers bound their own work; recover is the last
// guard.
func (d *Disk) scan(ctx context.Context, r io.ReaderAt) (err error) {
	defer recoverTo(&err, "guestfs: read partition table")
	table, parts := readPartitionTable(ctx, r, d.size)
	d.table = table
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.Kind, p.Note = probeKind(p.r, p.Size)
		d.parts = append(d.parts, p)
	}
	if !d.opts.NoLVM {
		d.parts = append(d.parts, findLVs(ctx, d.parts)...)
	}
	return ctx.Err()
}

// Table reports the partition table found: TableGPT, TableMBR or TableNone.
func (d *Disk) Table() string { return d.table }

// Size is the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// Partitions lists the root directory's entries, in listing order.
func (d *Disk) Partitions() []Partition {
	out := make([]Partition, len(d.parts))
	for i, p := range d.parts {
		out[i] = *p
	}
	return out
}

// FS returns the disk's file tree: the root holds one directory per
// partition (see Partition.Name). The tree is read-only and safe for
// concurrent use.
func (d *Disk) FS() *FS { return d.fsys }

func (d *Disk) build() {
	sort.SliceStable(d.parts, func(i, j int) bool {
		a, b := d.parts[i], d.parts[j]
		if (a.Index < 0) != (b.Index < 0) {
			return a.Index >= 0
		}
		if a.Index != b.Index {
			return a.Index < b.Index
		}
		return a.Name < b.Name
	})
	now := time.Unix(0, 0)
	root := newMemDir("", now)
	for _, p := range d.parts {
		vm := &volMount{disk: d, part: p}
		d.vols = append(d.vols, vm)
		root.addMountPoint(p.Name, vm)
	}
	d.root = newMount(root, d.opts)
	d.fsys = &FS{d: d}
}

// volMount is one partition's filesystem, opened on first use.
type volMount struct {
	disk *Disk
	part *Partition
	once sync.Once
	m    *mount
}

func (v *volMount) get() *mount {
	v.once.Do(func() {
		vol, err := openVolume(v.part, v.disk.opts)
		if err != nil {
			msg := describeFailure(v.part, err)
			v.m = newMount(readmeDir(msg), v.disk.opts)
			return
		}
		m := newMount(vol, v.disk.opts)
		if _, err := m.root(); err != nil {
			m = newMount(readmeDir(describeFailure(v.part, err)), v.disk.opts)
		}
		v.m = m
	})
	return v.m
}

// openVolume opens the filesystem of p, recovering from panics in parsers.
func openVolume(p *Partition, opts Options) (vol volume, err error) {
	defer recoverTo(&err, "open "+p.Name)
	switch p.Kind {
	case KindExt:
		return openExt(p.r, p.Size, opts)
	case KindXFS:
		return openXFS(p.r, p.Size, opts)
	case KindFAT:
		return openFAT(p.r, p.Size, opts)
	case KindNTFS:
		return openNTFS(p.r, p.Size, opts)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupported, p.Kind)
}

func describeFailure(p *Partition, err error) string {
	var b []byte
	b = fmt.Appendf(b, "%s cannot be browsed.\n\n", p.Name)
	b = fmt.Appendf(b, "table:  %s\n", p.Table)
	if p.Start >= 0 {
		b = fmt.Appendf(b, "start:  %d bytes\n", p.Start)
	}
	b = fmt.Appendf(b, "size:   %d bytes\n", p.Size)
	if p.Type != "" {
		b = fmt.Appendf(b, "type:   %s\n", p.Type)
	}
	if p.Label != "" {
		b = fmt.Appendf(b, "label:  %s\n", p.Label)
	}
	b = fmt.Appendf(b, "found:  %s\n", p.Kind)
	if p.Note != "" {
		b = fmt.Appendf(b, "\n%s\n", p.Note)
	}
	if p.Kind == KindExt || p.Kind == KindXFS || p.Kind == KindFAT || p.Kind == KindNTFS {
		b = fmt.Appendf(b, "\nThe %s filesystem could not be opened: %v\n", p.Kind, err)
	}
	b = fmt.Appendf(b, "\nThe raw bytes are still in the disk image (disk-N.raw) for other tools.\n")
	return string(b)
}

// recoverTo turns a panic in a parser into an ErrCorrupt error.
func recoverTo(err *error, op string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %w (parser panic: %v)", op, ErrCorrupt, r)
	}
}
