package dr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
)

// Options choose what a sync sends and how fast.
type Options struct {
	// VMs are globs (path.Match) of the VM names to sync; empty: all.
	VMs []string
	// Since, when set, skips restore points taken before it.
	Since time.Time
	// BytesPerSecond caps the blob payload sent (0: unlimited).
	BytesPerSecond int64
	// ResyncCorrupt reads back every page and chunk the target holds for
	// the points synced and sends again those that are damaged there.
	ResyncCorrupt bool
	// Progress, when set, is called after each batch and each point.
	Progress func(Progress)
}

// Progress is a sync's state, for a progress bar.
type Progress struct {
	Points, PointsDone int
	Current            string
	BytesSent          int64
}

// Report says what a sync did (ahvfs sync --json).
type Report struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// RestorePoints is how many restore points the target gained.
	RestorePoints int      `json:"restore_points"`
	Synced        []string `json:"synced"`
	// AlreadyThere are the points the target had (their locks are
	// extended when the source's are longer).
	AlreadyThere []string `json:"already_there,omitempty"`
	// Older are points skipped because the target holds a newer point of
	// the VM (it was pruned there, or the target is ahead).
	Older []string `json:"skipped_older,omitempty"`
	// Conflicts are points whose VM and time the target holds with other
	// content (another restore point ID): left alone.
	Conflicts  []string `json:"conflicts,omitempty"`
	LocksSet   int      `json:"locks_extended"`
	PagesSent  int64    `json:"pages_sent"`
	ChunksSent int64    `json:"chunks_sent"`
	// PacksSent is how many of the chunks moved as whole pack files.
	PacksSent   int64   `json:"packs_sent"`
	BytesSent   int64   `json:"bytes_sent"`
	BlobsStored int64   `json:"blobs_stored"`
	Resent      int64   `json:"resent_damaged"`
	Seconds     float64 `json:"seconds"`
}

// Batch sizes: IDs per have/want question, pages expanded at once, blobs
// per transfer (what a cut connection loses at most).
const (
	haveBatch     = 4096
	pageBatch     = 64
	transferBatch = 128
)

// syncer is one run of Sync.
type syncer struct {
	src  Source
	dst  Target
	o    Options
	bw   *clusterjob.Bandwidth
	rep  *Report
	prog Progress
	// known are the blobs the target is known to hold in this run.
	known map[engine.ID]bool

	// reencode: the repositories' blobs differ (see reencode.go).
	reencode bool
	// resending: the point being handled is on the target already (with
	// ResyncCorrupt), so what is stored replaces damaged blobs.
	resending bool

	pages, chunks, packs, bytes, stored, resent atomic.Int64
	progMu                                      sync.Mutex
}

// Sync copies the restore points of src that dst lacks to dst.
func Sync(ctx context.Context, src Source, dst Target, o Options) (*Report, error) {
	start := time.Now()
	si, err := src.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("sync: source: %w", err)
	}
	di, err := dst.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("sync: target: %w", err)
	}
	rep := &Report{Source: si.Location, Target: di.Location, Synced: []string{}}
	if si.RepoID == di.RepoID {
		return nil, fmt.Errorf("sync: %s and %s are the same repository (ID %s)", si.Location, di.Location, si.RepoID)
	}
	s := &syncer{src: src, dst: dst, o: o, bw: clusterjob.NewBandwidth(o.BytesPerSecond), rep: rep, known: map[engine.ID]bool{}}
	if si.TransferKey != di.TransferKey {
		why := fmt.Sprintf("%s and %s store blobs differently (chunk size, page size or encryption key: %s, %s)", si.Location, di.Location, si.TransferKey, di.TransferKey)
		if _, _, ok := s.reencodable(); !ok {
			return nil, fmt.Errorf("sync: %s, and one side cannot re-encode: make the DR repository with "+
				"'ahvfs init --copy-params-from SOURCE' so that blobs move as they are", why)
		}
		if o.ResyncCorrupt {
			return nil, fmt.Errorf("sync: %s: --resync-corrupt compares blobs by ID, which differ between them", why)
		}
		s.reencode = true
	}
	err = s.run(ctx)
	rep.PagesSent, rep.ChunksSent, rep.BytesSent, rep.BlobsStored = s.pages.Load(), s.chunks.Load(), s.bytes.Load(), s.stored.Load()
	rep.Resent, rep.PacksSent = s.resent.Load(), s.packs.Load()
	rep.Seconds = time.Since(start).Seconds()
	return rep, err
}

