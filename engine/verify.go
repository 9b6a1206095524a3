package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/cockroachdb/pebble/v2"
)

// VerifyOptions control Verify.
type VerifyOptions struct {
	// ReadData reads every pack in full, checks it against its shard sums
	// and parity, and re-hashes every blob.
	ReadData bool
	// Repair rebuilds damaged packs (and parity sidecars) from parity.
	// It implies ReadData and needs a writable repository.
	Repair bool
	// Progress, when set, is called with packs checked and the total.
	Progress func(done, total int)
}

// PackDamage is what Verify found wrong with one pack.
type PackDamage struct {
	Pack         string `json:"pack"`
	Problem      string `json:"problem"`
	BadShards    int    `json:"bad_shards"`
	Repaired     bool   `json:"repaired"`
	DamagedBlobs int    `json:"damaged_blobs"` // blobs still unreadable after any repair
}

// AffectedRestorePoint is a restore point with unreadable or missing data.
type AffectedRestorePoint struct {
	Name          string `json:"name"`
	DamagedChunks int    `json:"damaged_chunks"`
	MissingChunks int    `json:"missing_chunks"`
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Packs         int                    `json:"packs"`
	Blobs         int                    `json:"blobs"`
	CheckedBytes  int64                  `json:"checked_bytes"`
	RestorePoints int                    `json:"restore_points"`
	Damaged       []PackDamage           `json:"damaged_packs,omitempty"`
	Affected      []AffectedRestorePoint `json:"affected_restore_points,omitempty"`
	Problems      []string               `json:"problems,omitempty"`
	Repaired      int                    `json:"repaired_packs"`
}

// OK reports whether nothing is damaged or missing after any repair.
func (v *VerifyReport) OK() bool {
	if len(v.Affected) > 0 || len(v.Problems) > 0 {
		return false
	}
	for _, d := range v.Damaged {
		if !d.Repaired || d.DamagedBlobs > 0 {
			return false
		}
	}
	return true
}

// Verify checks the repository: every pack named by the index exists with
// its size and parity; every restore point's pages and chunks are indexed;
// files a writer moved to quarantine/ are listed as problems.
// With ReadData it also reads every byte and re-hashes every blob; with
// Repair it rebuilds what parity can rebuild. It returns an error only when
// it could not run; damage is in the report.
func (r *Repository) Verify(ctx context.Context, o VerifyOptions) (_ *VerifyReport, err error) {
	defer r.guardIndex(&err, "verify")
	if o.Repair {
		if !r.writable {
			return nil, fmt.Errorf("verify --repair: %w (open the repository for writing)", ErrReadOnly)
		}
		o.ReadData = true
	}
	rep := &VerifyReport{}
	packs, err := r.packsForVerify(rep)
	if err != nil {
		return nil, err
	}
	damaged := map[ID]bool{}
	for i, p := range packs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, n, bad, err := r.verifyPack(ctx, p.id, p.rec, o)
		if err != nil {
			return nil, err
		}
		rep.Packs++
		rep.Blobs += n
		rep.CheckedBytes += p.rec.Size
		for _, id := range bad {
			damaged[id] = true
		}
		if d != nil {
			rep.Damaged = append(rep.Damaged, *d)
			if d.Repaired {
				rep.Repaired++
			}
		}
		if o.Progress != nil {
			o.Progress(i+1, len(packs))
		}
	}
	quarantined, err := r.quarantinedFiles()
	if err != nil {
		return nil, err
	}
	rep.Problems = append(rep.Problems, quarantined...)
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return rep, nil
	}
	for _, rp := range rps {
		rep.RestorePoints++
		a := AffectedRestorePoint{Name: rp.Name()}
		for i := range rp.Disks {
			dk := &rp.Disks[i]
			for _, pid := range dk.Pages {
				if pid.IsZero() {
					continue
				}
				if damaged[pid] {
					a.DamagedChunks++
				}
			}
			ids, err := r.diskChunkIDs(ctx, dk)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					a.MissingChunks++
				} else if !errors.Is(err, ErrCorrupt) {
					return nil, err
				}
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: manifest: %v", rp.Name(), dk.Name(), err))
				continue
			}
			seen := map[ID]bool{}
			for _, id := range ids {
				if id.IsZero() || seen[id] {
					continue
				}
				seen[id] = true
				if damaged[id] {
					a.DamagedChunks++
					continue
				}
				if _, err := r.lookup(id); err != nil {
					a.MissingChunks++
					noteDamage(rep, err)
				}
			}
		}
		if a.DamagedChunks > 0 || a.MissingChunks > 0 {
			rep.Affected = append(rep.Affected, a)
		}
	}
	return rep, nil
}

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

