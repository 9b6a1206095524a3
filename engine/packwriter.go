package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// packWriter is the repository's single pack writer. Blobs arrive from many
// hashing/compressing goroutines; one goroutine appends them to the open
// pack, and a second one seals full packs (footer, parity, stored through
// the backend) and commits their index entries, so filling and sealing
// overlap.
//
// A blob's ID stays in pending from submission until its pack's index batch
// commits, so concurrent writers of the same content store it once. Any
// error is sticky: the writer refuses further blobs and every flush reports
// it, so no restore point can commit over lost data.
type packWriter struct {
	r     *Repository
	in    chan pwMsg
	sealq chan sealMsg
	done  chan struct{}
	bufs  sync.Pool
	// bodies are the buffers of sealed packs, for the next packs to fill:
	// a fresh buffer of tens of MiB costs a page fault per 4 KiB on its
	// first write, more than the copy into it.
	bodies chan []byte
	// parBuf is the last sidecar's buffer, for the next (seal only).
	parBuf []byte

	mu      sync.Mutex
	pending map[ID]struct{}
	err     error
	closed  bool
}

type pwMsg struct {
	id    ID
	data  []byte
	buf   *[]byte
	raw   uint32
	crc   uint32 // CRC-32C of data, for the index
	flags byte
	flush chan error
}

// openPack is the pack being filled. It is held in memory until it is
// sealed and stored whole.
type openPack struct {
	id      PackID
	body    []byte
	entries []packEntry
	err     error // making its ID failed
}

type sealMsg struct {
	pack  *openPack
	flush chan error
}

func newPackWriter(r *Repository) *packWriter {
	pw := &packWriter{r: r, in: make(chan pwMsg, 2*r.workers), sealq: make(chan sealMsg, 1),
		done: make(chan struct{}), pending: map[ID]struct{}{}, bodies: make(chan []byte, 3)}
	blobCap := maxEncodedLen(r.cfg.ChunkSize)
	pw.bufs.New = func() any { b := make([]byte, 0, blobCap); return &b }
	sealed := make(chan struct{})
	go pw.fill()
	go func() { pw.sealLoop(); close(sealed) }()
	go func() { <-sealed; close(pw.done) }()
	return pw
}

func (pw *packWriter) stickyErr() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.err
}

// submit stores plain under id unless the repository has it already. It
// returns the stored size when the blob is new.
func (pw *packWriter) submit(ctx context.Context, id ID, plain []byte, page bool) (stored int, isNew bool, err error) {
	if ok, err := pw.reserve(id); !ok || err != nil {
		return 0, false, err
	}
	n, err := pw.enqueue(ctx, id, plain, page)
	return n, err == nil, err
}

// submitStored is submit for a blob already encoded (sync moves blobs as
// they are stored); stored is copied.
func (pw *packWriter) submitStored(ctx context.Context, id ID, stored []byte, raw uint32, flags byte, crc uint32) (isNew bool, err error) {
	if ok, err := pw.reserve(id); !ok || err != nil {
		return false, err
	}
	buf := pw.bufs.Get().(*[]byte)
	_, err = pw.send(ctx, pwMsg{id: id, data: append((*buf)[:0], stored...), buf: buf, raw: raw, crc: crc, flags: flags})
	return err == nil, err
}

// reserve puts id in pending unless the repository holds it already or
// another writer is storing it; ok reports whether the caller stores it.
func (pw *packWriter) reserve(id ID) (ok bool, err error) {
	pw.mu.Lock()
	if pw.err != nil {
		err := pw.err
		pw.mu.Unlock()
		return false, err
	}
	_, busy := pw.pending[id]
	pw.mu.Unlock()
	if busy {
		return false, nil
	}
	if _, err := getValue(pw.r.db, chunkKey(id)); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("look up chunk %s: %w", id.Short(), err)
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if _, busy := pw.pending[id]; busy {
		return false, nil
	}
	pw.pending[id] = struct{}{}
	return true, nil
}

// rewrite stores plain under id in a new pack even though the index
// locates it elsewhere: gc keeps a referenced blob of a pack it replaces.
// The seal of the new pack points the blob's location at it.
func (pw *packWriter) rewrite(ctx context.Context, id ID, plain []byte, page bool) error {
	if err := pw.claim(id); err != nil {
		return err
	}
	_, err := pw.enqueue(ctx, id, plain, page)
	return err
}

