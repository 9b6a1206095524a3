package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// Whole packs: when another repository with the same TransferKey wants
// every blob of a pack, the pack file moves as it is (one sequential read,
// one write, no re-packing); the receiver checks it as closely as blob by
// blob and builds its own parity sidecar.

// WholePacks groups ids by the pack that holds them and returns the packs
// every blob of which is among ids, each with its IDs; rest are the other
// ids (in packs shared with blobs not asked for, or not held: a read of
// them reports that).
func (r *Repository) WholePacks(ctx context.Context, ids []ID) (packs map[PackID][]ID, rest []ID, err error) {
	defer r.guardIndex(&err, "group blobs by pack")
	byPack := map[PackID][]ID{}
	seen := make(map[ID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		l, err := r.lookup(id)
		if errors.Is(err, ErrNotFound) {
			rest = append(rest, id)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		byPack[l.Pack] = append(byPack[l.Pack], id)
	}
	packs = map[PackID][]ID{}
	for p, in := range byPack {
		v, err := r.indexGet(packKey(p))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, nil, fmt.Errorf("pack %s: %w", p, err)
		}
		if rec, derr := decodePackRecord(v); err == nil && derr == nil && int(rec.Blobs) == len(in) {
			packs[p] = in
		} else {
			rest = append(rest, in...)
		}
	}
	return packs, rest, nil
}

// ReadPack returns pack id's file as stored, in buf's storage when it is
// large enough (not checked: AdoptPack checks it on the other side, and a
// damaged pack goes blob by blob, repaired from parity by ReadStoredBlob).
func (r *Repository) ReadPack(ctx context.Context, id PackID, buf []byte) (_ []byte, err error) {
	defer r.guardIndex(&err, "read pack "+id.String())
	v, err := r.indexGet(packKey(id))
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	rec, err := decodePackRecord(v)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	if rec.Size <= 0 || rec.Size > MaxPackFile {
		return nil, fmt.Errorf("pack %s: %w: %d bytes", id, ErrCorrupt, rec.Size)
	}
	if int64(cap(buf)) < rec.Size {
		buf = make([]byte, rec.Size)
	}
	buf = buf[:rec.Size]
	f, release, err := r.files.get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	defer release()
	if _, err := f.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	return buf, nil
}

// MaxPackFile bounds a pack file: packs seal at most at 1 GiB, plus a
// chunk and the table.
const MaxPackFile = 1<<30 + 64<<20

// AdoptPack stores data, pack id of a repository with the same
// TransferKey, as it is. It first checks every shard against its sum and
// every blob as StoreBlob does (decoded against its ID; a page must parse;
// plaintext refused in an encrypted repository); then it stores the pack,
// a parity sidecar built from it, and in one synced batch the pack's `k`
// record and a location for each blob not held already (the order of a
// seal: a kill in between leaves an orphan the next writer indexes). A
// damaged pack is ErrCorrupt, and nothing is stored; a pack held already
// is ErrExists. It returns how many of its blobs were not held before.
func (r *Repository) AdoptPack(ctx context.Context, id PackID, data []byte) (added int, err error) {
	defer r.guardIndex(&err, "adopt pack "+id.String())
	if !r.writable {
		return 0, ErrReadOnly
	}
	if _, err := getValue(r.db, packKey(id)); err == nil {
		return 0, fmt.Errorf("adopt pack %s: %w", id, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("adopt pack %s: %w", id, err)
	}
	footer, bad, err := decodePack(data)
	if err == nil && len(bad) > 0 {
		err = fmt.Errorf("%w: %d shards fail their sums", ErrCorrupt, len(bad))
	}
	if err == nil && len(footer.Entries) == 0 {
		err = fmt.Errorf("%w: no blobs", ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("adopt pack %s: %w", id, err)
	}
	idx := make([]int, len(footer.Entries))
	for i := range idx {
		idx[i] = i
	}
	err = eachParallel(ctx, r.workers, idx, func(i int) error {
		e := &footer.Entries[i]
		b := StoredBlob{ID: e.ID, Flags: e.Flags, Raw: e.Raw, Data: data[e.Offset : e.Offset+uint64(e.Stored)]}
		e.CRC = crc32.Checksum(b.Data, crcTable)
		return r.checkIncoming(&b)
	})
	if err != nil {
		return 0, fmt.Errorf("adopt pack %s: %w", id, err)
	}
	par, err := buildParity(data[:footer.DataLen], footer.TableOff, footer.ShardSums, int(footer.ShardSize), int(footer.K), int(footer.M))
	if err != nil {
		return 0, fmt.Errorf("adopt pack %s: parity: %w", id, err)
	}
	if err := backend.PutBytes(ctx, r.be, packName(id), data); err != nil {
		return 0, fmt.Errorf("write pack %s: %w", id, err)
	}
	if err := backend.PutBytes(ctx, r.be, parityName(id), par); err != nil {
		return 0, fmt.Errorf("write parity of pack %s: %w", id, err)
	}
	rec := packRecord{Size: int64(len(data)), DataLen: int64(footer.DataLen), Blobs: uint32(len(footer.Entries)), Sealed: time.Now().Unix()}
	if added, err = r.indexPack(id, footer.Entries, rec, true); err != nil {
		return 0, err
	}
	r.dirty.Store(true)
	return added, nil
}
