package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// VerifyOptions control Verify.
type VerifyOptions struct {
	// ReadData reads every pack and its parity sidecar in full: it checks
	// every data shard against its sum, recomputes the parity of every
	// stripe and compares it with the sidecar, compares the footer and the
	// sidecar with those rebuilt from the data, and re-hashes every blob.
	ReadData bool
	// Repair rewrites damaged packs and parity sidecars: every stripe within
	// parity is rebuilt, footers and sidecars are rebuilt from the data.
	// Stripes beyond parity are left as they are and reported. It implies
	// ReadData and needs a writable repository.
	Repair bool
	// Progress, when set, is called with packs checked and the total.
	Progress func(done, total int)
	// Parts > 1 reads only a share of the packs' data: those whose ID
	// falls in part Part of Parts (0 ≤ Part < Parts); the others get the
	// structural check. Reading part 0, 1, … Parts-1 in turn (the daemon,
	// one a day) reads the whole repository. Not with Repair.
	Part, Parts int
}

// readsData reports whether the verify reads pack id's data.
func (o VerifyOptions) readsData(id PackID) bool {
	if !o.ReadData {
		return false
	}
	return o.Parts <= 1 || int(binary.LittleEndian.Uint32(id[:4])%uint32(o.Parts)) == o.Part
}

// Damage states of a pack (PackDamage.State), a stripe (StripeDamage.State)
// and a disk range (DamagedRange.State).
const (
	DamageRepaired         = "repaired"          // --repair rebuilt it
	DamageRepairable       = "repairable"        // parity can rebuild it: run verify --repair (reads rebuild it in memory meanwhile)
	DamagePartlyRepaired   = "partly repaired"   // a pack: --repair rebuilt what parity could; the rest is beyond parity
	DamagePartlyRepairable = "partly repairable" // a pack: some damage is repairable, some beyond parity
	DamageBeyondParity     = "beyond parity"     // more damaged shards than parity: the data is lost
	DamageLost             = "lost"              // a disk range: its chunks (or their manifest page) are damaged beyond parity
	DamageMissing          = "missing"           // a disk range: its chunks (or their manifest page) are not in the index
	DamageUnchecked        = "unchecked"         // a pack: found without reading the data; verify --read-data tells whether parity can repair it
)

// PackDamage is what Verify found wrong with one pack and its parity
// sidecar.
type PackDamage struct {
	Pack      string `json:"pack"`
	Problem   string `json:"problem"`    // every problem found, "; "-separated
	BadShards int    `json:"bad_shards"` // damaged data shards
	// Repaired is set when --repair made the pack and its sidecar whole.
	Repaired bool `json:"repaired"`
	// DamagedBlobs counts blobs whose stored bytes are damaged as the pack
	// now is: after --repair those beyond parity, else every damaged one.
	DamagedBlobs int `json:"damaged_blobs"`
	// State is repaired, repairable, partly repaired, partly repairable,
	// beyond parity or, without ReadData, unchecked (Damage*).
	State string `json:"state"`
	// LostBlobs counts blobs that parity cannot rebuild.
	LostBlobs int `json:"lost_blobs"`
	// ParityDamaged is set when the sidecar is damaged or missing.
	ParityDamaged bool `json:"parity_damaged"`
	// Stripes lists every damaged stripe.
	Stripes []StripeDamage `json:"stripes,omitempty"`
}

// StripeDamage is one damaged Reed-Solomon stripe of a pack: k data shards
// and the m parity shards computed from them.
type StripeDamage struct {
	Stripe int `json:"stripe"`
	// Offset and Length are the bytes of the pack its data shards hold.
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
	// DataShards are the damaged data shards, numbered from the pack's
	// start (shard i holds bytes i·shard size onwards).
	DataShards []int `json:"data_shards,omitempty"`
	// ParityShards are the damaged parity shards, numbered within the
	// stripe (0 … m−1).
	ParityShards []int `json:"parity_shards,omitempty"`
	// State is repaired, repairable or beyond parity.
	State string `json:"state"`
	// Blobs counts the damaged blobs stored, wholly or partly, in the
	// stripe: those parity rebuilds (or rebuilt), or, beyond parity, those
	// that fail their ID.
	Blobs int `json:"blobs"`
}

