package xapisim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/ahvfs/ahvfs/internal/simkit"
)

// CBT from real changes. A snapshot VDI taken while its disk has CBT
// enabled keeps, in DIR/cbt/<uuid>.cbt, one 16-byte hash (SHA-256 prefix;
// all zeros for a block of zeros) per 64 KiB block of its content at
// snapshot time. list_changed_blocks compares the hashes of two VDIs of
// the same disk and CBT epoch (a live disk's own hashes are computed from
// its file when asked), so its bitmap names exactly the blocks whose
// content differs.

// CBTBlockSize is the granularity of VDI.list_changed_blocks.
const CBTBlockSize = 64 << 10

const hashLen = 16

// blockHashes hashes every 64 KiB block of the first size bytes of path.
func blockHashes(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exts, err := simkit.DataExtents(f, 0, size)
	if err != nil {
		return nil, err
	}
	n := (size + CBTBlockSize - 1) / CBTBlockSize
	out := make([]byte, n*hashLen)
	buf := make([]byte, CBTBlockSize)
	for i := range n {
		off := i * CBTBlockSize
		l := min(CBTBlockSize, size-off)
		if !overlaps(exts, off, l) {
			continue
		}
		b := buf[:l]
		if err := simkit.ReadFull(f, b, off); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if simkit.AllZero(b) {
			continue
		}
		h := sha256.Sum256(b)
		h[0] |= 1 // never all zeros
		copy(out[i*hashLen:], h[:hashLen])
	}
	return out, nil
}

func writeCBTMetadata(dst, data string, size int64) error {
	h, err := blockHashes(data, size)
	if err != nil {
		return fmt.Errorf("cbt metadata: %w", err)
	}
	return atomicfile.WriteFile(dst, h, 0o644)
}

// cbtSource is where list_changed_blocks gets one side's hashes.
type cbtSource struct {
	lineage string // the live VDI's ref
	epoch   int64
	hashes  string // a CBT metadata file, or
	data    string // a live disk file to hash
	size    int64
}

// cbtSourceLocked returns the CBT metadata of a VDI, or
// VDI_NO_CBT_METADATA.
func (s *Sim) cbtSourceLocked(d *vdiRec) (cbtSource, error) {
	if d.IsASnapshot {
		if d.CBTFile == "" {
			return cbtSource{}, xerr("VDI_NO_CBT_METADATA", d.Ref)
		}
		return cbtSource{lineage: d.CBTOf, epoch: d.CBTEpoch, hashes: s.abs(d.CBTFile), size: d.VirtualSize}, nil
	}
	if !d.CBTEnabled || d.File == "" {
		return cbtSource{}, xerr("VDI_NO_CBT_METADATA", d.Ref)
	}
	return cbtSource{lineage: d.Ref, epoch: d.CBTEpoch, data: s.abs(d.File), size: d.VirtualSize}, nil
}

func (c cbtSource) load() ([]byte, error) {
	if c.hashes != "" {
		return os.ReadFile(c.hashes)
	}
	return blockHashes(c.data, c.size)
}

