package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/reedsolomon"
)

// A pack's data region is protected stripe by stripe (docs/FORMAT.md,
// "Parity sidecar"): stripe s is data shards s·k … s·k+k−1 and parity
// shards s·m … s·m+m−1. Damage is found, rebuilt and reported per stripe,
// so a stripe beyond parity does not keep the others from being repaired.

// stripeCoder checks and rebuilds the stripes of one geometry.
type stripeCoder struct {
	k, m, shardSize int
	enc             reedsolomon.Encoder // nil when m is 0
}

func newStripeCoder(k, m, shardSize int) (*stripeCoder, error) {
	c := &stripeCoder{k: k, m: m, shardSize: shardSize}
	if m > 0 {
		enc, err := reedsolomon.New(k, m)
		if err != nil {
			return nil, fmt.Errorf("reed-solomon %d+%d: %w", k, m, err)
		}
		c.enc = enc
	}
	return c, nil
}

// stripeCheck is what checking one stripe found.
type stripeCheck struct {
	badData   []int // data shards (0..k-1 within the stripe) that failed their sums
	badParity []int // parity shards (0..m-1) that are damaged
	rebuilt   bool  // badData were rebuilt in place and match their sums
	lost      bool  // badData could not be rebuilt: more damage than parity
}

func (s *stripeCheck) damaged() bool { return len(s.badData) > 0 || len(s.badParity) > 0 }

// maxRebuildTries bounds the choices of parity shards a rebuild tries when
// the first choice does not give back data that matches its sums (a parity
// shard whose sum was rewritten with it).
const maxRebuildTries = 32

// check checks one stripe. data holds its k data shards, shardSize bytes
// each (shards past the pack's end are zeros); sums are the sums of the
// first len(sums) of them (the others are padding and always intact), or
// nil when no sums can be trusted. parity holds the m stored parity shards
// (nil: not available) and paritySums their sums (nil: unknown).
//
// Damaged data shards are rebuilt in place when parity allows; every
// rebuild is checked against the sums, and other choices of parity shards
// are tried when it does not match. When out is not nil (m shards), it
// receives the parity recomputed from the (rebuilt) data, and every stored
// parity shard that differs from it is reported damaged, whatever its sum
// says: a sum rewritten together with its shard is caught too. For a stripe
// that stays damaged, out is left as it was.
func (c *stripeCoder) check(data [][]byte, sums []uint32, parity [][]byte, paritySums []uint32, out [][]byte) stripeCheck {
	var res stripeCheck
	for i := range min(len(sums), c.k) {
		if crc32.Checksum(data[i], crcTable) != sums[i] {
			res.badData = append(res.badData, i)
		}
	}
	var usable []int // parity shards whose sums match (or are unknown)
	for j := range c.m {
		if j >= len(parity) || parity[j] == nil {
			continue
		}
		if paritySums != nil && crc32.Checksum(parity[j], crcTable) != paritySums[j] {
			res.badParity = append(res.badParity, j)
			continue
		}
		usable = append(usable, j)
	}
	if len(res.badData) > 0 {
		res.rebuilt = c.rebuild(data, sums, parity, res.badData, usable)
		res.lost = !res.rebuilt
	}
	if out != nil && c.enc != nil && !res.lost {
		shards := make([][]byte, 0, c.k+c.m)
		shards = append(append(shards, data...), out...)
		if err := c.enc.Encode(shards); err == nil {
			for j := range c.m {
				if j < len(parity) && parity[j] != nil && !bytes.Equal(parity[j], out[j]) && !slices.Contains(res.badParity, j) {
					res.badParity = append(res.badParity, j)
				}
			}
			slices.Sort(res.badParity)
		}
	}
	return res
}

// rebuild reconstructs the data shards bad from the other data shards and
// a choice of len(bad) usable parity shards, trying other choices when the
// result does not match the sums; it copies a matching result into data.
func (c *stripeCoder) rebuild(data [][]byte, sums []uint32, parity [][]byte, bad, usable []int) bool {
	if c.enc == nil || len(usable) < len(bad) {
		return false
	}
	shards := make([][]byte, c.k+c.m)
	ok := false
	tries := 0
	combinations(len(usable), len(bad), func(pick []int) bool {
		if tries++; tries > maxRebuildTries {
			return false
		}
		clear(shards)
		for i := range c.k {
			if !slices.Contains(bad, i) {
				shards[i] = data[i]
			}
		}
		for _, p := range pick {
			shards[c.k+usable[p]] = parity[usable[p]]
		}
		if err := c.enc.ReconstructData(shards); err != nil {
			return true
		}
		for _, i := range bad {
			if crc32.Checksum(shards[i], crcTable) != sums[i] {
				return true
			}
		}
		for _, i := range bad {
			copy(data[i], shards[i])
		}
		ok = true
		return false
	})
	return ok
}