// rewriteStored is rewrite for a blob whose stored bytes (compressed,
// sealed) were read and checked against their CRC-32C: they move to the
// new pack as they are, without decoding or encoding them again.
func (pw *packWriter) rewriteStored(ctx context.Context, id ID, stored []byte, raw uint32, flags byte, crc uint32) error {
	if err := pw.claim(id); err != nil {
		return err
	}
	buf := pw.bufs.Get().(*[]byte)
	_, err := pw.send(ctx, pwMsg{id: id, data: append((*buf)[:0], stored...), buf: buf, raw: raw, crc: crc, flags: flags})
	return err
}

// claim puts id in pending, unless the writer has failed.
func (pw *packWriter) claim(id ID) error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.err
	}
	pw.pending[id] = struct{}{}
	return nil
}

// enqueue encodes plain and hands it to the filler; id is in pending.
func (pw *packWriter) enqueue(ctx context.Context, id ID, plain []byte, page bool) (stored int, err error) {
	buf := pw.bufs.Get().(*[]byte)
	data, flags := pw.r.codec.encode(*buf, plain, id, page)
	return pw.send(ctx, pwMsg{id: id, data: data, buf: buf, raw: uint32(len(plain)), crc: crc32.Checksum(data, crcTable), flags: flags})
}

// send hands m to the filler. On cancellation its blob leaves pending
// and its buffer goes back to the pool.
func (pw *packWriter) send(ctx context.Context, m pwMsg) (stored int, err error) {
	select {
	case pw.in <- m:
		return len(m.data), nil
	case <-ctx.Done():
		pw.mu.Lock()
		delete(pw.pending, m.id)
		pw.mu.Unlock()
		pw.bufs.Put(m.buf)
		return 0, ctx.Err()
	}
}

// flush seals the open pack and waits until every blob submitted before it
// is durable and indexed.
func (pw *packWriter) flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case pw.in <- pwMsg{flush: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pw *packWriter) close() error {
	pw.mu.Lock()
	if pw.closed {
		pw.mu.Unlock()
		return nil
	}
	pw.closed = true
	pw.mu.Unlock()
	close(pw.in)
	<-pw.done
	return pw.stickyErr()
}

func (pw *packWriter) newPack() *openPack {
	p := &openPack{}
	if _, err := rand.Read(p.id[:]); err != nil {
		p.err = err
	}
	return p
}

// body returns a buffer for a pack's blobs, that of a stored pack when
// there is one. A pack gets it with its first blob: a writer that is given
// no blobs (a sync moving whole packs) allocates none.
func (pw *packWriter) body() []byte {
	select {
	case b := <-pw.bodies:
		return b[:0]
	default:
		return make([]byte, 0, pw.r.cfg.PackSize+int64(maxEncodedLen(pw.r.cfg.ChunkSize)))
	}
}

// maxPackBlobs bounds the blobs of one pack. Real chunks (64 KiB to 8 MiB,
// compressed) fill a pack by size at a few thousand; chunks that are
// nearly all zeros compress a thousandfold and would put a million blobs
// in one pack, with a table of tens of MiB that every seal, rewrite and
// verify of it holds in memory.
var maxPackBlobs = 1 << 14 // set by a test

// fill appends blobs to the open pack and hands full packs to the sealer.
func (pw *packWriter) fill() {
	cur := pw.newPack()
	for m := range pw.in {
		if m.flush != nil {
			if len(cur.entries) > 0 {
				pw.sealq <- sealMsg{pack: cur}
				cur = pw.newPack()
			}
			pw.sealq <- sealMsg{flush: m.flush}
			continue
		}
		if len(cur.entries) > 0 && (int64(len(cur.body)+len(m.data)) > pw.r.cfg.PackSize || len(cur.entries) >= maxPackBlobs) {
			pw.sealq <- sealMsg{pack: cur}
			cur = pw.newPack()
		}
		if cur.body == nil {
			cur.body = pw.body()
		}
		cur.entries = append(cur.entries, packEntry{ID: m.id, Offset: uint64(len(cur.body)),
			Stored: uint32(len(m.data)), Raw: m.raw, Flags: m.flags, CRC: m.crc})
		cur.body = append(cur.body, m.data...)
		*m.buf = m.data[:0]
		pw.bufs.Put(m.buf)
	}
	if len(cur.entries) > 0 {
		pw.sealq <- sealMsg{pack: cur}
	}
	close(pw.sealq)
}

