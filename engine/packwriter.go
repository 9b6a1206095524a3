package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/cockroachdb/pebble/v2"
)

// packWriter is the repository's single pack writer. Blobs arrive from many
// hashing/compressing goroutines; one goroutine appends them to the open
// pack, and a second one seals full packs (footer, parity, fsync, rename)
// and commits their index entries, so filling and sealing overlap.
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

// openPack is the pack being filled. Its body is written to a temporary
// file as it grows, progressiveWrite bytes at a time, by a goroutine of its
// own with writeback started at once: sealing then appends the footer and
// waits for the tail, and the filler never waits for the disk. The body
// also stays in memory for the footer's checksums and the parity.
type openPack struct {
	id      PackID
	body    []byte
	entries []packEntry
	queued  int // bytes of body handed to the writer goroutine

	wq    chan pieceMsg // pieces of the pack to write, in order
	wdone chan struct{} // closed when the writer goroutine ends
	f     *os.File      // temporary pack file (owned by the writer goroutine until wdone)
	err   error         // first error; read after wdone
}

// pieceMsg is a piece of a pack to write at off.
type pieceMsg struct {
	off int
	b   []byte
}

// progressiveWrite is how much of an open pack accumulates before it is
// written to its file.
const progressiveWrite = 8 << 20

type sealMsg struct {
	pack  *openPack
	flush chan error
}

func newPackWriter(r *Repository) *packWriter {
	pw := &packWriter{r: r, in: make(chan pwMsg, 2*r.workers), sealq: make(chan sealMsg, 1),
		done: make(chan struct{}), pending: map[ID]struct{}{}}
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
	pw.mu.Lock()
	if pw.err != nil {
		err := pw.err
		pw.mu.Unlock()
		return 0, false, err
	}
	_, busy := pw.pending[id]
	pw.mu.Unlock()
	if busy {
		return 0, false, nil
	}
	if _, err := getValue(pw.r.db, chunkKey(id)); err == nil {
		return 0, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return 0, false, fmt.Errorf("look up chunk %s: %w", id.Short(), err)
	}
	pw.mu.Lock()
	if _, busy := pw.pending[id]; busy {
		pw.mu.Unlock()
		return 0, false, nil
	}
	pw.pending[id] = struct{}{}
	pw.mu.Unlock()

	buf := pw.bufs.Get().(*[]byte)
	data, flags := pw.r.codec.encode(*buf, plain, id, page)
	select {
	case pw.in <- pwMsg{id: id, data: data, buf: buf, raw: uint32(len(plain)), crc: crc32.Checksum(data, crcTable), flags: flags}:
		return len(data), true, nil
	case <-ctx.Done():
		pw.mu.Lock()
		delete(pw.pending, id)
		pw.mu.Unlock()
		pw.bufs.Put(buf)
		return 0, false, ctx.Err()
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
	p := &openPack{body: make([]byte, 0, pw.r.cfg.PackSize+int64(maxEncodedLen(pw.r.cfg.ChunkSize)))}
	if _, err := rand.Read(p.id[:]); err != nil {
		p.err = err
	}
	return p
}

func (pw *packWriter) tmpPackPath(id PackID) string {
	return filepath.Join(pw.r.dir, dirTmp, id.String()+".pack")
}

// writeOut hands the part of data (p's body, or the sealed pack that
// extends it) not yet queued to p's writer goroutine, starting it first.
func (pw *packWriter) writeOut(p *openPack, data []byte) {
	if len(data) == p.queued {
		return
	}
	if p.wq == nil {
		p.wq, p.wdone = make(chan pieceMsg, 16), make(chan struct{})
		go pw.packFileWriter(p)
	}
	// The writer reads data[queued:] while the filler appends past it:
	// disjoint bytes of one array (its capacity never grows while filling).
	p.wq <- pieceMsg{p.queued, data[p.queued:]}
	p.queued = len(data)
}

// packFileWriter writes the ranges queued for p to its temporary file.
func (pw *packWriter) packFileWriter(p *openPack) {
	defer close(p.wdone)
	for r := range p.wq {
		if p.err != nil {
			continue
		}
		if p.f == nil {
			f, err := os.OpenFile(pw.tmpPackPath(p.id), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				p.err = fmt.Errorf("create pack %s: %w", p.id, err)
				continue
			}
			p.f = f
		}
		if _, err := p.f.WriteAt(r.b, int64(r.off)); err != nil {
			p.err = fmt.Errorf("write pack %s: %w", p.id, err)
			continue
		}
		startWriteback(p.f, int64(r.off), int64(len(r.b)))
	}
}

// finishWrites waits until p's file holds everything queued.
func (p *openPack) finishWrites() {
	if p.wq != nil {
		close(p.wq)
		<-p.wdone
		p.wq = nil
	}
}

// discard drops an open pack that will not be sealed.
func (pw *packWriter) discard(p *openPack) {
	p.finishWrites()
	if p.f != nil {
		p.f.Close()
		os.Remove(p.f.Name())
		p.f = nil
	}
}

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
		if int64(len(cur.body)+len(m.data)) > pw.r.cfg.PackSize && len(cur.entries) > 0 {
			pw.sealq <- sealMsg{pack: cur}
			cur = pw.newPack()
		}
		cur.entries = append(cur.entries, packEntry{ID: m.id, Offset: uint64(len(cur.body)),
			Stored: uint32(len(m.data)), Raw: m.raw, Flags: m.flags, CRC: m.crc})
		cur.body = append(cur.body, m.data...)
		*m.buf = m.data[:0]
		pw.bufs.Put(m.buf)
		if len(cur.body)-cur.queued >= progressiveWrite {
			pw.writeOut(cur, cur.body)
		}
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
		if pw.stickyErr() != nil {
			pw.discard(m.pack)
		} else if err := pw.seal(m.pack); err != nil {
			pw.discard(m.pack)
			pw.mu.Lock()
			pw.err = err
			pw.mu.Unlock()
			pw.r.log.Error("pack writer failed; no further data is accepted", "err", err)
		}
		pw.mu.Lock()
		for _, e := range m.pack.entries {
			delete(pw.pending, e.ID)
		}
		pw.mu.Unlock()
	}
}