// combinations calls fn with each choice of k of 0..n-1 in increasing
// order until fn returns false.
func combinations(n, k int, fn func([]int) bool) {
	pick := make([]int, k)
	var rec func(start, depth int) bool
	rec = func(start, depth int) bool {
		if depth == k {
			return fn(pick)
		}
		for i := start; i <= n-(k-depth); i++ {
			pick[depth] = i
			if !rec(i+1, depth+1) {
				return false
			}
		}
		return true
	}
	rec(0, 0)
}

// decodePackSums reads the shard sums and the trailer of a whole pack held
// in memory, checking the trailer and its CRC but not the table.
func decodePackSums(data []byte) (*packFooter, error) {
	size := int64(len(data))
	if size < packTrailerSize {
		return nil, fmt.Errorf("%w: pack of %d bytes is shorter than its trailer", ErrCorrupt, size)
	}
	f, sumsOff, err := decodeTrailer(data[size-packTrailerSize:], size)
	if err != nil {
		return nil, err
	}
	if f.ShardSize > maxShardSize {
		return nil, fmt.Errorf("%w: pack shard size %d", ErrCorrupt, f.ShardSize)
	}
	crcAt := size - packTrailerSize + 44
	if crc32.Checksum(data[sumsOff:crcAt], crcTable) != binary.LittleEndian.Uint32(data[crcAt:]) {
		return nil, fmt.Errorf("%w: pack footer checksum mismatch", ErrCorrupt)
	}
	sums := data[sumsOff : size-packTrailerSize]
	f.ShardSums = make([]uint32, len(sums)/4)
	for i := range f.ShardSums {
		f.ShardSums[i] = binary.LittleEndian.Uint32(sums[i*4:])
	}
	return f, nil
}

// packWithSums builds a whole pack from its data region (blobs and table)
// with the given shard sums, which are those the data should have: a shard
// that parity could not rebuild keeps its original sum, so it is still
// found damaged.
func packWithSums(region []byte, tableOff uint64, shardSize, k, m int, sums []uint32) []byte {
	f := &packFooter{TableOff: tableOff, DataLen: uint64(len(region)), ShardSize: uint32(shardSize),
		K: uint16(k), M: uint16(m), ShardSums: sums}
	f.Entries = make([]packEntry, (uint64(len(region))-tableOff)/packEntrySize)
	out := make([]byte, 0, len(region)+4*len(sums)+packTrailerSize)
	return appendFooterTail(append(out, region...), f)
}

// sidecarGeometry is where the parts of a sidecar lie.
type sidecarGeometry struct {
	nData, nParity  int
	sumsEnd, size   int
	shardSize, k, m int
}

func newSidecarGeometry(dataLen uint64, shardSize, k, m int) sidecarGeometry {
	nData := numShards(dataLen, uint32(shardSize))
	nParity := (nData + k - 1) / k * m
	g := sidecarGeometry{nData: nData, nParity: nParity, shardSize: shardSize, k: k, m: m}
	g.sumsEnd = parityHeaderSize + 4*(nData+nParity)
	g.size = g.sumsEnd + nParity*shardSize
	return g
}

// paritySidecar builds a sidecar from its parts: the data shard sums, the
// parity shard sums and the parity shards back to back.
func paritySidecar(g sidecarGeometry, dataLen, tableOff uint64, dataSums, paritySums []uint32, parity []byte) []byte {
	out := make([]byte, parityHeaderSize, g.size)
	for _, s := range dataSums {
		out = binary.LittleEndian.AppendUint32(out, s)
	}
	for _, s := range paritySums {
		out = binary.LittleEndian.AppendUint32(out, s)
	}
	out = append(out, parity...)
	return finishParityHeader(out, g.k, g.m, g.shardSize, dataLen, tableOff, g.nData, g.nParity)
}

// readParityHeader reads a sidecar's header and sums from f.
func readParityHeader(f interface {
	ReadAt([]byte, int64) (int, error)
}) (*parityInfo, int64, error) {
	h := make([]byte, parityHeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, 0, fmt.Errorf("read parity header: %w", err)
	}
	nData := int64(binary.LittleEndian.Uint32(h[28:]))
	nParity := int64(binary.LittleEndian.Uint32(h[32:]))
	if nData > 1<<24 || nParity > 1<<24 {
		return nil, 0, fmt.Errorf("%w: inconsistent parity header", ErrCorrupt)
	}
	sumsEnd := parityHeaderSize + 4*(nData+nParity)
	b := make([]byte, sumsEnd)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, 0, fmt.Errorf("read parity sums: %w", err)
	}
	p, err := decodeParity(b, false)
	if err != nil {
		return nil, 0, err
	}
	return p, sumsEnd, nil
}

