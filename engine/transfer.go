package engine

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// StoredBlob is a blob as a pack holds it: compressed, and sealed when the
// repository is encrypted. Replication (ahvfs sync) moves blobs in this
// form between repositories with the same TransferKey, never decoding them
// on the way.
type StoredBlob struct {
	ID    ID
	Flags byte   // codec, encrypted, manifest page (see FORMAT.md)
	Raw   uint32 // plaintext length
	Data  []byte // the stored bytes
}

// IsPage reports whether the blob is a manifest page.
func (b *StoredBlob) IsPage() bool { return b.Flags&flagPage != 0 }

// CRC is the CRC-32C of the stored bytes (what the index records).
func (b *StoredBlob) CRC() uint32 { return crc32.Checksum(b.Data, crcTable) }

// MissingBlobsError is AdoptRestorePoint's refusal: the repository lacks
// pages or chunks the restore point needs (IDs, without duplicates).
type MissingBlobsError struct {
	Point string
	IDs   []ID
}

func (e *MissingBlobsError) Error() string {
	return fmt.Sprintf("restore point %s: the repository lacks %d pages or chunks it needs", e.Point, len(e.IDs))
}

// TransferKey names how the repository stores blobs: its chunk size, page
// entries and, when it is encrypted, a fingerprint of its master key (which
// reveals nothing of the key). Two repositories with the same TransferKey
// have the same chunk and page IDs and can exchange stored blobs as they
// are; `ahvfs init --copy-params-from` makes one.
func (r *Repository) TransferKey() string {
	k := fmt.Sprintf("c%d-p%d", r.cfg.ChunkSize, r.cfg.PageEntries)
	if r.keys == nil {
		return k + "-plain"
	}
	return k + "-key" + hex.EncodeToString(r.keys.fingerprint)
}

// ReadStoredBlob returns blob id as stored, its bytes appended to buf[:0],
// checked against the CRC-32C the index records (or, for a location
// without one, decoded and checked against the ID). Damaged bytes are
// rebuilt from parity and encoded again, with a warning; damage beyond
// parity is ErrCorrupt.
func (r *Repository) ReadStoredBlob(ctx context.Context, id ID, buf []byte) (_ StoredBlob, err error) {
	defer r.guardIndex(&err, "read blob "+id.Short())
	l, f, release, err := r.openBlobPack(ctx, id)
	if err != nil {
		return StoredBlob{}, err
	}
	if cap(buf) < int(l.Stored) {
		buf = make([]byte, l.Stored)
	}
	b := StoredBlob{ID: id, Flags: l.Flags, Raw: l.Raw, Data: buf[:l.Stored]}
	_, err = f.ReadAt(b.Data, int64(l.Offset))
	release()
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: pack %s ends before the blob", ErrCorrupt, l.Pack)
	}
	if err == nil {
		err = r.checkStored(&b, l)
	}
	if err == nil {
		return b, nil
	}
	plain, _, lerr := r.loadDamagedBlob(ctx, id, l, nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), l.Pack, err))
	if lerr != nil {
		return StoredBlob{}, lerr
	}
	data, flags := r.codec.encode(buf[:0], plain, id, l.Flags&flagPage != 0)
	return StoredBlob{ID: id, Flags: flags, Raw: uint32(len(plain)), Data: data}, nil
}

// checkStored checks b, read from l, against l's CRC-32C, or decodes it
// against its ID when l has none.
func (r *Repository) checkStored(b *StoredBlob, l location) error {
	if l.HasCRC {
		if got := b.CRC(); got != l.CRC {
			return fmt.Errorf("%w: CRC-32C %08x, index says %08x", ErrCorrupt, got, l.CRC)
		}
		return nil
	}
	_, err := r.codec.decode(nil, b.Data, b.Flags, int(b.Raw), b.ID, r.hash)
	return err
}

// PageIDs returns the chunk IDs manifest page id lists.
func (r *Repository) PageIDs(ctx context.Context, id ID) (_ []ID, err error) {
	defer r.guardIndex(&err, "read manifest page "+id.Short())
	return r.page(ctx, id)
}