// verifyPack checks one pack. It returns the damage found (nil when none),
// the number of blobs, and the IDs of blobs that remain unreadable.
func (r *Repository) verifyPack(ctx context.Context, id PackID, rec packRecord, o VerifyOptions) (*PackDamage, int, []ID, error) {
	path := packPath(r.dir, id)
	dmg := &PackDamage{Pack: id.String()}
	st, err := os.Stat(path)
	if err != nil {
		dmg.Problem = fmt.Sprintf("pack file missing: %v", err)
		ids, _ := r.blobsOfPack(id)
		dmg.DamagedBlobs = len(ids)
		return dmg, len(ids), ids, nil
	}
	if !o.ReadData {
		if st.Size() != rec.Size {
			dmg.Problem = fmt.Sprintf("pack is %d bytes, the index says %d", st.Size(), rec.Size)
			return dmg, 0, nil, nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, nil, err
		}
		defer f.Close()
		tail := make([]byte, rec.Size-rec.DataLen+packEntrySize*0)
		if _, err := f.ReadAt(tail, rec.DataLen); err != nil {
			dmg.Problem = fmt.Sprintf("read pack footer: %v", err)
			return dmg, 0, nil, nil
		}
		if _, _, err := decodeTrailer(tail[len(tail)-packTrailerSize:], rec.Size); err != nil {
			dmg.Problem = err.Error()
			return dmg, 0, nil, nil
		}
		if _, err := os.Stat(parityPath(r.dir, id)); err != nil {
			dmg.Problem = "parity sidecar missing"
			return dmg, 0, nil, nil
		}
		return nil, 0, nil, nil
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	parBytes, perr := os.ReadFile(parityPath(r.dir, id))
	var par *parityInfo
	if perr == nil {
		par, perr = decodeParity(parBytes, true)
	}
	var problems []string
	if perr != nil {
		problems = append(problems, fmt.Sprintf("parity sidecar unusable: %v", perr))
	}
	if int64(len(data)) != rec.Size {
		problems = append(problems, fmt.Sprintf("pack is %d bytes, the index says %d", len(data), rec.Size))
	}
	// The data region is what parity protects; size it from the index so a
	// truncated or extended file can still be repaired.
	region := make([]byte, rec.DataLen)
	copy(region, data)
	dataChanged := false
	var res *repairResult
	if par != nil && int64(par.DataLen) == rec.DataLen {
		res, err = checkAndRepair(region, par, o.Repair)
		if err != nil {
			return nil, 0, nil, err
		}
		dmg.BadShards = len(res.BadShards)
		if len(res.BadShards) > 0 {
			problems = append(problems, fmt.Sprintf("%d damaged shard(s), %d beyond parity", len(res.BadShards), len(res.Unrepaired)))
		}
		if res.ParityBad > 0 {
			problems = append(problems, fmt.Sprintf("%d damaged parity shard(s)", res.ParityBad))
		}
		dataChanged = res.Repaired
	} else if par != nil {
		problems = append(problems, "parity sidecar covers a different size than the index")
	}
	// Rebuild the footer from the (repaired) data region and compare.
	var footer *packFooter
	tableOff := uint64(0)
	if par != nil {
		tableOff = par.TableOff
	} else if f, _, err := decodeTrailer(data[max(0, len(data)-packTrailerSize):], int64(len(data))); err == nil {
		tableOff = f.TableOff
	}
	if tableOff > 0 {
		shardSize, k, m := r.cfg.Parity.ShardSize, r.cfg.Parity.Data, r.cfg.Parity.Parity
		if par != nil {
			shardSize, k, m = par.ShardSize, par.K, par.M
		}
		full, f, err := packFromRegion(region, tableOff, shardSize, k, m)
		if err != nil {
			problems = append(problems, fmt.Sprintf("blob table unreadable: %v", err))
		} else {
			footer = f
			if !bytesEqual(full, data) {
				if !dataChanged {
					problems = append(problems, "pack footer damaged")
				}
				dataChanged = true
				data = full
			}
		}
	} else {
		problems = append(problems, "pack trailer and parity both unreadable")
	}
	// Re-hash every blob.
	var bad []ID
	n := 0
	if footer != nil {
		n = len(footer.Entries)
		for _, e := range footer.Entries {
			if err := ctx.Err(); err != nil {
				return nil, 0, nil, err
			}
			stored := region[e.Offset : e.Offset+uint64(e.Stored)]
			if _, err := r.codec.decode(nil, stored, e.Flags, int(e.Raw), e.ID, r.hash); err != nil {
				bad = append(bad, e.ID)
			}
		}
	} else {
		bad, _ = r.blobsOfPack(id)
		n = len(bad)
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d blob(s) fail their hash", len(bad)))
	}
	dmg.DamagedBlobs = len(bad)
	if o.Repair && footer != nil && len(bad) == 0 {
		if dataChanged {
			if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
				return nil, 0, nil, fmt.Errorf("repair pack %s: %w", id, err)
			}
			r.files.forget(id)
			dmg.Repaired = true
		}
		if par == nil || (res != nil && res.ParityBad > 0) {
			np, err := buildParity(region, tableOff, shardSums(region, r.cfg.Parity.ShardSize), r.cfg.Parity.ShardSize, r.cfg.Parity.Data, r.cfg.Parity.Parity)
			if err != nil {
				return nil, 0, nil, err
			}
			if err := atomicfile.WriteFile(parityPath(r.dir, id), np, 0o600); err != nil {
				return nil, 0, nil, fmt.Errorf("repair parity of pack %s: %w", id, err)
			}
			dmg.Repaired = true
		}
	}
	if len(problems) == 0 {
		return nil, n, nil, nil
	}
	dmg.Problem = joinProblems(problems)
	return dmg, n, bad, nil
}