// AffectedRestorePoint is a restore point with damaged or missing data.
type AffectedRestorePoint struct {
	Name string `json:"name"`
	// DamagedChunks counts distinct chunks and manifest pages whose stored
	// bytes are damaged (as the packs now are), RepairableChunks those of
	// them parity can rebuild, MissingChunks those not in the index.
	DamagedChunks    int `json:"damaged_chunks"`
	MissingChunks    int `json:"missing_chunks"`
	RepairableChunks int `json:"repairable_chunks"`
	// Ranges are the affected byte ranges of the disks, in disk order.
	Ranges []DamagedRange `json:"ranges,omitempty"`
}

// DamagedRange is a byte range of a restore point's disk whose chunks are
// damaged or missing.
type DamagedRange struct {
	Disk   string `json:"disk"` // disk-N
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	State  string `json:"state"` // repairable, lost or missing
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Packs         int                    `json:"packs"`
	DataPacks     int                    `json:"data_packs"` // of them, read in full (ReadData)
	Blobs         int                    `json:"blobs"`
	CheckedBytes  int64                  `json:"checked_bytes"`
	RestorePoints int                    `json:"restore_points"`
	Damaged       []PackDamage           `json:"damaged_packs,omitempty"`
	Affected      []AffectedRestorePoint `json:"affected_restore_points,omitempty"`
	Problems      []string               `json:"problems,omitempty"`
	// Pending are restore points whose record file is durable but whose
	// index commit was interrupted (a killed job, or an index that lost its
	// newest records): nothing is lost, and the next writer indexes them.
	// They do not make the report fail.
	Pending  []string `json:"pending,omitempty"`
	Repaired int      `json:"repaired_packs"` // packs --repair made whole
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
// With ReadData it also reads every byte of every pack and sidecar; with
// Repair it rebuilds what parity can rebuild. It does not stop at damage:
// it lists every damaged pack and stripe and every affected restore point
// with the disk ranges affected. It returns an error only when it could not
// run (or ctx ended); damage is in the report.
func (r *Repository) Verify(ctx context.Context, o VerifyOptions) (_ *VerifyReport, err error) {
	defer r.guardIndex(&err, "verify")
	if o.Repair {
		if !r.writable {
			return nil, fmt.Errorf("verify --repair: %w (open the repository for writing)", ErrReadOnly)
		}
		o.ReadData = true
	}
	if o.Parts > 1 && (o.Repair || o.Part < 0 || o.Part >= o.Parts) {
		return nil, fmt.Errorf("verify part %d of %d: %w (a part is 0 to parts-1, and repair reads every pack)", o.Part, o.Parts, ErrInvalid)
	}
	rep := &VerifyReport{}
	packs, err := r.packsForVerify(rep)
	if err != nil {
		return nil, err
	}
	damaged := map[ID]string{} // blob → DamageRepairable or DamageLost
	for i, p := range packs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var res *packResult
		if o.readsData(p.id) {
			rep.DataPacks++
			res, err = r.verifyPackData(ctx, p.id, p.rec, o.Repair)
		} else {
			res = r.verifyPackStructure(ctx, p.id, p.rec)
		}
		if err != nil {
			return nil, err
		}
		rep.Packs++
		rep.Blobs += res.blobs
		rep.CheckedBytes += p.rec.Size
		for _, id := range res.repairable {
			damaged[id] = DamageRepairable
		}
		for _, id := range res.lost {
			damaged[id] = DamageLost
		}
		if d := res.dmg; d != nil {
			rep.Damaged = append(rep.Damaged, *d)
			if d.Repaired {
				rep.Repaired++
			}
		}
		if o.Progress != nil {
			o.Progress(i+1, len(packs))
		}
	}
	quarantined, err := r.quarantinedFiles(ctx)
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	rep.Problems = append(rep.Problems, quarantined...)
	drift, pending := r.verifyRecords(ctx)
	rep.Problems = append(rep.Problems, drift...)
	rep.Pending = append(rep.Pending, pending...)
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rep.Problems = append(rep.Problems, err.Error())
		return rep, nil
	}
	for _, rp := range rps {
		rep.RestorePoints++
		a, err := r.verifyRestorePoint(ctx, rp, damaged, rep)
		if err != nil {
			return nil, err
		}
		if a.DamagedChunks > 0 || a.MissingChunks > 0 || len(a.Ranges) > 0 {
			rep.Affected = append(rep.Affected, a)
		}
	}
	return rep, nil
}

