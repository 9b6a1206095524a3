package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Orphans are packs in packs/ that have no `k` record in the index. A
// writer killed in a seal leaves them (its pack stored, the index batch
// never committed; possibly without its sidecar), and so does an index
// that lost its newest records (a damaged write-ahead log that Pebble stops
// replaying at). In the second case restore points may still name their
// chunks, so an orphan is never deleted: a writer opening the repository
// indexes every orphan it can read as a complete pack (writing its sidecar
// when it has none), repairs from parity those it can, and moves the rest
// to quarantine/, where `verify` lists them (docs/FORMAT.md, "Commit
// protocol and crash safety").

// orphan is a pack ID found in packs/ without a `k` record, and which of
// its objects are there.
type orphan struct {
	id        PackID
	pack, par bool
	fromTmp   bool // the pack was finished from tmp/ (an interrupted seal of an older ahvfs)
}

// sweepOrphans deals with what a killed writer or a damaged index left: it
// finishes the seals of older ahvfs builds that were interrupted between
// their two renames, empties the legacy tmp/, and re-indexes or
// quarantines every pack without a `k` record. With no orphans it costs a
// listing of packs/ and one index lookup per pack ID.
//
// tmp/ stays a local directory, handled with plain file calls: ahvfs
// builds before the backend wrote packs there before renaming them into
// packs/; this one stores packs through the backend (whose Local writes
// its temporary files beside the target) and never writes to tmp/. The
// empty directory is kept for those builds.
func (r *Repository) sweepOrphans(ctx context.Context) error {
	orphans, err := r.findOrphans(ctx)
	if err != nil {
		return err
	}
	return r.settleOrphans(ctx, orphans)
}

// settleOrphans is sweepOrphans after the listing.
func (r *Repository) settleOrphans(ctx context.Context, orphans []*orphan) error {
	for _, o := range orphans {
		if o.par && !o.pack {
			if err := r.finishSeal(ctx, o); err != nil {
				return err
			}
		}
	}
	tmp := filepath.Join(r.dir, dirTmp)
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	return r.adoptOrphans(ctx, orphans)
}

// adoptOrphans runs adoptOrphan on every orphan, several at a time (reading
// and decoding packs is most of a rebuilt index's time); after an error it
// starts no more, and returns once every started adoption has ended.
func (r *Repository) adoptOrphans(ctx context.Context, orphans []*orphan) error {
	return eachParallel(ctx, min(r.workers, 8), orphans, func(o *orphan) error {
		return r.adoptOrphan(ctx, o)
	})
}

// findOrphans lists the pack IDs in packs/ that the index has no `k`
// record for, in name order. Objects under packs/ that are not named as a
// pack or a sidecar of its ID (packs/<xx>/<id>.pack|.par) are ignored.
func (r *Repository) findOrphans(ctx context.Context) ([]*orphan, error) {
	var out []*orphan
	var last *orphan
	var lastID PackID
	checked := false
	var listed map[PackID]bool
	if r.remote {
		listed = map[PackID]bool{}
		defer func() { r.listedPacks = listed }()
	}
	// Sorted by name: a pack's .pack and .par are neighbours.
	for info, err := range r.be.List(ctx, prefixPacks) {
		if err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		}
		id, ext, ok := parsePackName(info.Name)
		if !ok {
			continue
		}
		if listed != nil {
			listed[id] = true
		}
		if !checked || id != lastID {
			lastID, checked, last = id, true, nil
			if _, err := getValue(r.db, packKey(id)); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("look up pack %s: %w", id, err)
			}
			last = &orphan{id: id}
			out = append(out, last)
		}
		if last == nil {
			continue
		}
		if ext == packExt {
			last.pack = true
		} else {
			last.par = true
		}
	}
	return out, nil
}

// parsePackName returns the pack ID and the extension (packExt or
// parityExt) of an object name that is packName or parityName of its ID.
func parsePackName(name string) (PackID, string, bool) {
	var id PackID
	ext := path.Ext(name)
	if ext != packExt && ext != parityExt {
		return id, "", false
	}
	raw, err := hex.DecodeString(strings.TrimSuffix(path.Base(name), ext))
	if err != nil || len(raw) != len(id) {
		return id, "", false
	}
	copy(id[:], raw)
	if name != packName(id) && name != parityName(id) {
		return id, "", false
	}
	return id, ext, true
}