// blobsOfPack lists the blobs the index places in a pack (a full scan).
func (r *Repository) blobsOfPack(p PackID) ([]ID, error) {
	db, done := r.reader()
	defer done()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyChunk}, UpperBound: []byte{keyChunk + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []ID
	for it.First(); it.Valid(); it.Next() {
		l, err := decodeLocation(it.Value())
		if err == nil && l.Pack == p {
			var id ID
			copy(id[:], it.Key()[1:])
			out = append(out, id)
		}
	}
	return out, it.Error()
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func joinProblems(p []string) string {
	sort.Strings(p)
	s := p[0]
	for _, x := range p[1:] {
		s += "; " + x
	}
	return s
}

// Stats summarises the repository.
type Stats struct {
	VMs           int     `json:"vms"`
	RestorePoints int     `json:"restore_points"`
	LogicalBytes  int64   `json:"logical_bytes"`  // sum of all restore points' disk sizes
	ReferencedRaw int64   `json:"referenced_raw"` // non-zero bytes the restore points reference
	UniqueRaw     int64   `json:"unique_raw"`     // plaintext bytes of stored chunks
	StoredBytes   int64   `json:"stored_bytes"`   // bytes of pack files
	ParityBytes   int64   `json:"parity_bytes"`   // bytes of parity sidecars
	Chunks        int64   `json:"chunks"`
	Packs         int     `json:"packs"`
	DedupRatio    float64 `json:"dedup_ratio"`       // referenced / unique
	Compression   float64 `json:"compression_ratio"` // unique / stored
}

// Stats computes repository statistics (it reads every manifest).
func (r *Repository) Stats(ctx context.Context) (_ *Stats, err error) {
	defer r.guardIndex(&err, "stats")
	s := &Stats{}
	db, done := r.readerOnce()
	defer done()
	packs, err := listPacks(db)
	if err != nil {
		done()
		return nil, err
	}
	for _, p := range packs {
		s.Packs++
		s.StoredBytes += p.rec.Size
		if st, err := os.Stat(parityPath(r.dir, p.id)); err == nil {
			s.ParityBytes += st.Size()
		}
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyChunk}, UpperBound: []byte{keyChunk + 1}})
	if err != nil {
		done()
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		if l, err := decodeLocation(it.Value()); err == nil && l.Flags&flagPage == 0 {
			s.Chunks++
			s.UniqueRaw += int64(l.Raw)
		}
	}
	it.Close()
	done()
	vms, err := r.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	s.VMs = len(vms)
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return nil, err
	}
	sizes := map[ID]int64{}
	for _, rp := range rps {
		s.RestorePoints++
		s.LogicalBytes += rp.LogicalBytes()
		for i := range rp.Disks {
			ids, err := r.diskChunkIDs(ctx, &rp.Disks[i])
			if err != nil {
				return nil, fmt.Errorf("stats: %s: %w", rp.Name(), err)
			}
			cs := int64(r.cfg.ChunkSize)
			for ci, id := range ids {
				if id.IsZero() {
					continue
				}
				sz, ok := sizes[id]
				if !ok {
					sz = min(cs, rp.Disks[i].Size-int64(ci)*cs)
					sizes[id] = sz
				}
				s.ReferencedRaw += sz
			}
		}
	}
	if s.UniqueRaw > 0 {
		s.DedupRatio = float64(s.ReferencedRaw) / float64(s.UniqueRaw)
	}
	if s.StoredBytes > 0 {
		s.Compression = float64(s.UniqueRaw) / float64(s.StoredBytes)
	}
	return s, nil
}