func (s *syncer) run(ctx context.Context) error {
	srcPoints, err := s.src.Points(ctx)
	if err != nil {
		return fmt.Errorf("sync: source: %w", err)
	}
	dstPoints, err := s.dst.Points(ctx)
	if err != nil {
		return fmt.Errorf("sync: target: %w", err)
	}
	have := map[string]Point{}
	newest := map[string]time.Time{}
	for _, p := range dstPoints {
		have[p.Name()] = p
		if p.Time.After(newest[p.VM]) {
			newest[p.VM] = p.Time
		}
	}
	var todo []Point
	for _, p := range srcPoints {
		if s.selected(p) {
			todo = append(todo, p)
		}
	}
	// Oldest first: the target then always holds a prefix of each VM's
	// history, and its newest point tells a rerun where to go on.
	slices.SortFunc(todo, func(a, b Point) int { return a.Time.Compare(b.Time) })
	s.setProgress(func(p *Progress) { p.Points = len(todo) })
	for _, p := range todo {
		s.setProgress(func(pr *Progress) { pr.Current = p.Name() })
		if err := s.point(ctx, p, have, newest); err != nil {
			return err
		}
		s.setProgress(func(p *Progress) { p.PointsDone++ })
	}
	return nil
}

func (s *syncer) selected(p Point) bool {
	if !s.o.Since.IsZero() && p.Time.Before(s.o.Since) {
		return false
	}
	if len(s.o.VMs) == 0 {
		return true
	}
	for _, g := range s.o.VMs {
		if ok, _ := path.Match(g, p.VM); ok || g == p.VM {
			return true
		}
	}
	return false
}

// point brings one restore point to the target.
func (s *syncer) point(ctx context.Context, p Point, have map[string]Point, newest map[string]time.Time) error {
	name := p.Name()
	if d, ok := have[name]; ok {
		if d.ID != p.ID && d.Meta[SourceIDMeta] != p.ID {
			s.rep.Conflicts = append(s.rep.Conflicts, name)
			return nil
		}
		s.rep.AlreadyThere = append(s.rep.AlreadyThere, name)
		if p.LockedUntil.After(d.LockedUntil) && p.LockedUntil.After(time.Now()) {
			if err := s.dst.Lock(ctx, name, p.LockedUntil); err != nil {
				return fmt.Errorf("sync %s: extend its lock on the target: %w", name, err)
			}
			s.rep.LocksSet++
		}
		if !s.o.ResyncCorrupt {
			return nil
		}
		// Its blobs are read back on the target, and damaged ones sent.
		s.resending = true
		defer func() { s.resending = false }()
		return s.sendPoint(ctx, p)
	}
	if p.Time.Before(newest[p.VM]) {
		s.rep.Older = append(s.rep.Older, name)
		return nil
	}
	if s.reencode {
		if err := s.reencodePoint(ctx, p); err != nil {
			return err
		}
	} else {
		if err := s.sendPoint(ctx, p); err != nil {
			return err
		}
		if err := s.adopt(ctx, p); err != nil {
			return err
		}
	}
	s.rep.RestorePoints++
	s.rep.Synced = append(s.rep.Synced, name)
	return nil
}