func (pw *packWriter) sealLoop() {
	for m := range pw.sealq {
		if m.flush != nil {
			m.flush <- pw.stickyErr()
			continue
		}
		// After an error, packs are dropped unstored.
		if pw.stickyErr() == nil {
			if err := pw.seal(m.pack); err != nil {
				pw.mu.Lock()
				pw.err = err
				pw.mu.Unlock()
				pw.r.log.Error("pack writer failed; no further data is accepted", "err", err)
			}
		}
		pw.mu.Lock()
		for _, e := range m.pack.entries {
			delete(pw.pending, e.ID)
		}
		pw.mu.Unlock()
		// The pack is stored (or dropped): its buffer serves the next one.
		select {
		case pw.bodies <- m.pack.body:
		default:
		}
	}
}

// seal stores a pack and then its parity sidecar, each with one Put of
// the backend (atomic, and durable when it returns), then commits the
// pack's index entries in one synced batch: the data is durable before
// anything names it. A seal stopped before the batch leaves a pack without
// a `k` record, perhaps without its sidecar, which the next writer indexes
// (orphans.go); a seal that fails deletes what it stored.
func (pw *packWriter) seal(p *openPack) error {
	r := pw.r
	ctx := context.Background() // a seal is not cancelled halfway: the pack writer's error is sticky
	id := p.id
	if p.err != nil {
		return fmt.Errorf("seal pack: %w", p.err)
	}
	c := r.cfg
	data, footer := sealPack(p.body, p.entries, c.Parity.ShardSize, c.Parity.Data, c.Parity.Parity)
	par, err := buildParityInto(pw.parBuf, data[:footer.DataLen], footer.TableOff, footer.ShardSums, c.Parity.ShardSize, c.Parity.Data, c.Parity.Parity)
	if err != nil {
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	if err := backend.PutBytes(ctx, r.be, packName(id), data); err != nil {
		pw.unstore(ctx, id)
		return fmt.Errorf("write pack %s: %w", id, err)
	}
	if err := fault(fpPackStored); err != nil {
		return fmt.Errorf("write pack %s: %w", id, err)
	}
	pw.parBuf = par // stored when PutBytes returns: the next seal reuses it
	if err := backend.PutBytes(ctx, r.be, parityName(id), par); err != nil {
		pw.unstore(ctx, id)
		return fmt.Errorf("write parity of pack %s: %w", id, err)
	}
	if err := fault(fpParityStored); err != nil {
		return fmt.Errorf("write parity of pack %s: %w", id, err)
	}
	rec := packRecord{Size: int64(len(data)), DataLen: int64(footer.DataLen), Blobs: uint32(len(p.entries)), Sealed: time.Now().Unix()}
	if _, err := r.indexPack(id, p.entries, rec, false); err != nil {
		return err
	}
	return fault(fpPackIndexed)
}

// indexPack writes, in one synced batch, pack id's `k` record rec and a
// location for each of its blobs (entries, with their CRCs); with keepHeld,
// a blob the index holds already keeps its location. It returns how many
// locations it wrote.
func (r *Repository) indexPack(id PackID, entries []packEntry, rec packRecord, keepHeld bool) (int, error) {
	b := r.db.NewBatch()
	defer b.Close()
	n := 0
	for _, e := range entries {
		if keepHeld {
			if _, err := getValue(r.db, chunkKey(e.ID)); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				return 0, fmt.Errorf("look up chunk %s: %w", e.ID.Short(), err)
			}
		}
		loc := location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Flags: e.Flags, CRC: e.CRC, HasCRC: true}
		if err := b.Set(chunkKey(e.ID), encodeLocation(loc), nil); err != nil {
			return 0, err
		}
		n++
	}
	if err := b.Set(packKey(id), encodePackRecord(rec), nil); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("commit index for pack %s: %w", id, err)
	}
	return n, nil
}

// unstore deletes what a failed seal may have stored of pack id (a Put
// that failed after its object became visible, or the pack whose sidecar
// failed): nothing names it yet. What it cannot delete, the next writer
// indexes as an orphan.
func (pw *packWriter) unstore(ctx context.Context, id PackID) {
	for _, name := range []string{parityName(id), packName(id)} {
		if err := pw.r.be.Delete(ctx, name); err != nil {
			pw.r.log.Warn("a failed seal left an unindexed object; the next writer indexes it", "object", name, "err", err)
		}
	}
}