// changedBitmap sets bit i (most significant bit first) for every block i
// of the to side whose hash differs from the from side's.
func changedBitmap(from, to []byte, toSize int64) []byte {
	n := (toSize + CBTBlockSize - 1) / CBTBlockSize
	out := make([]byte, (n+7)/8)
	var zero [hashLen]byte
	at := func(h []byte, i int64) []byte {
		if (i+1)*hashLen > int64(len(h)) {
			return zero[:]
		}
		return h[i*hashLen : (i+1)*hashLen]
	}
	for i := range n {
		if !bytes.Equal(at(from, i), at(to, i)) {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

func vdiListChangedBlocks(c *call) (any, error) {
	s := c.s
	s.mu.Lock()
	from, err := c.vdi(0)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	to, err := c.vdi(1)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if !to.IsASnapshot && s.m.attached(to.Ref) {
		s.mu.Unlock()
		return nil, xerr("VDI_IN_USE", to.Ref, "list_changed_blocks")
	}
	fs, err := s.cbtSourceLocked(from)
	if err == nil {
		var ts cbtSource
		if ts, err = s.cbtSourceLocked(to); err == nil {
			if fs.lineage != ts.lineage || fs.epoch != ts.epoch {
				err = xerr("VDI_NO_CBT_METADATA", from.Ref)
			} else {
				s.mu.Unlock()
				return changedBlocks(fs, ts)
			}
		}
	}
	s.mu.Unlock()
	return nil, err
}

func changedBlocks(from, to cbtSource) (any, error) {
	fh, err := from.load()
	if err != nil {
		return nil, fmt.Errorf("read CBT metadata: %w", err)
	}
	th, err := to.load()
	if err != nil {
		return nil, fmt.Errorf("read CBT metadata: %w", err)
	}
	return base64.StdEncoding.EncodeToString(changedBitmap(fh, th, to.size)), nil
}

// ---------- VDI messages (callers hold s.mu unless selfLock) ----------

func vdiEnableCBT(c *call) (any, error) {
	d, err := c.vdi(0)
	if err != nil {
		return nil, err
	}
	if d.IsASnapshot || d.Type == "cbt_metadata" {
		return nil, xerr("VDI_INCOMPATIBLE_TYPE", d.Ref, d.Type)
	}
	if !d.CBTEnabled {
		d.CBTEnabled = true
		d.CBTEpoch++
	}
	return nil, nil
}

func vdiDisableCBT(c *call) (any, error) {
	d, err := c.vdi(0)
	if err != nil {
		return nil, err
	}
	d.CBTEnabled = false
	return nil, nil
}

func vdiDataDestroy(c *call) (any, error) {
	d, err := c.vdi(0)
	if err != nil {
		return nil, err
	}
	switch {
	case d.Type == "cbt_metadata":
		return nil, xerr("OPERATION_NOT_ALLOWED", "VDI "+d.Ref+" has no data left")
	case !d.IsASnapshot:
		return nil, xerr("OPERATION_NOT_ALLOWED", "VDI "+d.Ref+" is not a snapshot")
	case !d.CBTEnabled || d.CBTFile == "":
		return nil, xerr("VDI_NO_CBT_METADATA", d.Ref)
	case c.s.m.attached(d.Ref):
		return nil, xerr("VDI_IN_USE", d.Ref, "data_destroy")
	}
	c.s.removeFile(d.File)
	d.File, d.Type = "", "cbt_metadata"
	// As xapi does (xapi_vdi.ml, destroy_and_data_destroy_common): the
	// VDI's VBDs go, so its snapshot VM no longer lists it.
	for ref, b := range c.s.m.VBDs {
		if b.VDI == d.Ref {
			delete(c.s.m.VBDs, ref)
		}
	}
	return nil, nil
}

func vdiCreate(c *call) (any, error) {
	rec, err := c.record(0)
	if err != nil {
		return nil, err
	}
	if err := requireFields(c.name, rec, "name_label", "name_description", "SR", "virtual_size", "type",
		"sharable", "read_only", "other_config"); err != nil {
		return nil, err
	}
	d := &vdiRec{Ref: newRef(), UUID: simkit.NewUUID()}
	var errs []error
	str := func(k string) string { x, err := fieldStr(rec, k, ""); errs = append(errs, err); return x }
	boo := func(k string) bool { x, err := fieldBool(rec, k, false); errs = append(errs, err); return x }
	d.NameLabel, d.NameDescription, d.SR, d.Type = str("name_label"), str("name_description"), str("SR"), str("type")
	d.Sharable, d.ReadOnly = boo("sharable"), boo("read_only")
	d.VirtualSize, err = fieldInt(rec, "virtual_size", 0)
	errs = append(errs, err)
	d.OtherConfig, err = fieldMap(rec, "other_config")
	errs = append(errs, err)
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	s := c.s
	s.mu.Lock()
	if d.SR != s.m.SR.Ref {
		s.mu.Unlock()
		return nil, handleInvalid("SR", d.SR)
	}
	s.mu.Unlock()
	switch d.Type {
	case "user", "system", "ephemeral", "suspend", "crashdump", "ha_statefile", "metadata", "redo_log", "rrd", "pvs_cache":
	default:
		return nil, xerr("VALUE_NOT_SUPPORTED", "type", d.Type, "unknown VDI type")
	}
	if d.VirtualSize <= 0 {
		return nil, xerr("VALUE_NOT_SUPPORTED", "virtual_size", fmt.Sprint(d.VirtualSize), "must be positive")
	}
	d.VirtualSize = roundUp(d.VirtualSize, 512)
	d.File = "vdis/" + d.UUID + ".raw"
	if err := simkit.BlankDisk(s.abs(d.File), d.VirtualSize); err != nil {
		return nil, xerr("SR_BACKEND_FAILURE_79", "", "VDI create failed: "+err.Error(), "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.Seq = s.m.next()
	s.m.VDIs[d.Ref] = d
	s.save()
	return d.Ref, nil
}

func vdiDestroy(c *call) (any, error) {
	d, err := c.vdi(0)
	if err != nil {
		return nil, err
	}
	m := c.s.m
	if m.attached(d.Ref) {
		return nil, xerr("VDI_IN_USE", d.Ref, "destroy")
	}
	for ref, b := range m.VBDs {
		if b.VDI == d.Ref {
			delete(m.VBDs, ref)
		}
	}
	c.s.removeFile(d.File)
	c.s.removeFile(d.CBTFile)
	delete(m.VDIs, d.Ref)
	return nil, nil
}
