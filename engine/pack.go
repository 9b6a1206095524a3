package engine

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Pack file layout (docs/FORMAT.md):
//
//	[blob 0][blob 1]...[blob n-1][table: n × 49 bytes][shard sums: s × 4 bytes][trailer: 64 bytes]
//
// The data region [0, dataLen) — the blobs and the table — is cut into
// shards of shardSize bytes (the last one zero-padded); the parity sidecar
// protects it stripe by stripe (k data shards per stripe). Shard sums are the
// CRC-32C of each padded data shard, so damage can be located to a shard.
const (
	packMagic       = "AHVFSPK1"
	packVersion     = 1
	packTrailerSize = 64
	packEntrySize   = IDSize + 8 + 4 + 4 + 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// packEntry is one blob of a pack.
type packEntry struct {
	ID     ID
	Offset uint64
	Stored uint32 // bytes in the pack
	Raw    uint32 // plaintext bytes
	Flags  byte
	CRC    uint32 // CRC-32C of the stored bytes: kept in the index, not in the pack table
}

// packFooter is the decoded table, shard sums and trailer of a pack.
type packFooter struct {
	Entries   []packEntry
	TableOff  uint64 // where the table starts (the end of the blobs)
	DataLen   uint64 // TableOff + table size: the bytes parity protects
	ShardSize uint32
	K, M      uint16
	ShardSums []uint32
}

func numShards(dataLen uint64, shardSize uint32) int {
	return int((dataLen + uint64(shardSize) - 1) / uint64(shardSize))
}

// appendTable appends the encoded blob table to b.
func appendTable(b []byte, entries []packEntry) []byte {
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, e.Offset)
		b = binary.LittleEndian.AppendUint32(b, e.Stored)
		b = binary.LittleEndian.AppendUint32(b, e.Raw)
		b = append(b, e.Flags)
	}
	return b
}

// shardSums computes the CRC-32C of each zero-padded shard of data.
func shardSums(data []byte, shardSize int) []uint32 {
	n := (len(data) + shardSize - 1) / shardSize
	sums := make([]uint32, n)
	var pad []byte
	for i := range n {
		end := min((i+1)*shardSize, len(data))
		s := data[i*shardSize : end]
		c := crc32.Update(0, crcTable, s)
		if len(s) < shardSize {
			if pad == nil {
				pad = make([]byte, shardSize)
			}
			c = crc32.Update(c, crcTable, pad[:shardSize-len(s)])
		}
		sums[i] = c
	}
	return sums
}

// appendFooterTail appends the shard sums and the trailer for a data region
// of dataLen bytes whose table starts at tableOff.
func appendFooterTail(b []byte, f *packFooter) []byte {
	start := len(b)
	for _, s := range f.ShardSums {
		b = binary.LittleEndian.AppendUint32(b, s)
	}
	tr := make([]byte, packTrailerSize)
	copy(tr, packMagic)
	binary.LittleEndian.PutUint32(tr[8:], packVersion)
	binary.LittleEndian.PutUint32(tr[12:], uint32(len(f.Entries)))
	binary.LittleEndian.PutUint64(tr[16:], f.TableOff)
	binary.LittleEndian.PutUint64(tr[24:], f.DataLen)
	binary.LittleEndian.PutUint32(tr[32:], f.ShardSize)
	binary.LittleEndian.PutUint16(tr[36:], f.K)
	binary.LittleEndian.PutUint16(tr[38:], f.M)
	binary.LittleEndian.PutUint32(tr[40:], uint32(len(f.ShardSums)))
	b = append(b, tr...)
	// The CRC covers the shard sums and the trailer up to the CRC field;
	// the table is covered by the shard sums.
	crc := crc32.Checksum(b[start:len(b)-packTrailerSize+44], crcTable)
	binary.LittleEndian.PutUint32(b[len(b)-packTrailerSize+44:], crc)
	return b
}

