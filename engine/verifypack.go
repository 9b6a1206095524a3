package engine

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

type packInfo struct {
	id  PackID
	rec packRecord
}

func listPacks(db pebble.Reader) ([]packInfo, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyPack}, UpperBound: []byte{keyPack + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []packInfo
	for it.First(); it.Valid(); it.Next() {
		var p packInfo
		if len(it.Key()) != 17 {
			return nil, fmt.Errorf("%w: pack key of %d bytes", ErrCorrupt, len(it.Key()))
		}
		copy(p.id[:], it.Key()[1:])
		rec, err := decodePackRecord(it.Value())
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", p.id, err)
		}
		p.rec = rec
		out = append(out, p)
	}
	return out, it.Error()
}

// packResult is what verifying one pack found.
type packResult struct {
	dmg        *PackDamage // nil: intact
	blobs      int
	lost       []ID // indexed blobs of the pack that parity cannot rebuild
	repairable []ID // indexed blobs damaged on disk that parity can rebuild
}

// verifyPackStructure checks a pack without reading its data: its size,
// its trailer, and that its sidecar exists.
func (r *Repository) verifyPackStructure(ctx context.Context, id PackID, rec packRecord) *packResult {
	dmg := &PackDamage{Pack: id.String(), State: DamageUnchecked}
	f, err := r.be.Open(ctx, packName(id))
	if err != nil {
		return r.packLost(id, fmt.Sprintf("pack file missing: %v", err))
	}
	defer f.Close()
	if f.Size() != rec.Size {
		dmg.Problem = fmt.Sprintf("pack is %d bytes, the index says %d (run 'ahvfs verify --read-data')", f.Size(), rec.Size)
		return &packResult{dmg: dmg}
	}
	tail := make([]byte, packTrailerSize)
	if _, err := f.ReadAt(tail, rec.Size-packTrailerSize); err != nil {
		dmg.Problem = fmt.Sprintf("read pack trailer: %v", err)
		return &packResult{dmg: dmg}
	}
	if _, _, err := decodeTrailer(tail, rec.Size); err != nil {
		dmg.Problem = err.Error()
		return &packResult{dmg: dmg}
	}
	if _, err := r.be.Stat(ctx, parityName(id)); err != nil {
		dmg.Problem = "parity sidecar missing"
		if !errors.Is(err, backend.ErrNotExist) {
			dmg.Problem = fmt.Sprintf("parity sidecar: %v", err)
		}
		dmg.ParityDamaged = true
		return &packResult{dmg: dmg}
	}
	return &packResult{}
}

// packLost reports a pack whose file cannot be read at all: every blob the
// index places in it is lost.
func (r *Repository) packLost(id PackID, problem string) *packResult {
	entries, err := r.blobsOfPack(id)
	if err != nil {
		problem += fmt.Sprintf("; list its blobs: %v", err)
	}
	res := &packResult{blobs: len(entries)}
	for _, e := range entries {
		res.lost = append(res.lost, e.ID)
	}
	res.dmg = &PackDamage{Pack: id.String(), Problem: problem, State: DamageBeyondParity,
		DamagedBlobs: len(entries), LostBlobs: len(entries)}
	return res
}

const repairableText = "repairable from parity"