// encode computes the parity of a stripe's data shards into out.
func (c *stripeCoder) encode(data, out [][]byte) error {
	if c.enc == nil {
		return nil
	}
	shards := make([][]byte, 0, c.k+c.m)
	return c.enc.Encode(append(append(shards, data...), out...))
}

// loadDamagedBlob is loadBlob for a blob whose stored bytes failed their
// check or could not be read (cause): it rebuilds them in memory from the
// parity of the stripes they lie in and logs a warning. It never writes:
// `verify --repair` rewrites the pack. Damage beyond parity returns cause,
// which wraps ErrCorrupt.
func (r *Repository) loadDamagedBlob(ctx context.Context, id ID, l location, dst []byte, cause error) ([]byte, location, error) {
	out, stripes, err := r.rebuildBlob(ctx, id, l, dst)
	if err != nil {
		return nil, l, fmt.Errorf("%w (parity cannot rebuild it: %v)", cause, err)
	}
	r.log.Warn(fmt.Sprintf("pack %s is damaged: chunk %s failed its check and was repaired in memory from parity (stripe %s); the file is unchanged: run 'ahvfs verify --repair'",
		l.Pack, id.Short(), stripes), "err", cause)
	return out, l, nil
}

// rebuildBlob reads the stripes holding the blob at l, with their parity,
// rebuilds their damaged data shards in memory, and decodes the blob from
// the result. It also returns the stripes, for the log.
func (r *Repository) rebuildBlob(ctx context.Context, id ID, l location, dst []byte) ([]byte, string, error) {
	pf, err := r.be.Open(ctx, parityName(l.Pack))
	if err != nil {
		return nil, "", fmt.Errorf("no parity sidecar: %w", err)
	}
	defer pf.Close()
	par, sumsEnd, err := readParityHeader(pf)
	if err != nil {
		return nil, "", fmt.Errorf("parity sidecar: %w", err)
	}
	end := l.Offset + uint64(l.Stored)
	if l.Stored == 0 || end > par.TableOff {
		return nil, "", fmt.Errorf("%w: the blob lies outside the blobs the parity sidecar describes", ErrCorrupt)
	}
	if par.ShardSize > maxShardSize {
		return nil, "", fmt.Errorf("%w: parity shard size %d", ErrCorrupt, par.ShardSize)
	}
	c, err := newStripeCoder(par.K, par.M, par.ShardSize)
	if err != nil {
		return nil, "", err
	}
	f, release, err := r.files.get(ctx, l.Pack)
	if err != nil {
		return nil, "", err
	}
	defer release()
	k, m, ss := uint64(par.K), uint64(par.M), uint64(par.ShardSize)
	stripeBytes := k * ss
	s0, s1 := l.Offset/stripeBytes, (end-1)/stripeBytes
	nData := uint64(len(par.DataSums))
	// The stripes' data shards, from the first shard of s0 to the last
	// one of s1 that exists, read whole (zero-padded at the pack's end).
	lo, hi := s0*k, min((s1+1)*k, nData)
	buf := make([]byte, (hi-lo)*ss)
	for i := lo; i < hi; i++ {
		sh := buf[(i-lo)*ss : (i-lo+1)*ss]
		n := min(ss, par.DataLen-i*ss)
		if _, err := f.ReadAt(sh[:n], int64(i*ss)); err != nil {
			clear(sh) // unreadable: its sum will not match
		}
	}
	zero := make([]byte, ss)
	for s := s0; s <= s1; s++ {
		data := stripeShards(buf, int(s-s0), int(k), int(ss), zero)
		sums := par.DataSums[s*k : min((s+1)*k, nData)]
		bad := false
		for i, want := range sums {
			if crc32.Checksum(data[i], crcTable) != want {
				bad = true
			}
		}
		if !bad {
			continue
		}
		parity := make([][]byte, m)
		for j := range m {
			p := make([]byte, ss)
			if _, err := pf.ReadAt(p, int64(uint64(sumsEnd)+(s*m+j)*ss)); err == nil {
				parity[j] = p
			}
		}
		if chk := c.check(data, sums, parity, par.ParitySums[s*m:(s+1)*m], nil); chk.lost {
			return nil, "", fmt.Errorf("%w: stripe %d has more damaged shards than its %d parity shards", ErrCorrupt, s, m)
		}
	}
	stored := buf[l.Offset-lo*ss : end-lo*ss]
	out, err := r.codec.decodeAt(dst, stored, l, id, r.hash)
	if err != nil {
		return nil, "", fmt.Errorf("rebuilt from parity, still: %w", err)
	}
	stripes := fmt.Sprint(s0)
	if s1 > s0 {
		stripes = fmt.Sprintf("%d-%d", s0, s1)
	}
	return out, stripes, nil
}
