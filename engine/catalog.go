package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Levels of a restore point.
const (
	LevelFull         = "full"
	LevelIncremental  = "incremental"
	LevelDifferential = "differential"
	LevelImport       = "import"
	// LevelCopy is a full read outside the chain (SEP sesam's COPY): it
	// neither uses nor moves the VM's reference snapshots.
	LevelCopy = "copy"
)

// RestorePoint is one VM at one time. It is immutable once committed.
type RestorePoint struct {
	ID          string            `json:"id"`
	VM          string            `json:"vm"`
	VMUUID      string            `json:"vm_uuid,omitempty"`
	Time        time.Time         `json:"time"`
	Level       string            `json:"level"`
	Consistency string            `json:"consistency,omitempty"`
	Parent      string            `json:"parent,omitempty"`
	Disks       []Disk            `json:"disks"`
	Config      json.RawMessage   `json:"config,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	Committed   time.Time         `json:"committed"`
	Stats       WriteStats        `json:"stats"`
	// LockedUntil is the end of the point's retention lock (zero when it
	// has none). It comes from the lock records, not the point's own.
	LockedUntil time.Time `json:"-"`
}

// Name is the restore point's CLI name, VM@TIME.
func (rp *RestorePoint) Name() string { return rp.VM + "@" + FormatTime(rp.Time) }

// LogicalBytes is the sum of the disks' sizes.
func (rp *RestorePoint) LogicalBytes() int64 {
	var n int64
	for _, d := range rp.Disks {
		n += d.Size
	}
	return n
}

// Disk is one disk of a restore point: its place on the VM and its manifest.
type Disk struct {
	Index    int    `json:"index"`               // position in the VM's disk list: disk-N
	Bus      string `json:"bus,omitempty"`       // scsi, sata, ide, pci
	BusIndex int    `json:"bus_index,omitempty"` // device index on the bus
	Size     int64  `json:"size"`
	UUID     string `json:"uuid,omitempty"`
	// Pages are the manifest: page IDs in order; ZeroID for an all-zero page.
	Pages []ID `json:"pages"`
	// Reason says why the disk was read in full in an incremental job.
	Reason string     `json:"reason,omitempty"`
	Stats  WriteStats `json:"stats"`
}

// Name is "disk-N".
func (d *Disk) Name() string { return fmt.Sprintf("disk-%d", d.Index) }

// WriteStats count what writing a disk or restore point did.
type WriteStats struct {
	WrittenBytes   int64 `json:"written_bytes"`   // bytes handed to WriteAt
	ZeroBytes      int64 `json:"zero_bytes"`      // bytes recorded as zero (given or detected)
	UnchangedBytes int64 `json:"unchanged_bytes"` // bytes taken from the parent
	NewChunks      int64 `json:"new_chunks"`      // chunks (and pages) stored for the first time
	NewRawBytes    int64 `json:"new_raw_bytes"`   // their plaintext size
	NewStoredBytes int64 `json:"new_stored_bytes"`
	DurationMS     int64 `json:"duration_ms"`
}

func (s *WriteStats) add(o WriteStats) {
	s.WrittenBytes += o.WrittenBytes
	s.ZeroBytes += o.ZeroBytes
	s.UnchangedBytes += o.UnchangedBytes
	s.NewChunks += o.NewChunks
	s.NewRawBytes += o.NewRawBytes
	s.NewStoredBytes += o.NewStoredBytes
}

// MarshalText writes the ID in hex (JSON manifests).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) != 2*IDSize {
		return fmt.Errorf("ID %q: want %d hex digits", b, 2*IDSize)
	}
	_, err := hex.Decode(id[:], b)
	return err
}

// FormatTime is the restore-point time format: RFC 3339, UTC, seconds.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ParseName splits "VM@TIME" (TIME may be "latest"). A name without '@'
// means the latest restore point of that VM.
func ParseName(s string) (vm, when string, err error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, "latest", nil
	}
	vm, when = s[:i], s[i+1:]
	if vm == "" || when == "" {
		return "", "", fmt.Errorf("restore point %q: want VM@TIME or VM@latest", s)
	}
	return vm, when, nil
}

const rpRecordVersion = 1

type rpRecord struct {
	V int `json:"v"`
	RestorePoint
}

type vmRecord struct {
	V     int       `json:"v"`
	Name  string    `json:"name"`
	UUID  string    `json:"uuid,omitempty"`
	First time.Time `json:"first"`
}

// VM is a VM the repository holds restore points of.
type VM struct {
	Name          string
	UUID          string
	RestorePoints int
	Latest        time.Time
}

// rpKey is a restore point's catalog key; vm is the VM name's index form
// (metaCrypt.vmPart): the name itself, or its HMAC when encrypted.
func rpKey(vm []byte, t time.Time) []byte {
	k := make([]byte, 0, 2+len(vm)+8)
	k = append(k, keyRP)
	k = append(k, vm...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
}

func rpPrefix(vm []byte) []byte {
	k := append([]byte{keyRP}, vm...)
	return append(k, 0)
}

func vmKey(vm []byte) []byte { return append([]byte{keyVM}, vm...) }

func rpIDKey(id string) []byte { return append([]byte{keyRPByID}, id...) }

func encodeRestorePoint(rp *RestorePoint) ([]byte, error) {
	return json.Marshal(rpRecord{V: rpRecordVersion, RestorePoint: *rp})
}

// decodeRestorePoint parses a catalog record and checks it for internal
// consistency (pages per disk, given the chunk size and page entries).
func decodeRestorePoint(b []byte, chunkSize, pageEntries int) (*RestorePoint, error) {
	var r rpRecord
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: restore point record: %v", ErrCorrupt, err)
	}
	if r.V != rpRecordVersion {
		return nil, fmt.Errorf("%w: restore point record version %d", ErrCorrupt, r.V)
	}
	rp := &r.RestorePoint
	if rp.VM == "" || rp.ID == "" || rp.Time.IsZero() {
		return nil, fmt.Errorf("%w: restore point record lacks VM, ID or time", ErrCorrupt)
	}
	for i := range rp.Disks {
		dk := &rp.Disks[i]
		if dk.Size < 0 || dk.Size > 1<<50 {
			return nil, fmt.Errorf("%w: restore point %s disk %d size %d", ErrCorrupt, rp.Name(), dk.Index, dk.Size)
		}
		if want := pagesFor(dk.Size, chunkSize, pageEntries); len(dk.Pages) != want {
			return nil, fmt.Errorf("%w: restore point %s disk %d has %d pages, want %d", ErrCorrupt, rp.Name(), dk.Index, len(dk.Pages), want)
		}
	}
	return rp, nil
}

// decodeRPValue opens and parses a restore point's catalog value.
func (r *Repository) decodeRPValue(key, val []byte) (*RestorePoint, error) {
	plain, err := r.meta.open(key, val)
	if err != nil {
		return nil, fmt.Errorf("catalog entry of %d bytes: %w", len(val), err)
	}
	return decodeRestorePoint(plain, r.cfg.ChunkSize, r.cfg.PageEntries)
}

// encodeVMValue is the catalog value of a VM record under key.
func encodeVMValue(m metaCrypt, key []byte, rec vmRecord) []byte {
	b, _ := json.Marshal(rec)
	return m.seal(key, b)
}

// decodeVMValue opens and parses a VM record's catalog value.
func decodeVMValue(m metaCrypt, key, val []byte) (vmRecord, error) {
	var rec vmRecord
	plain, err := m.open(key, val)
	if err != nil {
		return rec, fmt.Errorf("VM record: %w", err)
	}
	if err := json.Unmarshal(plain, &rec); err != nil || rec.Name == "" {
		return rec, fmt.Errorf("%w: VM record of %d bytes", ErrCorrupt, len(plain))
	}
	return rec, nil
}

func chunksFor(size int64, chunkSize int) int {
	return int((size + int64(chunkSize) - 1) / int64(chunkSize))
}

func pagesFor(size int64, chunkSize, pageEntries int) int {
	return (chunksFor(size, chunkSize) + pageEntries - 1) / pageEntries
}

// decodePage parses a manifest page: a run of chunk IDs.
func decodePage(b []byte, pageEntries int) ([]ID, error) {
	if err := checkPage(b, pageEntries); err != nil {
		return nil, err
	}
	ids := make([]ID, len(b)/IDSize)
	for i := range ids {
		copy(ids[i][:], b[i*IDSize:])
	}
	return ids, nil
}

// checkPage checks the length of a decoded manifest page.
func checkPage(b []byte, pageEntries int) error {
	if len(b) == 0 || len(b)%IDSize != 0 || len(b)/IDSize > pageEntries {
		return fmt.Errorf("%w: manifest page of %d bytes", ErrCorrupt, len(b))
	}
	return nil
}

func encodePage(ids []ID) []byte {
	b := make([]byte, 0, len(ids)*IDSize)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}
