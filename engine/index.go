package engine

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Pebble key spaces (docs/FORMAT.md). Every key starts with one byte that
// names its space.
const (
	keyChunk   = 'c' // c + ID → location
	keyPack    = 'k' // k + pack ID → pack record
	keyVM      = 'v' // v + VM name → VM record (JSON)
	keyRP      = 'r' // r + VM name + 0x00 + time (8 bytes BE, unix ns) → restore point (JSON)
	keyRPByID  = 'i' // i + restore point ID → its r key
	keyState   = 's' // s + caller's key → opaque job state
	keyLock    = 'l' // l + restore point ID + lock ID → until (u64 BE unix s)
	keyVersion = 'f' // f → index format version
)

// indexVersion 2 added the stored bytes' CRC-32C to chunk locations (version
// 1 locations stay valid and are verified with the BLAKE3 hash instead).
// Version 3 is the index as a cache of the record files, with the catalog
// sealed in an encrypted repository. A writer upgrades older indexes when it
// opens them (upgrade.go).
const indexVersion = 3

// PackID names a pack file.
type PackID [16]byte

func (p PackID) String() string { return hex.EncodeToString(p[:]) }

// location says where a blob is stored.
type location struct {
	Pack   PackID
	Offset uint64
	Stored uint32
	Raw    uint32
	Flags  byte
	// CRC is the CRC-32C of the stored bytes, valid when HasCRC: reads
	// check it before decoding instead of recomputing the BLAKE3 ID after
	// (`verify --read-data` still recomputes the ID). Locations written
	// before index version 2 lack it.
	CRC    uint32
	HasCRC bool
}

const (
	locationSizeV1 = 1 + 16 + 8 + 4 + 4 + 1
	locationSize   = locationSizeV1 + 4
)

func chunkKey(id ID) []byte { return append([]byte{keyChunk}, id[:]...) }
func packKey(p PackID) []byte {
	return append([]byte{keyPack}, p[:]...)
}

func encodeLocation(l location) []byte {
	b := make([]byte, 0, locationSize)
	if l.HasCRC {
		b = append(b, 2)
	} else {
		b = append(b, 1)
	}
	b = append(b, l.Pack[:]...)
	b = binary.LittleEndian.AppendUint64(b, l.Offset)
	b = binary.LittleEndian.AppendUint32(b, l.Stored)
	b = binary.LittleEndian.AppendUint32(b, l.Raw)
	b = append(b, l.Flags)
	if l.HasCRC {
		b = binary.LittleEndian.AppendUint32(b, l.CRC)
	}
	return b
}

// decodeLocation parses an index value; garbage is ErrCorrupt.
func decodeLocation(b []byte) (location, error) {
	var l location
	switch {
	case len(b) == locationSizeV1 && b[0] == 1:
	case len(b) == locationSize && b[0] == 2:
		l.CRC, l.HasCRC = binary.LittleEndian.Uint32(b[34:]), true
	default:
		return l, fmt.Errorf("%w: index entry of %d bytes (version %v)", ErrCorrupt, len(b), firstByte(b))
	}
	copy(l.Pack[:], b[1:17])
	l.Offset = binary.LittleEndian.Uint64(b[17:])
	l.Stored = binary.LittleEndian.Uint32(b[25:])
	l.Raw = binary.LittleEndian.Uint32(b[29:])
	l.Flags = b[33]
	if l.Flags&^flagsKnown != 0 || l.Stored == 0 || l.Raw == 0 || l.Raw > 64<<20 || l.Stored > 65<<20 {
		return l, fmt.Errorf("%w: index entry out of range (flags %#x, %d/%d bytes)", ErrCorrupt, l.Flags, l.Stored, l.Raw)
	}
	return l, nil
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}

// packRecord is the index's record of a sealed pack.
type packRecord struct {
	Size    int64 // bytes of the .pack file
	DataLen int64
	Blobs   uint32
	Sealed  int64 // unix seconds
}

func encodePackRecord(r packRecord) []byte {
	b := []byte{1}
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.DataLen))
	b = binary.LittleEndian.AppendUint32(b, r.Blobs)
	return binary.LittleEndian.AppendUint64(b, uint64(r.Sealed))
}

func decodePackRecord(b []byte) (packRecord, error) {
	var r packRecord
	if len(b) != 29 || b[0] != 1 {
		return r, fmt.Errorf("%w: pack record of %d bytes", ErrCorrupt, len(b))
	}
	r.Size = int64(binary.LittleEndian.Uint64(b[1:]))
	r.DataLen = int64(binary.LittleEndian.Uint64(b[9:]))
	r.Blobs = binary.LittleEndian.Uint32(b[17:])
	r.Sealed = int64(binary.LittleEndian.Uint64(b[21:]))
	if r.Size <= 0 || r.DataLen <= 0 || r.DataLen > r.Size {
		return r, fmt.Errorf("%w: pack record sizes %d/%d", ErrCorrupt, r.DataLen, r.Size)
	}
	return r, nil
}

// pebbleLogger sends Pebble's log lines to slog at debug level.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Warn(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}

// noLockFS lets any number of readers open the same read-only checkpoint:
// Pebble takes an exclusive lock even for read-only opens, but a checkpoint
// is never written, and the engine's own lock files guard it.
type noLockFS struct{ vfs.FS }

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func (noLockFS) Lock(string) (io.Closer, error) { return nopCloser{}, nil }

func pebbleOptions(log *slog.Logger, readOnly bool, cacheSize int64) *pebble.Options {
	o := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
		ReadOnly:           readOnly,
		CacheSize:          cacheSize,
		MemTableSize:       16 << 20,
		EventListener:      indexEventListener(log),
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if readOnly {
		o.FS = noLockFS{vfs.Default}
	}
	o.EnsureDefaults()
	return o
}

// getValue reads key from db into a fresh slice; a missing key is ErrNotFound.
func getValue(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// prefixEnd returns the first key after every key that starts with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