// finishSeal completes a seal of an older ahvfs build killed between
// renaming the sidecar and the pack from tmp/ into packs/: the pack in
// tmp/ was fsync'd before the sidecar was written, so it is complete, and
// it is stored in place (sweepOrphans then removes tmp/).
func (r *Repository) finishSeal(ctx context.Context, o *orphan) error {
	data, err := os.ReadFile(filepath.Join(r.dir, dirTmp, o.id.String()+packExt))
	if errors.Is(err, os.ErrNotExist) {
		return nil // no pack to finish with: the sidecar goes to quarantine
	}
	if err != nil {
		return fmt.Errorf("finish sealing pack %s: %w", o.id, err)
	}
	if err := backend.PutBytes(ctx, r.be, packName(o.id), data); err != nil {
		return fmt.Errorf("finish sealing pack %s: %w", o.id, err)
	}
	o.pack, o.fromTmp = true, true
	return nil
}

// adoptOrphan indexes an orphan pack, or moves what cannot be indexed to
// quarantine/. Only damage (ErrCorrupt) sends a pack to quarantine; any
// other error fails the open and leaves the objects where they are.
func (r *Repository) adoptOrphan(ctx context.Context, o *orphan) error {
	if !o.pack {
		dst, err := r.quarantine(ctx, parityName(o.id))
		if err != nil {
			return err
		}
		r.log.Warn(fmt.Sprintf("parity sidecar of pack %s has no pack and no index record: moved to %s ('ahvfs verify' lists it)", o.id, dst))
		return nil
	}
	blobs, added, err := r.reindexPack(ctx, o)
	if err == nil {
		why := "the index had lost it"
		if r.remote {
			r.log.Debug(fmt.Sprintf("indexed pack %s (%d blobs), stored by another host or before this cache was built", o.id, blobs))
			return nil
		}
		switch {
		case o.fromTmp:
			why = "a writer was stopped while sealing it"
		case !o.par:
			why = "a writer was stopped while sealing it; its parity sidecar was written now"
		}
		r.log.Info(fmt.Sprintf("re-indexed pack %s left unindexed (%d blobs): %s", o.id, blobs, why),
			"pack", o.id, "blobs", blobs, "locations_added", added)
		return nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("re-index pack %s: %w", o.id, err)
	}
	dst, qerr := r.quarantine(ctx, packName(o.id))
	if qerr != nil {
		return fmt.Errorf("pack %s is unreadable (%v): %w", o.id, err, qerr)
	}
	if o.par {
		if _, qerr := r.quarantine(ctx, parityName(o.id)); qerr != nil {
			return fmt.Errorf("pack %s is unreadable (%v): %w", o.id, err, qerr)
		}
	}
	r.log.Warn(fmt.Sprintf("pack %s has no index record and cannot be read as a complete pack (%v): moved to %s ('ahvfs verify' lists it)", o.id, err, dst))
	return nil
}