// seal writes a pack and its parity crash-safely, then commits its index
// entries in one synced batch: the data is durable before anything names it.
func (pw *packWriter) seal(p *openPack) error {
	r := pw.r
	id := p.id
	c := r.cfg
	data, footer := sealPack(p.body, p.entries, c.Parity.ShardSize, c.Parity.Data, c.Parity.Parity)
	// The rest of the pack goes to its file while the parity is computed.
	// On error, sealLoop's discard waits for the writes and drops the file.
	pw.writeOut(p, data)
	par, err := buildParity(data[:footer.DataLen], footer.TableOff, footer.ShardSums, c.Parity.ShardSize, c.Parity.Data, c.Parity.Parity)
	if err != nil {
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	tmpPack := pw.tmpPackPath(id)
	tmpPar := filepath.Join(r.dir, dirTmp, id.String()+".par")
	cleanup := func() { os.Remove(tmpPack); os.Remove(tmpPar) }
	p.finishWrites()
	if p.err != nil {
		cleanup()
		return p.err
	}
	err = p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	if err == nil {
		err = fault(fpPackWritten)
	}
	if err != nil {
		cleanup()
		return fmt.Errorf("write pack %s: %w", id, err)
	}
	err = writeSynced(tmpPar, par)
	if err == nil {
		err = fault(fpParityWritten)
	}
	if err != nil {
		cleanup()
		return fmt.Errorf("write parity of pack %s: %w", id, err)
	}
	final := packPath(r.dir, id)
	sub := filepath.Dir(final)
	if _, err := os.Stat(sub); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(sub, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			cleanup()
			return fmt.Errorf("seal pack %s: %w", id, err)
		}
		if err := atomicfile.SyncDir(filepath.Join(r.dir, dirPacks)); err != nil {
			cleanup()
			return err
		}
	}
	if err := os.Rename(tmpPar, parityPath(r.dir, id)); err != nil {
		cleanup()
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	if err := fault(fpParityRenamed); err != nil {
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	if err := os.Rename(tmpPack, final); err != nil {
		cleanup()
		os.Remove(parityPath(r.dir, id))
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	if err := atomicfile.SyncDir(sub); err != nil {
		return err
	}
	if err := fault(fpPackRenamed); err != nil {
		return fmt.Errorf("seal pack %s: %w", id, err)
	}
	b := r.db.NewBatch()
	defer b.Close()
	for _, e := range p.entries {
		loc := location{Pack: id, Offset: e.Offset, Stored: e.Stored, Raw: e.Raw, Flags: e.Flags, CRC: e.CRC, HasCRC: true}
		if err := b.Set(chunkKey(e.ID), encodeLocation(loc), nil); err != nil {
			return err
		}
	}
	rec := packRecord{Size: int64(len(data)), DataLen: int64(footer.DataLen), Blobs: uint32(len(p.entries)), Sealed: time.Now().Unix()}
	if err := b.Set(packKey(id), encodePackRecord(rec), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit index for pack %s: %w", id, err)
	}
	return fault(fpPackIndexed)
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