// adopt commits p on the target, sending what it still lacks (a page the
// target held without all its chunks: a gc there left the page and
// removed the chunks) and trying again.
func (s *syncer) adopt(ctx context.Context, p Point) error {
	for attempt := 0; ; attempt++ {
		err := s.dst.Adopt(ctx, p)
		var miss *engine.MissingBlobsError
		if err == nil || !errors.As(err, &miss) || attempt == 2 {
			if err != nil {
				return fmt.Errorf("sync %s: %w", p.Name(), err)
			}
			return nil
		}
		pages := map[engine.ID]bool{}
		for _, d := range p.Disks {
			for _, id := range d.Pages {
				pages[id] = true
			}
		}
		var missPages, missChunks []engine.ID
		for _, id := range miss.IDs {
			delete(s.known, id)
			if pages[id] {
				missPages = append(missPages, id)
			} else {
				missChunks = append(missChunks, id)
			}
		}
		if err := s.transferChunks(ctx, missChunks, false); err != nil {
			return err
		}
		if err := s.pagesAndChunks(ctx, missPages, nil, true); err != nil {
			return err
		}
	}
}

// sendPoint sends the pages and chunks of p the target lacks (or, with
// ResyncCorrupt, holds damaged).
func (s *syncer) sendPoint(ctx context.Context, p Point) error {
	var pages []engine.ID
	seen := map[engine.ID]bool{}
	for _, d := range p.Disks {
		for _, id := range d.Pages {
			if !id.IsZero() && !seen[id] && !s.known[id] {
				seen[id] = true
				pages = append(pages, id)
			}
		}
	}
	want, err := s.want(ctx, pages)
	if err != nil {
		return fmt.Errorf("sync %s: %w", p.Name(), err)
	}
	if !s.o.ResyncCorrupt {
		return s.pagesAndChunks(ctx, want, nil, false)
	}
	// Every page is walked for its chunks; only damaged or missing pages
	// are sent again.
	wanted := map[engine.ID]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	return s.pagesAndChunks(ctx, pages, wanted, false)
}

// pagesAndChunks expands pages into their chunks, sends the chunks the
// target lacks, makes them durable, then sends the pages (those in send,
// or all when send is nil). Chunks before pages: a page the target holds
// promises its chunks to the next run.
func (s *syncer) pagesAndChunks(ctx context.Context, pages []engine.ID, send map[engine.ID]bool, replace bool) error {
	for len(pages) > 0 {
		batch := pages[:min(pageBatch, len(pages))]
		pages = pages[len(batch):]
		lists, err := s.src.PageIDs(ctx, batch)
		if err != nil {
			return err
		}
		var chunks []engine.ID
		seen := map[engine.ID]bool{}
		for _, ids := range lists {
			for _, id := range ids {
				if !id.IsZero() && !seen[id] && !s.known[id] {
					seen[id] = true
					chunks = append(chunks, id)
				}
			}
		}
		want, err := s.want(ctx, chunks)
		if err != nil {
			return err
		}
		if err := s.transferChunks(ctx, want, replace || s.o.ResyncCorrupt); err != nil {
			return err
		}
		if err := s.dst.Flush(ctx); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		for _, id := range chunks {
			s.known[id] = true
		}
		var sendPages []engine.ID
		for _, id := range batch {
			if send == nil || send[id] {
				sendPages = append(sendPages, id)
			}
		}
		if err := s.transfer(ctx, sendPages, replace || s.o.ResyncCorrupt); err != nil {
			return err
		}
		for _, id := range batch {
			s.known[id] = true
		}
	}
	return nil
}

// want asks the target which of ids it lacks (or holds damaged, with
// ResyncCorrupt), in batches.
func (s *syncer) want(ctx context.Context, ids []engine.ID) ([]engine.ID, error) {
	var out []engine.ID
	for len(ids) > 0 {
		batch := ids[:min(haveBatch, len(ids))]
		ids = ids[len(batch):]
		have, err := s.dst.Have(ctx, batch, s.o.ResyncCorrupt)
		if err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		if len(have) != len(batch) {
			return nil, fmt.Errorf("target: answered %d of %d have questions", len(have), len(batch))
		}
		for i, h := range have {
			if h {
				s.known[batch[i]] = true
			} else {
				out = append(out, batch[i])
			}
		}
	}
	return out, nil
}

