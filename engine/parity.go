package engine

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/reedsolomon"
)

// Parity sidecar layout (<pack>.par, docs/FORMAT.md):
//
//	[header: 64 bytes][data shard sums: d × 4][parity shard sums: p × 4][parity shards: p × shardSize]
//
// Stripe s covers data shards s*k .. s*k+k-1 (missing shards past the end
// count as zeros) and owns parity shards s*m .. s*m+m-1. Keeping a copy of
// the data shard sums here means a damaged pack footer can still be located
// and rebuilt.
const (
	parityMagic      = "AHVFSPR1"
	parityVersion    = 1
	parityHeaderSize = 64
)

type parityInfo struct {
	K, M       int
	ShardSize  int
	DataLen    uint64
	TableOff   uint64 // where the pack's blob table starts
	DataSums   []uint32
	ParitySums []uint32
	Parity     [][]byte // nil when only the header was read
}

func (p *parityInfo) stripes() int {
	return (len(p.DataSums) + p.K - 1) / p.K
}

// buildParity computes the sidecar for a pack's data region.
func buildParity(data []byte, tableOff uint64, dataSums []uint32, shardSize, k, m int) ([]byte, error) {
	return buildParityInto(nil, data, tableOff, dataSums, shardSize, k, m)
}

// buildParityInto is buildParity writing into dst's storage when it is
// large enough (the pack writer reuses one sidecar buffer). The parity is
// encoded in place, in the sidecar's own layout: a sealed pack touches no
// memory beyond its sidecar.
func buildParityInto(dst, data []byte, tableOff uint64, dataSums []uint32, shardSize, k, m int) ([]byte, error) {
	nData := len(dataSums)
	nStripes := (nData + k - 1) / k
	nParity := nStripes * m
	shardsAt := parityHeaderSize + 4*(nData+nParity)
	size := shardsAt + nParity*shardSize
	out := dst[:0]
	if cap(out) < size {
		out = make([]byte, size)
	}
	out = out[:size]
	clear(out[:parityHeaderSize])
	for i, s := range dataSums {
		binary.LittleEndian.PutUint32(out[parityHeaderSize+4*i:], s)
	}
	if m > 0 {
		enc, err := reedsolomon.New(k, m)
		if err != nil {
			return nil, fmt.Errorf("reed-solomon %d+%d: %w", k, m, err)
		}
		parity := out[shardsAt:]
		shards := make([][]byte, k+m)
		pad := make([][]byte, k)
		for s := range nStripes {
			for i := range k {
				shards[i] = dataShard(data, s*k+i, shardSize, &pad[i])
			}
			for j := range m {
				shards[k+j] = parity[(s*m+j)*shardSize : (s*m+j+1)*shardSize]
			}
			if err := enc.Encode(shards); err != nil {
				return nil, fmt.Errorf("reed-solomon encode: %w", err)
			}
		}
		sums := out[parityHeaderSize+4*nData:]
		for i := range nParity {
			binary.LittleEndian.PutUint32(sums[4*i:], crc32.Checksum(parity[i*shardSize:(i+1)*shardSize], crcTable))
		}
	}
	return finishParityHeader(out, k, m, shardSize, uint64(len(data)), tableOff, nData, nParity), nil
}

// dataShard returns shard i of data, zero-padded to shardSize in *pad when
// it is short or past the end.
func dataShard(data []byte, i, shardSize int, pad *[]byte) []byte {
	start := i * shardSize
	if start+shardSize <= len(data) {
		return data[start : start+shardSize]
	}
	if *pad == nil {
		*pad = make([]byte, shardSize)
	}
	p := *pad
	clear(p)
	if start < len(data) {
		copy(p, data[start:])
	}
	return p
}

func finishParityHeader(out []byte, k, m, shardSize int, dataLen, tableOff uint64, nData, nParity int) []byte {
	h := out[:parityHeaderSize]
	copy(h, parityMagic)
	binary.LittleEndian.PutUint32(h[8:], parityVersion)
	binary.LittleEndian.PutUint16(h[12:], uint16(k))
	binary.LittleEndian.PutUint16(h[14:], uint16(m))
	binary.LittleEndian.PutUint32(h[16:], uint32(shardSize))
	binary.LittleEndian.PutUint64(h[20:], dataLen)
	binary.LittleEndian.PutUint32(h[28:], uint32(nData))
	binary.LittleEndian.PutUint32(h[32:], uint32(nParity))
	binary.LittleEndian.PutUint64(h[40:], tableOff)
	sumsEnd := parityHeaderSize + 4*(nData+nParity)
	c := crc32.Update(crc32.Checksum(append(h[:36:36], h[40:48]...), crcTable), crcTable, out[parityHeaderSize:sumsEnd])
	binary.LittleEndian.PutUint32(h[36:], c)
	return out
}

