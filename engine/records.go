package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Record files hold the truth about restore points: each committed restore
// point is an immutable file records/rp/<id>.rec, written and fsync'd
// before the index commit that makes it visible. The index (Pebble) keeps a
// copy for fast queries and can be rebuilt from the record files and the
// packs alone (docs/FORMAT.md, "Record files").
const (
	dirRecords  = "records"
	dirRPs      = "records/rp"
	recordExt   = ".rec"
	recordMagic = "AHVFSRC1"
	// recordKindRP marks a restore-point record. Retention locks will be a
	// kind of their own.
	recordKindRP = 'r'
	recordHeader = 16
)

// validRecordID reports whether id is a restore-point ID as the writer
// makes them: 32 lower-case hex digits.
func validRecordID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// recordAAD binds a sealed record to its kind and ID, so a record copied
// under another name does not open.
func recordAAD(kind byte, id string) []byte {
	return []byte("ahvfs record " + string(kind) + " " + id)
}

// encodeRecordFile frames body (sealed when the repository is encrypted):
//
//	magic(8) version(1)=1 kind(1) flags(1: bit 0 sealed) 0(1) length u32 | body | CRC-32C u32
func encodeRecordFile(m metaCrypt, kind byte, id string, body []byte) []byte {
	var flags byte
	if m.encrypted() {
		flags = 1
		body = m.seal(recordAAD(kind, id), body)
	}
	b := make([]byte, 0, recordHeader+len(body)+4)
	b = append(b, recordMagic...)
	b = append(b, 1, kind, flags, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeRecordFile checks a record file's frame and returns its plain body.
// Damage, a wrong kind and a record sealed for another repository are
// ErrCorrupt.
func decodeRecordFile(m metaCrypt, kind byte, id string, b []byte) ([]byte, error) {
	if len(b) < recordHeader+4 || string(b[:8]) != recordMagic {
		return nil, fmt.Errorf("%w: not a record file (%d bytes)", ErrCorrupt, len(b))
	}
	if sum := binary.LittleEndian.Uint32(b[len(b)-4:]); sum != crc32.Checksum(b[:len(b)-4], crcTable) {
		return nil, fmt.Errorf("%w: record file checksum mismatch", ErrCorrupt)
	}
	if b[8] != 1 || b[9] != kind || b[10]&^1 != 0 || b[11] != 0 {
		return nil, fmt.Errorf("%w: record file header %x", ErrCorrupt, b[8:12])
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if int64(n) != int64(len(b)-recordHeader-4) {
		return nil, fmt.Errorf("%w: record file body of %d bytes, header says %d", ErrCorrupt, len(b)-recordHeader-4, n)
	}
	body := b[recordHeader : len(b)-4]
	sealed := b[10]&1 != 0
	if sealed != m.encrypted() {
		return nil, fmt.Errorf("%w: record file sealed=%v in a repository with encryption=%v", ErrCorrupt, sealed, m.encrypted())
	}
	return m.open(recordAAD(kind, id), body)
}

// writeRPFile stores the record file of a restore point durably (a Put of
// the backend: atomic, and durable when it returns). rec is its JSON
// record.
func (r *Repository) writeRPFile(ctx context.Context, id string, rec []byte) error {
	if err := backend.PutBytes(ctx, r.be, rpRecordName(id), encodeRecordFile(r.fileMeta(), recordKindRP, id, rec)); err != nil {
		return fmt.Errorf("write record of restore point %s: %w", id, err)
	}
	return nil
}

// readRecord reads record file name, of kind for id, and returns its
// checked (and opened, when sealed) body; errors name the file.
func (r *Repository) readRecord(ctx context.Context, name string, kind byte, id string) ([]byte, error) {
	b, err := backend.Get(ctx, r.be, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	body, err := decodeRecordFile(r.fileMeta(), kind, id, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return body, nil
}

// recordFile is one file of a listing of record files: its ID and its
// checked body, or why it could not be read (ErrCorrupt).
type recordFile struct {
	id   string
	body []byte
	err  error
}

// readRecords reads the record files of kind under prefix, in ID order. A
// file removed meanwhile is left out; a damaged one comes with its error;
// any other error ends the listing.
func (r *Repository) readRecords(ctx context.Context, prefix string, kind byte) ([]recordFile, error) {
	ids, err := r.listRecordIDs(ctx, prefix)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	out := make([]recordFile, 0, len(ids))
	for _, id := range ids {
		body, err := r.readRecord(ctx, prefix+id+recordExt, kind, id)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		out = append(out, recordFile{id, body, err})
	}
	return out, nil
}

// fileMeta seals record files: always with the repository's keys, whatever
// the index version (r.meta, for the catalog, seals only from version 3).
func (r *Repository) fileMeta() metaCrypt { return metaCrypt{k: r.keys} }

// readRPFile reads and checks the record file of restore point id.
func (r *Repository) readRPFile(ctx context.Context, id string) (*RestorePoint, []byte, error) {
	body, err := r.readRecord(ctx, rpRecordName(id), recordKindRP, id)
	if err != nil {
		return nil, nil, err
	}
	rp, err := decodeRestorePoint(body, r.cfg.ChunkSize, r.cfg.PageEntries)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s%s: %w", dirRPs, id, recordExt, err)
	}
	if rp.ID != id {
		return nil, nil, fmt.Errorf("%s/%s%s: %w: it holds restore point %s", dirRPs, id, recordExt, ErrCorrupt, rp.ID)
	}
	return rp, body, nil
}

// listRPFiles returns the IDs of the record files in records/rp/, sorted.
// (A writer sweeps the temporary files of interrupted writes on open.)
func (r *Repository) listRPFiles(ctx context.Context) ([]string, error) {
	return r.listRecordIDs(ctx, prefixRPs)
}

// indexRP adds a restore point's catalog entries to b: its record, the
// ID → key entry, and the VM record when db has none for the VM yet.
func (r *Repository) indexRP(db pebble.Reader, b *pebble.Batch, rp *RestorePoint, rec []byte) error {
	vm := r.meta.vmPart(rp.VM)
	key := rpKey(vm, rp.Time)
	if err := b.Set(key, r.meta.seal(key, rec), nil); err != nil {
		return err
	}
	if err := b.Set(rpIDKey(rp.ID), key, nil); err != nil {
		return err
	}
	vk := vmKey(vm)
	if _, err := getValue(db, vk); !errors.Is(err, ErrNotFound) {
		return err
	}
	return b.Set(vk, encodeVMValue(r.meta, vk, vmRecord{V: 1, Name: rp.VM, UUID: rp.VMUUID, First: rp.Time}), nil)
}

// indexedRPs returns the restore-point IDs the index holds, with their
// catalog keys.
func indexedRPs(db pebble.Reader) (map[string][]byte, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyRPByID}, UpperBound: []byte{keyRPByID + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string][]byte{}
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key()[1:])] = slices.Clone(it.Value())
	}
	return out, it.Error()
}