// HaveBlobs reports, for each of ids, whether the repository holds it
// durably. With check, a held blob is also read and checked against its
// CRC-32C (or ID), and a damaged one counts as missing: StoreBlob with
// replace then stores it again.
func (r *Repository) HaveBlobs(ctx context.Context, ids []ID, check bool) (_ []bool, err error) {
	defer r.guardIndex(&err, "look up blobs")
	have := make([]bool, len(ids))
	var buf []byte
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := r.lookup(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !check {
			have[i] = true
			continue
		}
		have[i], buf = r.blobIntact(ctx, id, l, buf)
	}
	return have, nil
}

// blobIntact reads blob id at l and checks it; buf is reused.
func (r *Repository) blobIntact(ctx context.Context, id ID, l location, buf []byte) (bool, []byte) {
	f, release, err := r.files.get(ctx, l.Pack)
	if err != nil {
		return false, buf
	}
	if cap(buf) < int(l.Stored) {
		buf = make([]byte, l.Stored)
	}
	b := StoredBlob{ID: id, Flags: l.Flags, Raw: l.Raw, Data: buf[:l.Stored]}
	_, err = f.ReadAt(b.Data, int64(l.Offset))
	release()
	return err == nil && r.checkStored(&b, l) == nil, buf
}

// StoreBlob checks b and stores it as it is, unless the repository holds
// it already (intact, with replace: a blob HaveBlobs found damaged is
// stored again). The check decodes it against its ID (a manifest page must
// also parse as one) and refuses a blob that is not sealed with this
// repository's keys. The blob is durable and held after FlushBlobs. It is
// safe for concurrent use.
func (r *Repository) StoreBlob(ctx context.Context, b StoredBlob, replace bool) (stored bool, err error) {
	if !r.writable {
		return false, ErrReadOnly
	}
	if err := r.checkIncoming(&b); err != nil {
		return false, err
	}
	crc := b.CRC()
	if !replace {
		return r.pw.submitStored(ctx, b.ID, b.Data, b.Raw, b.Flags, crc)
	}
	if l, err := r.lookup(b.ID); err == nil {
		if ok, _ := r.blobIntact(ctx, b.ID, l, nil); ok {
			return false, nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if err := r.pw.rewriteStored(ctx, b.ID, b.Data, b.Raw, b.Flags, crc); err != nil {
		return false, err
	}
	return true, nil
}

// checkIncoming decodes a blob from another repository and checks it
// against its ID.
func (r *Repository) checkIncoming(b *StoredBlob) error {
	if r.keys != nil && b.Flags&flagEncrypted == 0 {
		return fmt.Errorf("blob %s: %w: not encrypted, and this repository is", b.ID.Short(), ErrCorrupt)
	}
	if b.Raw > uint32(max(r.cfg.ChunkSize, pageBytes(r.cfg.PageEntries))) || len(b.Data) > maxEncodedLen(int(b.Raw)) {
		return fmt.Errorf("blob %s: %w: %d bytes stored, %d plain: larger than this repository's chunks", b.ID.Short(), ErrCorrupt, len(b.Data), b.Raw)
	}
	if b.ID.IsZero() {
		return fmt.Errorf("blob %s: %w: the all-zero ID is never stored", b.ID.Short(), ErrCorrupt)
	}
	sp := r.storedBufs.Get().(*[]byte)
	defer r.storedBufs.Put(sp)
	plain, err := r.codec.decode((*sp)[:0], b.Data, b.Flags, int(b.Raw), b.ID, r.hash)
	if err != nil {
		return err
	}
	if b.IsPage() {
		if err := checkPage(plain, r.cfg.PageEntries); err != nil {
			return fmt.Errorf("blob %s: %w", b.ID.Short(), err)
		}
	}
	return nil
}

// pageBytes is the size of a full manifest page.
func pageBytes(entries int) int { return entries * IDSize }

// FlushBlobs makes every blob stored so far durable and held.
func (r *Repository) FlushBlobs(ctx context.Context) error {
	if !r.writable {
		return ErrReadOnly
	}
	return r.pw.flush(ctx)
}

// AdoptRestorePoint commits rp, a restore point of another repository with
// the same TransferKey, as it is: its ID, name, time, level, consistency,
// configuration, meta and stats, and its lock when that has not expired.
// Every page and chunk it names must be held already (StoreBlob, then
// FlushBlobs): when some are not, nothing is committed and the error is a
// *MissingBlobsError naming them. Adopting a point held already (same ID,
// VM and time) does nothing: a sync whose reply was lost runs again. Another
// point of that VM and time, or of that ID, is ErrExists.
func (r *Repository) AdoptRestorePoint(ctx context.Context, rp *RestorePoint) (err error) {
	defer r.guardIndex(&err, "adopt "+rp.Name())
	if !r.writable {
		return ErrReadOnly
	}
	enc, err := encodeRestorePoint(rp)
	if err != nil {
		return err
	}
	cp, err := decodeRestorePoint(enc, r.cfg.ChunkSize, r.cfg.PageEntries)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", rp.Name(), err)
	}
	if !validRecordID(cp.ID) {
		return fmt.Errorf("adopt %s: %w: restore point ID %q", rp.Name(), ErrInvalid, cp.ID)
	}
	if err := ValidateVMName(cp.VM); err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	if err := CheckTime(cp.Time); err != nil || !cp.Time.Equal(cp.Time.UTC().Truncate(time.Second)) {
		return fmt.Errorf("adopt %s: %w: time %s", rp.Name(), ErrInvalid, cp.Time)
	}
	cp.Time = cp.Time.UTC()
	key := rpKey(r.meta.vmPart(cp.VM), cp.Time)
	if held, err := getValue(r.db, rpIDKey(cp.ID)); err == nil && bytes.Equal(held, key) {
		return nil
	}
	if _, err := getValue(r.db, key); err == nil {
		return fmt.Errorf("adopt %s: %w", cp.Name(), ErrExists)
	}
	if _, err := getValue(r.db, rpIDKey(cp.ID)); err == nil {
		return fmt.Errorf("adopt %s: %w: a restore point with ID %s", cp.Name(), ErrExists, cp.ID)
	}
	if err := r.pw.flush(ctx); err != nil {
		return fmt.Errorf("adopt %s: %w", cp.Name(), err)
	}
	missing, err := r.missingBlobs(ctx, cp)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", cp.Name(), err)
	}
	if len(missing) > 0 {
		return &MissingBlobsError{Point: cp.Name(), IDs: missing}
	}
	var lock time.Time
	if rp.LockedUntil.After(time.Now()) {
		lock = rp.LockedUntil.UTC().Truncate(time.Second)
		if err := CheckTime(lock); err != nil {
			return fmt.Errorf("adopt %s: lock: %w", cp.Name(), err)
		}
	}
	_, err = r.commitRecord(ctx, cp, lock)
	return err
}

// missingBlobs lists the pages and chunks of rp the index does not hold
// (a page it holds is read for its chunks).
func (r *Repository) missingBlobs(ctx context.Context, rp *RestorePoint) ([]ID, error) {
	seen := map[ID]bool{}
	var missing []ID
	held := func(id ID) (bool, error) {
		if id.IsZero() || seen[id] {
			return true, nil
		}
		seen[id] = true
		if _, err := getValue(r.db, chunkKey(id)); errors.Is(err, ErrNotFound) {
			missing = append(missing, id)
			return false, nil
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	for i := range rp.Disks {
		for _, pid := range rp.Disks[i].Pages {
			if pid.IsZero() || seen[pid] {
				continue
			}
			ok, err := held(pid)
			if err != nil || !ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			ids, err := r.page(ctx, pid)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				if _, err := held(id); err != nil {
					return nil, err
				}
			}
		}
	}
	return missing, nil
}