// verifyPackData reads a pack and its parity sidecar in full and checks
// every byte the repair could start from (docs/FORMAT.md, "Parity
// sidecar"):
//
//   - every data shard against its sum (the sidecar's copy, or the pack's
//     when the sidecar's header is damaged); damaged shards are rebuilt in
//     memory, stripe by stripe, where parity allows;
//   - every stripe's parity, recomputed from its (rebuilt) data, against
//     the sidecar, and every parity shard against its sum;
//   - the pack's footer and the sidecar against those rebuilt from the
//     data, byte for byte (headers, sums, reserved bytes);
//   - every blob against its ID.
//
// With repair it stores the rebuilt pack and sidecar (each Put atomic) when
// they differ from the stored ones, and nothing when the sidecar exists but
// cannot be read (an I/O error, not damage: it may hold the parity that
// repairs the pack); stripes beyond parity keep their damaged bytes and
// their original sums, so they are still found damaged, and every blob
// outside them stays readable. Only ctx ending is an error.
func (r *Repository) verifyPackData(ctx context.Context, id PackID, rec packRecord, repair bool) (*packResult, error) {
	data, err := backend.Get(ctx, r.be, packName(id))
	if errors.Is(err, backend.ErrNotExist) {
		return r.packLost(id, fmt.Sprintf("pack file missing: %v", err)), nil
	} else if err != nil {
		return r.packLost(id, fmt.Sprintf("pack file unreadable: %v", err)), nil
	}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	parityProblem := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("parity of pack %s: ", id)+fmt.Sprintf(format, args...))
	}

	// Geometry. The index's record is authoritative for the data region
	// and the table; the shard size and k+m come from the pack's trailer,
	// else the sidecar's header, else the configuration.
	dataLen := uint64(rec.DataLen)
	tableBytes := uint64(rec.Blobs) * packEntrySize
	// A pack's blobs pass its pack size by at most one blob, and each is at
	// least a byte.
	if tableBytes > dataLen || dataLen-tableBytes > uint64(r.cfg.PackSize)+uint64(maxEncodedLen(r.cfg.ChunkSize)) ||
		uint64(rec.Blobs) > dataLen-tableBytes {
		return r.packLost(id, fmt.Sprintf("the index's pack record is implausible (%d data bytes, %d blobs)", rec.DataLen, rec.Blobs)), nil
	}
	tableOff := dataLen - tableBytes
	pf, pfErr := decodePackSums(data)
	if pfErr == nil && (pf.DataLen != dataLen || pf.TableOff != tableOff) {
		pfErr = fmt.Errorf("the pack trailer describes %d data bytes and its table at %d, the index %d and %d", pf.DataLen, pf.TableOff, dataLen, tableOff)
	}
	shardSize, k, m := r.cfg.Parity.ShardSize, r.cfg.Parity.Data, r.cfg.Parity.Parity
	if pfErr == nil {
		shardSize, k, m = int(pf.ShardSize), int(pf.K), int(pf.M)
	}
	parBytes, parReadErr := backend.Get(ctx, r.be, parityName(id))
	var par *parityInfo
	parErr := parReadErr
	if parErr == nil {
		par, parErr = decodeParity(parBytes, false)
	}
	if parErr == nil && (par.DataLen != dataLen || par.TableOff != tableOff ||
		(pfErr == nil && (par.K != k || par.M != m || par.ShardSize != shardSize))) {
		parErr = fmt.Errorf("the header describes %d data bytes, table at %d, shards %d+%d of %d bytes; the pack %d, %d, %d+%d of %d",
			par.DataLen, par.TableOff, par.K, par.M, par.ShardSize, dataLen, tableOff, k, m, shardSize)
	}
	if pfErr != nil && parErr == nil {
		shardSize, k, m = par.ShardSize, par.K, par.M
	}
	g := newSidecarGeometry(dataLen, shardSize, k, m)
	coder, err := newStripeCoder(k, m, shardSize)
	if err != nil {
		return r.packLost(id, err.Error()), nil
	}

	// The data shard sums: the sidecar's copy, else the pack's.
	var sums []uint32
	switch {
	case parErr == nil:
		sums = par.DataSums
	case pfErr == nil:
		sums = pf.ShardSums
	}
	// The parity shards, where the sidecar holds them: by its header, or,
	// when that is damaged, where the geometry puts them if the size fits.
	var parity [][]byte
	var paritySums []uint32
	if parReadErr == nil && (parErr == nil || len(parBytes) == g.size) {
		parity = make([][]byte, g.nParity)
		for i := range parity {
			if start := g.sumsEnd + i*shardSize; start+shardSize <= len(parBytes) {
				parity[i] = parBytes[start : start+shardSize]
			}
		}
		if parErr == nil {
			paritySums = par.ParitySums
		}
	}

	// Check and rebuild every stripe; compute the parity the sidecar
	// should hold.
	nStripes := (g.nData + k - 1) / k
	stripeBytes := k * shardSize
	region := make([]byte, g.nData*shardSize) // whole shards, zero-padded
	copy(region, data[:min(uint64(len(data)), dataLen)])
	zero := make([]byte, shardSize)
	wantParity := make([]byte, g.nParity*shardSize)
	wantParitySums := make([]uint32, g.nParity)
	shard := func(b []byte, i int) []byte { return b[i*shardSize : (i+1)*shardSize] }
	var stripes []StripeDamage
	checks := make([]stripeCheck, nStripes)
	rebuiltShard := map[int]bool{} // data shards rebuilt in memory
	lostShard := map[int]bool{}    // data shards beyond parity
	stripeOf := map[int]int{}      // stripe → its index in stripes
	anyLost, fixable, parityDamaged := false, false, false
	for s := range nStripes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dataSh := stripeShards(region, s, k, shardSize, zero)
		var sSums, pSums []uint32
		if sums != nil {
			sSums = sums[s*k : min((s+1)*k, g.nData)]
		}
		var parSh [][]byte
		if parity != nil {
			parSh = parity[s*m : (s+1)*m]
		}
		if paritySums != nil {
			pSums = paritySums[s*m : (s+1)*m]
		}
		out := make([][]byte, m)
		for j := range m {
			out[j] = shard(wantParity, s*m+j)
		}
		chk := coder.check(dataSh, sSums, parSh, pSums, out)
		checks[s] = chk
		if chk.lost {
			// Keep what the sidecar holds for a stripe that stays damaged.
			if err := coder.encode(dataSh, out); err != nil {
				return nil, err
			}
			for j := range m {
				if parSh != nil && parSh[j] != nil {
					copy(out[j], parSh[j])
				}
			}
		}
		for j := range m {
			wantParitySums[s*m+j] = crc32.Checksum(out[j], crcTable)
			if chk.lost && pSums != nil && parSh != nil && parSh[j] != nil {
				wantParitySums[s*m+j] = pSums[j]
			}
		}
		if !chk.damaged() {
			continue
		}
		sd := StripeDamage{Stripe: s, Offset: int64(s * stripeBytes), ParityShards: chk.badParity}
		sd.Length = int64(min(uint64((s+1)*stripeBytes), dataLen)) - sd.Offset
		for _, i := range chk.badData {
			sd.DataShards = append(sd.DataShards, s*k+i)
			if chk.lost {
				lostShard[s*k+i] = true
			} else {
				rebuiltShard[s*k+i] = true
			}
		}
		switch {
		case chk.lost:
			anyLost = true
			sd.State = DamageBeyondParity
			usable := 0
			for j := range parSh {
				if parSh[j] != nil && !slices.Contains(chk.badParity, j) {
					usable++
				}
			}
			problem("stripe %d: data shard(s) %s damaged, beyond parity (%d damaged data shards, %d usable parity shards)",
				s, joinInts(sd.DataShards), len(chk.badData), usable)
		default:
			fixable = true
			sd.State = DamageRepairable
			if len(chk.badData) > 0 {
				problem("stripe %d: data shard(s) %s damaged, %s", s, joinInts(sd.DataShards), repairableText)
			}
		}
		for _, j := range chk.badParity {
			parityProblem("stripe %d parity shard %d damaged", s, j)
			parityDamaged = true
			// A stripe beyond parity keeps its parity shards as they are.
			fixable = fixable || !chk.lost
		}
		stripeOf[s] = len(stripes)
		stripes = append(stripes, sd)
	}
	badShards := len(rebuiltShard) + len(lostShard)

	// The pack as it should be: the (rebuilt) data region, the sums it
	// should have (the original ones for shards beyond parity), the trailer.
	trueSums := sums
	if trueSums == nil {
		trueSums = shardSums(region[:dataLen], shardSize)
		problem("no shard sums to check the data against (the pack footer and the sidecar header are both damaged)")
	}
	full := packWithSums(region[:dataLen], tableOff, shardSize, k, m, trueSums)
	if int64(len(data)) != rec.Size {
		problem("pack is %d bytes, the index says %d", len(data), rec.Size)
		fixable = true
	}
	if len(data) < int(dataLen) || !bytes.Equal(data[dataLen:], full[dataLen:]) {
		if pfErr != nil {
			problem("pack footer damaged (shard sums and trailer): %v", pfErr)
		} else {
			problem("pack footer damaged (shard sums and trailer)")
		}
		fixable = true
	}

	// The blobs: from the table when no shard holding it is beyond
	// parity, else from the index.
	tableLost := false
	for i := int(tableOff) / shardSize; i < g.nData; i++ {
		tableLost = tableLost || lostShard[i]
	}
	var entries []packEntry
	if !tableLost {
		f, err := decodeFooter(full[tableOff:], int64(len(full)))
		if err != nil {
			problem("blob table unreadable: %v", err)
		} else {
			entries = f.Entries
		}
	}
	fromIndex := entries == nil
	if fromIndex {
		if entries, err = r.blobsOfPack(id); err != nil {
			problem("list the pack's blobs in the index: %v", err)
		}
	}
	var lost, repairable []ID
	var buf []byte
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := e.Offset + uint64(e.Stored)
		ok := end <= tableOff
		if ok {
			var err error
			buf, err = r.codec.decode(buf[:0], region[e.Offset:end], e.Flags, int(e.Raw), e.ID, r.hash)
			ok = err == nil
		}
		// Which damaged shards hold bytes of this blob that are damaged:
		// those rebuilt that changed, and those beyond parity if the blob
		// fails its ID.
		first, last := int(e.Offset)/shardSize, int(max(end, e.Offset+1)-1)/shardSize
		rebuilt, counted := false, -1
		for i := first; i <= last && i < g.nData; i++ {
			hit := lostShard[i] && !ok
			if rebuiltShard[i] {
				lo, hi := max(e.Offset, uint64(i*shardSize)), min(end, uint64((i+1)*shardSize))
				if hi > uint64(len(data)) || !bytes.Equal(data[lo:hi], region[lo:hi]) {
					hit, rebuilt = true, true
				}
			}
			if si, found := stripeOf[i/k]; found && hit && si != counted {
				stripes[si].Blobs++
				counted = si
			}
		}
		switch {
		case !ok:
			if fromIndex || r.indexedAt(e.ID, id, e.Offset) {
				lost = append(lost, e.ID)
			}
		case rebuilt:
			if fromIndex || r.indexedAt(e.ID, id, e.Offset) {
				repairable = append(repairable, e.ID)
			}
		}
	}
	nLost := len(lost)
	if nLost > 0 {
		problem("%d blob(s) fail their ID check and parity cannot rebuild them", nLost)
		anyLost = true
	}

	// The sidecar as it should be.
	wantPar := paritySidecar(g, dataLen, tableOff, trueSums, wantParitySums, wantParity)
	switch {
	case errors.Is(parReadErr, backend.ErrNotExist):
		parityProblem("sidecar missing")
		parityDamaged, fixable = true, true
	case parReadErr != nil:
		// Not damage it can judge (an I/O error, perhaps passing): the
		// sidecar may hold the parity that repairs the pack, so neither is
		// rewritten.
		parityProblem("sidecar unreadable, not repaired: %v", parReadErr)
		parityDamaged = true
	case !bytes.Equal(parBytes, wantPar):
		parityDamaged, fixable = true, true
		if len(parBytes) != len(wantPar) {
			parityProblem("sidecar is %d bytes, want %d", len(parBytes), len(wantPar))
		}
		if !bytes.Equal(parBytes[:min(len(parBytes), parityHeaderSize)], wantPar[:parityHeaderSize]) {
			if parErr != nil {
				parityProblem("header damaged: %v", parErr)
			} else {
				parityProblem("header damaged")
			}
		}
		sumsAt := func(b []byte, i int) []byte {
			if o := parityHeaderSize + 4*i; o+4 <= len(b) {
				return b[o : o+4]
			}
			return nil
		}
		badSums := 0
		for i := range g.nData {
			if !bytes.Equal(sumsAt(parBytes, i), sumsAt(wantPar, i)) {
				badSums++
			}
		}
		if badSums > 0 {
			parityProblem("%d data shard sum(s) damaged", badSums)
		}
		for i := range g.nParity {
			if !bytes.Equal(sumsAt(parBytes, g.nData+i), sumsAt(wantPar, g.nData+i)) && !checks[i/m].lost {
				parityProblem("stripe %d parity shard %d sum damaged", i/m, i%m)
			}
		}
	}
	if len(problems) == 0 {
		return &packResult{blobs: len(entries)}, nil
	}

	dmg := &PackDamage{Pack: id.String(), BadShards: badShards, ParityDamaged: parityDamaged,
		LostBlobs: nLost, Stripes: stripes}
	res := &packResult{dmg: dmg, blobs: len(entries), lost: lost}
	repaired := false
	parUnreadable := parReadErr != nil && !errors.Is(parReadErr, backend.ErrNotExist)
	if repair && fixable && !parUnreadable && (sums != nil || nLost == 0) {
		// Store the pack first: a sidecar can always be rebuilt from it.
		// Each Put replaces the object atomically.
		var werr error
		if !bytes.Equal(data, full) {
			if werr = backend.PutBytes(ctx, r.be, packName(id), full); werr == nil {
				r.files.forget(id)
			}
		}
		if werr == nil && !bytes.Equal(parBytes, wantPar) {
			werr = backend.PutBytes(ctx, r.be, parityName(id), wantPar)
		}
		if werr != nil {
			problem("repair failed: %v", werr)
		} else {
			repaired = true
		}
	}
	if repaired {
		for i := range dmg.Stripes {
			if dmg.Stripes[i].State == DamageRepairable {
				dmg.Stripes[i].State = DamageRepaired
			}
		}
		dmg.DamagedBlobs = nLost
		dmg.Repaired = !anyLost
		dmg.State = DamageRepaired
		if anyLost {
			dmg.State = DamagePartlyRepaired
		}
	} else {
		res.repairable = repairable
		dmg.DamagedBlobs = nLost + len(repairable)
		switch {
		case fixable && anyLost:
			dmg.State = DamagePartlyRepairable
		case fixable:
			dmg.State = DamageRepairable
		default:
			dmg.State = DamageBeyondParity
		}
	}
	dmg.Problem = strings.Join(problems, "; ")
	if repaired {
		dmg.Problem = strings.ReplaceAll(dmg.Problem, repairableText, "rebuilt from parity")
	}
	return res, nil
}

// indexedAt reports whether the index places blob id in pack p at off
// (and not another copy elsewhere).
func (r *Repository) indexedAt(id ID, p PackID, off uint64) bool {
	l, err := r.lookup(id)
	return err == nil && l.Pack == p && l.Offset == off
}

// blobsOfPack lists the blobs the index places in a pack, in pack order
// (a full scan of the index).
func (r *Repository) blobsOfPack(p PackID) ([]packEntry, error) {
	db, done := r.reader()
	defer done()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyChunk}, UpperBound: []byte{keyChunk + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []packEntry
	for it.First(); it.Valid(); it.Next() {
		l, err := decodeLocation(it.Value())
		if err == nil && l.Pack == p {
			e := packEntry{Offset: l.Offset, Stored: l.Stored, Raw: l.Raw, Flags: l.Flags, CRC: l.CRC}
			copy(e.ID[:], it.Key()[1:])
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b packEntry) int { return cmp.Compare(a.Offset, b.Offset) })
	return out, it.Error()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