// verifyRecords compares the index's restore points with the record files
// (from index version 3 on; an older index is their only copy).
func (r *Repository) verifyRecords(ctx context.Context) (problems, pending []string) {
	db, done := r.reader()
	defer done()
	if v, err := checkIndexVersion(db); err != nil || v < 3 {
		return nil, nil
	}
	problems, pending, err := r.recordDrift(ctx, db)
	if err != nil {
		return []string{fmt.Sprintf("compare the index with %s: %v", dirRPs, err)}, nil
	}
	return problems, pending
}

// damageRank orders the states of a chunk: the worse wins.
func damageRank(s string) int {
	switch s {
	case DamageRepairable:
		return 1
	case DamageLost:
		return 2
	case DamageMissing:
		return 3
	}
	return 0
}

func worse(a, b string) string {
	if damageRank(b) > damageRank(a) {
		return b
	}
	return a
}

// rangeBuilder merges the states of a disk's chunks, given in increasing
// chunk order, into ranges.
type rangeBuilder struct {
	disk     string
	size, cs int64
	cur      string // state of the open range ("": none)
	start    int64  // its first chunk
	next     int64  // the chunk after the last one added
	out      []DamagedRange
}

func (b *rangeBuilder) add(ci int64, state string) {
	if ci != b.next || state != b.cur {
		b.flush()
		b.cur, b.start = state, ci
	}
	b.next = ci + 1
}

func (b *rangeBuilder) flush() {
	if b.cur != "" {
		off := b.start * b.cs
		b.out = append(b.out, DamagedRange{Disk: b.disk, Offset: off, Length: min(b.next*b.cs, b.size) - off, State: b.cur})
	}
	b.cur = ""
}

// verifyRestorePoint reads the manifests of rp's disks and finds the
// chunks that are damaged (per damaged), missing from the index, or
// unknown because their manifest page cannot be read. A page that cannot
// be read is a problem in rep; the other pages are still checked.
func (r *Repository) verifyRestorePoint(ctx context.Context, rp *RestorePoint, damaged map[ID]string, rep *VerifyReport) (AffectedRestorePoint, error) {
	a := AffectedRestorePoint{Name: rp.Name()}
	known := map[ID]string{} // the state of each chunk and page met, counted once
	count := func(id ID, state string) string {
		if s, ok := known[id]; ok {
			return s
		}
		known[id] = state
		switch state {
		case DamageRepairable:
			a.RepairableChunks++
			a.DamagedChunks++
		case DamageLost:
			a.DamagedChunks++
		case DamageMissing:
			a.MissingChunks++
		}
		return state
	}
	cs, E := int64(r.cfg.ChunkSize), r.cfg.PageEntries
	for i := range rp.Disks {
		dk := &rp.Disks[i]
		n := chunksFor(dk.Size, r.cfg.ChunkSize)
		b := rangeBuilder{disk: dk.Name(), size: dk.Size, cs: cs}
		for p, pid := range dk.Pages {
			if pid.IsZero() || p*E >= n {
				continue
			}
			first, want := p*E, min(E, n-p*E)
			pageState := damaged[pid]
			ids, err := r.page(ctx, pid)
			if err == nil && len(ids) != want {
				err = fmt.Errorf("%w: manifest page holds %d IDs, want %d", ErrCorrupt, len(ids), want)
			}
			if err != nil {
				if ctx.Err() != nil {
					return a, ctx.Err()
				}
				state := DamageLost
				if errors.Is(err, ErrNotFound) {
					state = DamageMissing
				}
				state = count(pid, worse(pageState, state))
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s %s: manifest page %d (bytes %d-%d) unreadable: %v",
					rp.Name(), dk.Name(), p, int64(first)*cs, min(int64(first+want)*cs, dk.Size)-1, err))
				for j := range want {
					b.add(int64(first+j), state)
				}
				continue
			}
			pageState = count(pid, pageState)
			for j, id := range ids {
				state := ""
				if !id.IsZero() {
					s, ok := known[id]
					if !ok {
						s = damaged[id]
						if s == "" {
							if _, err := r.lookup(id); err != nil {
								s = DamageMissing
								noteDamage(rep, err)
							}
						}
						s = count(id, s)
					}
					state = s
				}
				b.add(int64(first+j), worse(pageState, state))
			}
		}
		b.flush()
		a.Ranges = append(a.Ranges, b.out...)
	}
	return a, nil
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
		if info, err := r.be.Stat(ctx, parityName(p.id)); err == nil {
			s.ParityBytes += info.Size
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