// reconcileRecords makes the index agree with the record files when a
// writer opens the repository: a record file the index lacks (a commit
// killed after its file was written, or an index that lost its newest
// records) is indexed; a restore point the index holds without its file
// gets the file written again from the index; an unreadable record file
// the index does not hold is moved to quarantine/. Every change is logged.
func (r *Repository) reconcileRecords(ctx context.Context) error {
	files, err := r.listRPFiles(ctx)
	if err != nil {
		return err
	}
	indexed, err := indexedRPs(r.db)
	if err != nil {
		return fmt.Errorf("list indexed restore points: %w", err)
	}
	b := r.db.NewIndexedBatch()
	defer b.Close()
	added := 0
	for _, id := range files {
		if _, ok := indexed[id]; ok {
			delete(indexed, id)
			continue
		}
		rp, rec, err := r.readRPFile(ctx, id)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err
			}
			dst, qerr := r.quarantine(ctx, rpRecordName(id))
			if qerr != nil {
				return fmt.Errorf("%v; %w", err, qerr)
			}
			r.log.Warn(fmt.Sprintf("%v: not indexed, moved to %s ('ahvfs verify' lists it)", err, dst))
			continue
		}
		if _, err := getValue(b, rpKey(r.meta.vmPart(rp.VM), rp.Time)); err == nil {
			r.log.Warn(fmt.Sprintf("record %s/%s%s names %s, which the index holds under another ID: not indexed ('ahvfs verify' lists it)", dirRPs, id, recordExt, rp.Name()))
			continue
		}
		if err := r.indexRP(b, b, rp, rec); err != nil {
			return fmt.Errorf("index restore point %s: %w", rp.Name(), err)
		}
		added++
		if r.remote {
			r.log.Debug(fmt.Sprintf("indexed restore point %s, committed by another host or before this cache was built", rp.Name()))
			continue
		}
		if r.repair != nil {
			r.log.Info(fmt.Sprintf("indexed restore point %s from %s/%s%s", rp.Name(), dirRPs, id, recordExt))
			continue
		}
		r.log.Warn(fmt.Sprintf("restore point %s was missing from the index (a commit was interrupted, or the index lost its newest records): indexed again from %s/%s%s", rp.Name(), dirRPs, id, recordExt))
	}
	if added > 0 {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("index restore points from record files: %w", err)
		}
		r.dirty.Store(true)
	}
	if r.remote {
		// The backend is the truth, shared with other hosts: a point
		// whose record file is gone was forgotten by one of them.
		return r.unindexForgotten(maps.Keys(indexed))
	}
	for id, key := range indexed {
		val, err := getValue(r.db, key)
		if err != nil {
			return fmt.Errorf("restore point %s: %w", id, err)
		}
		rp, err := r.decodeRPValue(key, val)
		if err != nil {
			r.log.Warn(fmt.Sprintf("restore point %s has no record file and its index entry is damaged (%v): 'ahvfs verify' lists it", id, err))
			continue
		}
		rec, _ := encodeRestorePoint(rp)
		if err := r.writeRPFile(ctx, id, rec); err != nil {
			return err
		}
		r.log.Warn(fmt.Sprintf("restore point %s had no record file: written again from the index", rp.Name()))
	}
	return nil
}