// reindexPack reads an orphan pack, checks it, repairs it from its sidecar
// if it must and can, stores a sidecar built from it when it has none (a
// seal stopped between storing the pack and its sidecar), and writes in one
// synced batch its `k` record and a location for every blob that decodes
// to its ID and has none yet (a chunk may be stored in two packs: an
// existing location is kept). It returns the number of blobs in the pack
// and of locations it added; an unusable pack is ErrCorrupt.
func (r *Repository) reindexPack(ctx context.Context, o *orphan) (blobs, added int, err error) {
	data, footer, intact, err := r.readOrphan(ctx, o)
	if err != nil {
		return 0, 0, err
	}
	st, err := r.be.Stat(ctx, packName(o.id))
	if err != nil {
		return 0, 0, fmt.Errorf("stat pack %s: %w", o.id, err)
	}
	if !o.par && intact {
		// The sidecar before the `k` record: an indexed pack has one.
		par, err := buildParity(data[:footer.DataLen], footer.TableOff, footer.ShardSums, int(footer.ShardSize), int(footer.K), int(footer.M))
		if err != nil {
			return 0, 0, fmt.Errorf("parity of pack %s: %w", o.id, err)
		}
		if err := backend.PutBytes(ctx, r.be, parityName(o.id), par); err != nil {
			return 0, 0, fmt.Errorf("write parity of pack %s: %w", o.id, err)
		}
		o.par = true
	}
	b := r.db.NewBatch()
	defer b.Close()
	var plain []byte
	bad := 0
	for _, e := range footer.Entries {
		stored := data[e.Offset : e.Offset+uint64(e.Stored)]
		loc := location{Pack: o.id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Flags: e.Flags,
			CRC: crc32.Checksum(stored, crcTable), HasCRC: true}
		enc := encodeLocation(loc)
		if _, err := decodeLocation(enc); err != nil {
			bad++
			r.log.Warn("blob of an unindexed pack out of range: not indexed", "pack", o.id, "blob", e.ID.Short(), "err", err)
			continue
		}
		if r.decodeOrphans() {
			if plain, err = r.codec.decode(plain[:0], stored, e.Flags, int(e.Raw), e.ID, r.hash); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					return 0, 0, fmt.Errorf("pack %s: %w", o.id, err)
				}
				bad++
				r.log.Warn("blob of an unindexed pack does not decode to its ID: not indexed", "pack", o.id, "blob", e.ID.Short(), "err", err)
				continue
			}
		}
		if _, err := getValue(r.db, chunkKey(e.ID)); err == nil {
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return 0, 0, fmt.Errorf("look up chunk %s: %w", e.ID.Short(), err)
		}
		if err := b.Set(chunkKey(e.ID), enc, nil); err != nil {
			return 0, 0, fmt.Errorf("index chunk %s of pack %s: %w", e.ID.Short(), o.id, err)
		}
		added++
	}
	if bad == len(footer.Entries) {
		return 0, 0, fmt.Errorf("%w: none of its %d blobs decodes to its ID", ErrCorrupt, bad)
	}
	rec := packRecord{Size: int64(len(data)), DataLen: int64(footer.DataLen), Blobs: uint32(len(footer.Entries)), Sealed: st.ModTime.Unix()}
	if err := b.Set(packKey(o.id), encodePackRecord(rec), nil); err != nil {
		return 0, 0, fmt.Errorf("index pack %s: %w", o.id, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, 0, fmt.Errorf("commit index for pack %s: %w", o.id, err)
	}
	if err := fault(fpOrphanIndexed); err != nil {
		return 0, 0, err
	}
	if bad > 0 {
		r.log.Warn(fmt.Sprintf("pack %s: %d of its %d blobs are damaged and were not indexed ('ahvfs verify --read-data' lists them)", o.id, bad, len(footer.Entries)))
	}
	return len(footer.Entries), added, nil
}

// decodeOrphans says whether re-indexing decodes every blob to its ID:
// always when a writer adopts the few packs a crash or a damaged index left,
// and in a rebuild only with RepairOptions.ReadData (the shard sums already
// prove every byte is as the writer wrote it).
//
// On a shared repository (remote) packs without a `k` record are mostly
// other hosts' new packs, which the shard sums prove as well: they are not
// decoded unless a repair asks for it.
func (r *Repository) decodeOrphans() bool {
	if r.repair != nil {
		return r.repair.ReadData
	}
	return !r.remote
}

// readOrphan reads an orphan pack whole and decodes it; intact reports
// that every shard matches its sum. A pack with damaged shards is rebuilt
// from its sidecar when that can be done, and the object replaced; when
// not, a pack whose table is intact is returned as it is (its damaged
// blobs fail their IDs), and one whose trailer or table is damaged, or
// that is truncated, is ErrCorrupt.
func (r *Repository) readOrphan(ctx context.Context, o *orphan) (_ []byte, _ *packFooter, intact bool, _ error) {
	data, err := backend.Get(ctx, r.be, packName(o.id))
	if err != nil {
		return nil, nil, false, fmt.Errorf("read pack %s: %w", o.id, err)
	}
	footer, bad, err := decodePack(data)
	if err == nil && len(bad) == 0 {
		return data, footer, true, nil
	}
	fixed, perr := r.rebuildFromParity(ctx, o, data)
	if errors.Is(perr, errParityUnreadable) {
		// Not damage: the open fails and the pack stays where it is.
		return nil, nil, false, fmt.Errorf("pack %s: %w", o.id, perr)
	}
	if perr == nil {
		if footer, _, perr = decodePack(fixed); perr == nil {
			if err := backend.PutBytes(ctx, r.be, packName(o.id), fixed); err != nil {
				return nil, nil, false, fmt.Errorf("write repaired pack %s: %w", o.id, err)
			}
			r.log.Info(fmt.Sprintf("pack %s left unindexed was damaged and has been rebuilt from its parity sidecar", o.id))
			return fixed, footer, true, nil
		}
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w; parity cannot rebuild it: %v", err, perr)
	}
	r.log.Warn(fmt.Sprintf("pack %s left unindexed has %d damaged shard(s) that parity cannot rebuild (%v): indexing its intact blobs", o.id, len(bad), perr))
	return data, footer, false, nil
}