// decodeParity parses a sidecar; with withData it also slices the parity
// shards (sharing b). It checks the header CRC and the sizes.
func decodeParity(b []byte, withData bool) (*parityInfo, error) {
	if len(b) < parityHeaderSize || string(b[:8]) != parityMagic {
		return nil, fmt.Errorf("%w: not a parity file", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != parityVersion {
		return nil, fmt.Errorf("%w: parity version %d", ErrCorrupt, v)
	}
	p := &parityInfo{
		K:         int(binary.LittleEndian.Uint16(b[12:])),
		M:         int(binary.LittleEndian.Uint16(b[14:])),
		ShardSize: int(binary.LittleEndian.Uint32(b[16:])),
		DataLen:   binary.LittleEndian.Uint64(b[20:]),
		TableOff:  binary.LittleEndian.Uint64(b[40:]),
	}
	nData := int(binary.LittleEndian.Uint32(b[28:]))
	nParity := int(binary.LittleEndian.Uint32(b[32:]))
	if p.K == 0 || p.ShardSize == 0 || p.ShardSize > maxShardSize || p.TableOff > p.DataLen || (p.DataLen-p.TableOff)%packEntrySize != 0 || nData != numShards(p.DataLen, uint32(p.ShardSize)) ||
		nParity != (nData+p.K-1)/p.K*p.M || nData > 1<<24 {
		return nil, fmt.Errorf("%w: inconsistent parity header", ErrCorrupt)
	}
	sumsEnd := parityHeaderSize + 4*(nData+nParity)
	if len(b) < sumsEnd {
		return nil, fmt.Errorf("%w: parity file truncated", ErrCorrupt)
	}
	c := crc32.Update(crc32.Checksum(append(b[:36:36], b[40:48]...), crcTable), crcTable, b[parityHeaderSize:sumsEnd])
	if c != binary.LittleEndian.Uint32(b[36:]) {
		return nil, fmt.Errorf("%w: parity header checksum mismatch", ErrCorrupt)
	}
	p.DataSums = make([]uint32, nData)
	for i := range p.DataSums {
		p.DataSums[i] = binary.LittleEndian.Uint32(b[parityHeaderSize+4*i:])
	}
	p.ParitySums = make([]uint32, nParity)
	for i := range p.ParitySums {
		p.ParitySums[i] = binary.LittleEndian.Uint32(b[parityHeaderSize+4*(nData+i):])
	}
	if !withData {
		return p, nil
	}
	if len(b) != sumsEnd+nParity*p.ShardSize {
		return nil, fmt.Errorf("%w: parity file is %d bytes, want %d", ErrCorrupt, len(b), sumsEnd+nParity*p.ShardSize)
	}
	p.Parity = make([][]byte, nParity)
	for i := range p.Parity {
		p.Parity[i] = b[sumsEnd+i*p.ShardSize : sumsEnd+(i+1)*p.ShardSize]
	}
	return p, nil
}

// repairResult says what checking a pack's data region against its parity
// found.
type repairResult struct {
	BadShards   []int // data shards whose sum did not match
	Unrepaired  []int // data shards that could not be rebuilt
	ParityBad   int   // parity shards that were damaged themselves
	Repaired    bool  // data was changed in place
	BadRanges   [][2]uint64
	LostRanges  [][2]uint64
	DataSumsBad bool // the pack footer's sums disagree with the sidecar
}

// checkAndRepair checks data (the pack's data region, dataLen bytes) against
// p's sums, stripe by stripe; when repair is set it rebuilds damaged data
// shards from parity in place. Stripes with more damaged shards than parity
// are left as they are.
func checkAndRepair(data []byte, p *parityInfo, repair bool) (*repairResult, error) {
	if uint64(len(data)) != p.DataLen {
		return nil, fmt.Errorf("%w: data region is %d bytes, parity covers %d", ErrCorrupt, len(data), p.DataLen)
	}
	c, err := newStripeCoder(p.K, p.M, p.ShardSize)
	if err != nil {
		return nil, err
	}
	res := &repairResult{}
	nData := len(p.DataSums)
	region := make([]byte, nData*p.ShardSize) // whole shards, zero-padded
	copy(region, data)
	zero := make([]byte, p.ShardSize)
	for s := range p.stripes() {
		shards := stripeShards(region, s, p.K, p.ShardSize, zero)
		sums := p.DataSums[s*p.K : min((s+1)*p.K, nData)]
		var parity [][]byte
		if p.Parity != nil {
			parity = p.Parity[s*p.M : (s+1)*p.M]
		}
		chk := c.check(shards, sums, parity, p.ParitySums[s*p.M:(s+1)*p.M], nil)
		res.ParityBad += len(chk.badParity)
		for _, i := range chk.badData {
			idx := s*p.K + i
			res.BadShards = append(res.BadShards, idx)
			res.BadRanges = append(res.BadRanges, shardRange(idx, p))
			if chk.lost {
				res.Unrepaired = append(res.Unrepaired, idx)
				res.LostRanges = append(res.LostRanges, shardRange(idx, p))
			} else if repair {
				r := shardRange(idx, p)
				copy(data[r[0]:r[1]], region[r[0]:r[1]])
				res.Repaired = true
			}
		}
	}
	return res, nil
}

// stripeShards returns the k data shards of stripe s of region (whole
// shards); shards past its end are zero (the shared, never written zero).
func stripeShards(region []byte, s, k, shardSize int, zero []byte) [][]byte {
	out := make([][]byte, k)
	for i := range k {
		if start := (s*k + i) * shardSize; start+shardSize <= len(region) {
			out[i] = region[start : start+shardSize]
		} else {
			out[i] = zero
		}
	}
	return out
}

func shardRange(i int, p *parityInfo) [2]uint64 {
	start := uint64(i * p.ShardSize)
	return [2]uint64{start, min(start+uint64(p.ShardSize), p.DataLen)}
}