// staleReader reports whether r reads a checkpoint older than the one
// published now.
func (r *Repository) staleReader() bool {
	if r.writable {
		return false
	}
	cur, err := readCurrent(r.dir)
	r.mu.RLock()
	defer r.mu.RUnlock()
	return err == nil && cur > r.snapGen
}

// recordDrift compares the index's restore points with the record files
// for Verify and describes every difference: problems, and restore points
// whose commit the next writer finishes (a record file the index lacks,
// whose VM and time the index holds under no other ID).
func (r *Repository) recordDrift(ctx context.Context, db pebble.Reader) (problems, pending []string, err error) {
	files, err := r.listRPFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	indexed, err := indexedRPs(db)
	if err != nil {
		return nil, nil, fmt.Errorf("list indexed restore points: %w", err)
	}
	forgets, err := r.forgetsPending(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range forgets {
		pending = append(pending, fmt.Sprintf("restore point %s: its forget was interrupted; the next writer (any backup, import, forget or 'ahvfs repair index') finishes it", id))
		delete(indexed, id)
		if i := slices.Index(files, id); i >= 0 {
			files = slices.Delete(files, i, i+1)
		}
	}
	var out []string
	for _, id := range files {
		key, ok := indexed[id]
		delete(indexed, id)
		fileRP, fileRec, err := r.readRPFile(ctx, id)
		if err != nil {
			out = append(out, fmt.Sprintf("%v: the record file is damaged", err))
			continue
		}
		if !ok {
			if _, err := getValue(db, rpKey(r.meta.vmPart(fileRP.VM), fileRP.Time)); err == nil {
				out = append(out, fmt.Sprintf("restore point %s: %s/%s%s names it, and the index holds it under another ID; inspect both", fileRP.Name(), dirRPs, id, recordExt))
				continue
			}
			pending = append(pending, fmt.Sprintf("restore point %s: its record file is durable but its commit was interrupted; the next writer (any backup or import, or 'ahvfs repair index') indexes it", fileRP.Name()))
			continue
		}
		val, err := getValue(db, key)
		if err != nil {
			out = append(out, fmt.Sprintf("restore point %s: its index entry is missing (%v); run 'ahvfs repair index'", fileRP.Name(), err))
			continue
		}
		plain, err := r.meta.open(key, val)
		if err != nil || !bytes.Equal(plain, fileRec) {
			out = append(out, fmt.Sprintf("restore point %s: the index entry differs from %s/%s%s; run 'ahvfs repair index'", fileRP.Name(), dirRPs, id, recordExt))
		}
	}
	stale := r.staleReader()
	for id := range indexed {
		if stale {
			// Forgotten since this reader opened its index: the forget
			// publishes before it deletes the file.
			pending = append(pending, fmt.Sprintf("restore point %s: in the index this reader opened, but forgotten since (its record file is gone); run verify again to check the newer index", id))
			continue
		}
		out = append(out, fmt.Sprintf("restore point %s: in the index but %s/%s%s is missing; a writer writes it again from the index", id, dirRPs, id, recordExt))
	}
	slices.Sort(out)
	slices.Sort(pending)
	return out, pending, nil
}