// transferChunks moves chunks: first the source's packs every blob of
// which the target lacks, as whole files, then the rest blob by blob. Not
// when damaged blobs are replaced (the target keeps a location it holds),
// nor under a bandwidth limit (a pack would move in one burst of up to a
// GiB; blob by blob is paced evenly). A pack the target finds damaged goes
// blob by blob: the source rebuilds what it can from parity.
func (s *syncer) transferChunks(ctx context.Context, ids []engine.ID, replace bool) error {
	ps, ok := s.src.(PackSource)
	pt, ok2 := s.dst.(PackTarget)
	if replace || s.bw != nil || !ok || !ok2 || len(ids) == 0 {
		return s.transfer(ctx, ids, replace)
	}
	packs, rest, err := ps.WholePacks(ctx, ids)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	list := slices.SortedFunc(maps.Keys(packs), func(a, b engine.PackID) int { return bytes.Compare(a[:], b[:]) })
	var mu sync.Mutex
	pf, _ := ps.(packPrefetcher)
	ahead := func(i int) { // the source reads the next packs while these are checked
		if pf != nil && i < len(list) {
			pf.PrefetchPack(ctx, list[i])
		}
	}
	for i := range packsInFlight {
		ahead(i)
	}
	err = parallel(ctx, packsInFlight, len(list), func(ctx context.Context, i int) error {
		ahead(i + packsInFlight)
		p := list[i]
		data, err := ps.ReadPack(ctx, p, getPackBuf())
		n := 0
		if err == nil {
			n, err = pt.AdoptPack(ctx, p, data)
			if err == nil {
				// (Not after a failure: a transport may still be reading it.)
				putPackBuf(data)
			}
		} else if ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", engine.ErrCorrupt, err) // blob by blob reports or repairs it
		}
		if errors.Is(err, engine.ErrCorrupt) || errors.Is(err, engine.ErrExists) {
			mu.Lock()
			rest = append(rest, packs[p]...)
			mu.Unlock()
			return nil
		}
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		s.packs.Add(1)
		s.chunks.Add(int64(len(packs[p])))
		s.bytes.Add(int64(len(data)))
		s.stored.Add(int64(n))
		s.setProgress(nil)
		return nil
	})
	if err != nil {
		return err
	}
	return s.transfer(ctx, rest, replace)
}

// packsInFlight is how many whole packs a sync moves at once (more cost
// memory and, measured, no speed).
const packsInFlight = 2

// transfer moves blobs from the source to the target, as stored, in
// batches of transferBatch, two at a time.
func (s *syncer) transfer(ctx context.Context, ids []engine.ID, replace bool) error {
	var batches [][]engine.ID
	for len(ids) > 0 {
		n := min(transferBatch, len(ids))
		batches = append(batches, ids[:n])
		ids = ids[n:]
	}
	return parallel(ctx, 2, len(batches), func(ctx context.Context, i int) error {
		return s.transferBatch(ctx, batches[i], replace)
	})
}

func (s *syncer) transferBatch(ctx context.Context, ids []engine.ID, replace bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan *engine.StoredBlob, 4)
	var (
		stored   int
		storeErr error
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		stored, storeErr = s.dst.StoreBlobs(ctx, replace, ch)
		if storeErr != nil {
			cancel()
		}
	}()
	readErr := s.src.ReadBlobs(ctx, ids, func(b *engine.StoredBlob) error {
		if err := s.bw.Wait(ctx, len(b.Data)); err != nil {
			return err
		}
		select {
		case ch <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.IsPage() {
			s.pages.Add(1)
		} else {
			s.chunks.Add(1)
		}
		s.bytes.Add(int64(len(b.Data)))
		return nil
	})
	close(ch)
	wg.Wait()
	s.stored.Add(int64(stored))
	if s.resending {
		s.resent.Add(int64(stored))
	}
	s.setProgress(nil)
	if storeErr != nil {
		return storeErr
	}
	return readErr
}

// setProgress applies change (when not nil) and reports the progress.
func (s *syncer) setProgress(change func(*Progress)) {
	s.progMu.Lock()
	defer s.progMu.Unlock()
	if change != nil {
		change(&s.prog)
	}
	s.prog.BytesSent = s.bytes.Load()
	if s.o.Progress != nil {
		s.o.Progress(s.prog)
	}
}