// errParityUnreadable is the error of a sidecar that exists but cannot be
// read: an I/O error, not damage.
var errParityUnreadable = errors.New("parity sidecar unreadable")

// rebuildFromParity repairs a pack's data region with its sidecar and
// returns the whole rebuilt pack; damage beyond parity is ErrCorrupt, a
// sidecar that cannot be read errParityUnreadable.
func (r *Repository) rebuildFromParity(ctx context.Context, o *orphan, data []byte) ([]byte, error) {
	if !o.par {
		return nil, errors.New("no parity sidecar")
	}
	b, err := backend.Get(ctx, r.be, parityName(o.id))
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("read parity sidecar: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errParityUnreadable, err)
	}
	par, err := decodeParity(b, true)
	if err != nil {
		return nil, fmt.Errorf("parity sidecar: %w", err)
	}
	// A pack passes its pack size by at most one blob and its table.
	if par.DataLen > 2*uint64(r.cfg.PackSize)+uint64(maxEncodedLen(r.cfg.ChunkSize)) {
		return nil, fmt.Errorf("%w: parity sidecar covers %d bytes", ErrCorrupt, par.DataLen)
	}
	region := make([]byte, par.DataLen)
	copy(region, data)
	res, err := checkAndRepair(region, par, true)
	if err != nil {
		return nil, fmt.Errorf("repair from parity: %w", err)
	}
	if len(res.Unrepaired) > 0 {
		return nil, fmt.Errorf("%w: %d damaged shard(s) beyond parity", ErrCorrupt, len(res.Unrepaired))
	}
	full, _, err := packFromRegion(region, par.TableOff, par.ShardSize, par.K, par.M)
	return full, err
}

// quarantine moves the object name into quarantine/ under its own base
// name (with a numeric suffix if that is taken) and returns where it went.
// The backend has no rename: the object is stored under its new name,
// then deleted; a crash between leaves both, and the next writer moves the
// original again (to a suffixed name).
func (r *Repository) quarantine(ctx context.Context, name string) (string, error) {
	base := path.Base(name)
	dst := prefixQuarantine + base
	for i := 1; ; i++ {
		_, err := r.be.Stat(ctx, dst)
		if errors.Is(err, backend.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("quarantine %s: %w", name, err)
		}
		dst = fmt.Sprintf("%s%s.%d", prefixQuarantine, base, i)
	}
	src, err := r.be.Open(ctx, name)
	if err != nil {
		return "", fmt.Errorf("quarantine %s: %w", name, err)
	}
	err = r.be.Put(ctx, dst, src, src.Size())
	src.Close()
	if err == nil {
		err = r.be.Delete(ctx, name)
	}
	if err != nil {
		return "", fmt.Errorf("quarantine %s: %w", name, err)
	}
	return dst, nil
}

// quarantinedFiles describes, for Verify, each object in quarantine/.
func (r *Repository) quarantinedFiles(ctx context.Context) ([]string, error) {
	var out []string
	for info, err := range r.be.List(ctx, prefixQuarantine) {
		if err != nil {
			return nil, fmt.Errorf("list quarantine: %w", err)
		}
		out = append(out, fmt.Sprintf("%s: set aside by a writer (a pack without an index record that could not be read, or a sidecar without its pack); inspect it, then remove it",
			info.Name))
	}
	return out, nil
}