// decodeTrailer parses the last packTrailerSize bytes of a pack of fileSize
// bytes and returns the footer without entries and sums, and where the sums
// start.
func decodeTrailer(tr []byte, fileSize int64) (*packFooter, int64, error) {
	if len(tr) != packTrailerSize {
		return nil, 0, fmt.Errorf("%w: pack trailer is %d bytes", ErrCorrupt, len(tr))
	}
	if string(tr[:8]) != packMagic {
		return nil, 0, fmt.Errorf("%w: no pack trailer (bad magic; truncated or not a pack)", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(tr[8:]); v != packVersion {
		return nil, 0, fmt.Errorf("%w: pack version %d, want %d", ErrCorrupt, v, packVersion)
	}
	f := &packFooter{
		TableOff:  binary.LittleEndian.Uint64(tr[16:]),
		DataLen:   binary.LittleEndian.Uint64(tr[24:]),
		ShardSize: binary.LittleEndian.Uint32(tr[32:]),
		K:         binary.LittleEndian.Uint16(tr[36:]),
		M:         binary.LittleEndian.Uint16(tr[38:]),
	}
	n := uint64(binary.LittleEndian.Uint32(tr[12:]))
	nSums := uint64(binary.LittleEndian.Uint32(tr[40:]))
	if f.ShardSize == 0 || f.K == 0 || f.TableOff > f.DataLen ||
		f.DataLen-f.TableOff != n*packEntrySize ||
		nSums != uint64(numShards(f.DataLen, f.ShardSize)) ||
		f.DataLen+nSums*4+packTrailerSize != uint64(fileSize) {
		return nil, 0, fmt.Errorf("%w: inconsistent pack trailer (entries %d, table at %d, data %d, shards %d, file %d)",
			ErrCorrupt, n, f.TableOff, f.DataLen, nSums, fileSize)
	}
	return f, int64(f.DataLen), nil
}

// decodeFooter parses the region [TableOff, end of file) of a pack: the
// table, the shard sums and the trailer. It checks the trailer CRC and every
// entry's bounds; it does not check the shard sums against the data.
func decodeFooter(tail []byte, fileSize int64) (*packFooter, error) {
	if len(tail) < packTrailerSize {
		return nil, fmt.Errorf("%w: pack shorter than its trailer", ErrCorrupt)
	}
	f, sumsOff, err := decodeTrailer(tail[len(tail)-packTrailerSize:], fileSize)
	if err != nil {
		return nil, err
	}
	tailOff := fileSize - int64(len(tail))
	if tailOff > int64(f.TableOff) {
		return nil, fmt.Errorf("%w: pack footer region too short", ErrCorrupt)
	}
	sumsStart := sumsOff - tailOff
	crcRegion := tail[sumsStart : len(tail)-packTrailerSize+44]
	if crc32.Checksum(crcRegion, crcTable) != binary.LittleEndian.Uint32(tail[len(tail)-packTrailerSize+44:]) {
		return nil, fmt.Errorf("%w: pack footer checksum mismatch", ErrCorrupt)
	}
	sums := tail[sumsStart : len(tail)-packTrailerSize]
	f.ShardSums = make([]uint32, len(sums)/4)
	for i := range f.ShardSums {
		f.ShardSums[i] = binary.LittleEndian.Uint32(sums[i*4:])
	}
	table := tail[int64(f.TableOff)-tailOff : sumsStart]
	n := len(table) / packEntrySize
	f.Entries = make([]packEntry, n)
	var next uint64
	for i := range n {
		b := table[i*packEntrySize:]
		e := &f.Entries[i]
		copy(e.ID[:], b[:IDSize])
		e.Offset = binary.LittleEndian.Uint64(b[32:])
		e.Stored = binary.LittleEndian.Uint32(b[40:])
		e.Raw = binary.LittleEndian.Uint32(b[44:])
		e.Flags = b[48]
		if e.Offset != next || e.Offset+uint64(e.Stored) > f.TableOff || e.Flags&^flagsKnown != 0 {
			return nil, fmt.Errorf("%w: pack entry %d out of place (offset %d, %d bytes, flags %#x)", ErrCorrupt, i, e.Offset, e.Stored, e.Flags)
		}
		next = e.Offset + uint64(e.Stored)
	}
	if next != f.TableOff {
		return nil, fmt.Errorf("%w: pack blobs end at %d, table starts at %d", ErrCorrupt, next, f.TableOff)
	}
	return f, nil
}

// sealPack appends the table, shard sums and trailer to body (the blobs) and
// returns the whole pack and its footer.
func sealPack(body []byte, entries []packEntry, shardSize, k, m int) ([]byte, *packFooter) {
	f := &packFooter{Entries: entries, TableOff: uint64(len(body)), ShardSize: uint32(shardSize), K: uint16(k), M: uint16(m)}
	body = appendTable(body, entries)
	f.DataLen = uint64(len(body))
	f.ShardSums = shardSums(body, shardSize)
	return appendFooterTail(body, f), f
}

// maxShardSize bounds the shard size a pack trailer may claim (the largest
// a repository can be configured with).
const maxShardSize = 16 << 20

// decodePack decodes a whole pack file held in memory: its trailer, its
// table (which must account for every byte before it) and its shard sums,
// which it checks against the data. It returns the data shards whose sum
// does not match when they hold only blobs; damage to the trailer, the sums
// or a shard holding part of the table is ErrCorrupt, since the table can
// then not be trusted.
func decodePack(data []byte) (*packFooter, []int, error) {
	f, err := decodePackFooter(data)
	if err != nil {
		return nil, nil, err
	}
	var bad []int
	for i, s := range shardSums(data[:f.DataLen], int(f.ShardSize)) {
		if s == f.ShardSums[i] {
			continue
		}
		if uint64(i+1)*uint64(f.ShardSize) > f.TableOff {
			return nil, nil, fmt.Errorf("%w: pack shard %d, which holds part of the blob table, fails its checksum", ErrCorrupt, i)
		}
		bad = append(bad, i)
	}
	return f, bad, nil
}

// decodePackFooter decodes the trailer, table and shard sums of a whole
// pack held in memory, without checking the sums against the data.
func decodePackFooter(data []byte) (*packFooter, error) {
	size := int64(len(data))
	if size < packTrailerSize {
		return nil, fmt.Errorf("%w: pack of %d bytes is shorter than its trailer", ErrCorrupt, size)
	}
	tr, _, err := decodeTrailer(data[size-packTrailerSize:], size)
	if err != nil {
		return nil, err
	}
	if tr.ShardSize > maxShardSize {
		return nil, fmt.Errorf("%w: pack shard size %d", ErrCorrupt, tr.ShardSize)
	}
	return decodeFooter(data[tr.TableOff:], size)
}

// packFromRegion rebuilds a whole pack from its data region (blobs and
// table, as repaired from parity) whose table starts at tableOff: it
// recomputes the shard sums and the trailer, and decodes the result.
func packFromRegion(region []byte, tableOff uint64, shardSize, k, m int) ([]byte, *packFooter, error) {
	if tableOff > uint64(len(region)) || (uint64(len(region))-tableOff)%packEntrySize != 0 {
		return nil, nil, fmt.Errorf("%w: blob table at %d does not fit a data region of %d bytes", ErrCorrupt, tableOff, len(region))
	}
	f := &packFooter{TableOff: tableOff, DataLen: uint64(len(region)), ShardSize: uint32(shardSize),
		K: uint16(k), M: uint16(m), ShardSums: shardSums(region, shardSize)}
	f.Entries = make([]packEntry, (uint64(len(region))-tableOff)/packEntrySize)
	full := appendFooterTail(append([]byte(nil), region...), f)
	footer, err := decodeFooter(full[tableOff:], int64(len(full)))
	if err != nil {
		return nil, nil, err
	}
	return full, footer, nil
}
