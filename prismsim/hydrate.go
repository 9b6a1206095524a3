package prismsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// VM disks backed by a file on an external repository (API notes §9a), as
// the cluster plays them: the simulator mounts the export with its own
// NFS client, serves the disk's reads from the export until each block is
// hydrated, copies the file into the disk in the background at
// Options.HydrationRate, and keeps guest writes: a block the guest wrote
// was completed from the export first and is never copied again. When
// every block is local the disk loses its data source and hydration info
// (v4 has no "completed" status).
//
// Simplifications: the export is mounted with MOUNT asked on the NFS port
// (ahvfs nfs-serve answers it there; a cluster asks the portmapper); other
// readers of a hydrating disk's file (snapshots, clones) see the blocks
// hydrated so far; a simulator restarted with disks still on an export
// reports them FAILED, and a disk whose hydration FAILED fails the
// guest's reads and writes.

// hydrateBlock is the unit of hydration and of guest-write fills.
const hydrateBlock = 1 << 20

// diskExternal is the persisted part: where the disk reads from.
type diskExternal struct {
	Repo    string `json:"repo"`
	Path    string `json:"path"`
	Hydrate bool   `json:"hydrate"`
	// Status is IN_PROGRESS, FAILED or DISABLED (no background copy).
	Status    string `json:"status"`
	Remaining int64  `json:"remaining"`
	Err       string `json:"error,omitempty"`
}

// nfsSource reads one file of an export with the Go NFS client.
type nfsSource struct {
	mu     sync.Mutex // one RPC at a time on the connection
	target *nfsc.Target
	file   *nfsc.File
	size   int64
}

// openNFSSource mounts x's export and opens rel in it.
func openNFSSource(x *externalRepo, rel string) (*nfsSource, error) {
	what := fmt.Sprintf("external repository %s (nfs://%s%s): %s", x.Name, x.address(), x.ExportName, rel)
	// Fail fast on an unreachable server: the client's own dial has no
	// timeout.
	c0, err := net.DialTimeout("tcp", x.address(), 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	c0.Close()
	// The client binds a random local port of its own choosing, which may
	// be taken (it retries only privileged ones): try others.
	c, err := rpc.DialTCP("tcp", x.address(), false)
	for try := 0; err != nil && errors.Is(err, syscall.EADDRINUSE) && try < 50; try++ {
		c, err = rpc.DialTCP("tcp", x.address(), false)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m := &nfsc.Mount{Client: c}
	target, err := m.Mount(x.ExportName, rpc.AuthNull)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: mount: %w", what, err)
	}
	p := "/" + strings.TrimPrefix(rel, "/")
	fi, _, err := target.Lookup(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		target.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f, err := target.Open(p)
	if err != nil {
		target.Close()
		return nil, fmt.Errorf("%s: open: %w", what, err)
	}
	return &nfsSource{target: target, file: f, size: fi.Size()}, nil
}

// ReadAt fills p from off (zeros past the end of the file).
func (n *nfsSource) ReadAt(p []byte, off int64) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	done := 0
	for done < len(p) && off+int64(done) < n.size {
		k, err := n.file.ReadAt(p[done:], off+int64(done))
		done += k
		if err != nil && !errors.Is(err, io.EOF) {
			return done, err
		}
		if k == 0 {
			break
		}
	}
	clear(p[done:])
	return len(p), nil
}

func (n *nfsSource) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.file.Close()
	n.target.Close()
}

// hydrator is a disk's live hydration state.
type hydrator struct {
	s      *Sim
	disk   *vmDisk // External guarded by s.mu
	file   string
	size   int64
	src    *nfsSource
	cancel context.CancelFunc

	mu        sync.Mutex   // guards have and writes to file
	have      []bool       // per hydrateBlock: local
	remaining atomic.Int64 // bytes not local yet (read without mu)
}

func newHydrator(s *Sim, d *vmDisk, src *nfsSource) *hydrator {
	n := (d.Size + hydrateBlock - 1) / hydrateBlock
	h := &hydrator{s: s, disk: d, file: s.abs(d.File), size: d.Size, src: src, have: make([]bool, n)}
	h.remaining.Store(d.Size)
	return h
}

func (h *hydrator) blockRange(i int64) (int64, int64) {
	off := i * hydrateBlock
	return off, min(hydrateBlock, h.size-off)
}

// fetch reads block i from the export.
func (h *hydrator) fetch(i int64) ([]byte, error) {
	off, n := h.blockRange(i)
	buf := make([]byte, n)
	_, err := h.src.ReadAt(buf, off)
	return buf, err
}

// storeLocked makes block i local with its bytes from the export, unless
// it already is. The caller holds h.mu.
func (h *hydrator) storeLocked(f *os.File, i int64, buf []byte) error {
	if h.have[i] {
		return nil
	}
	if !simkit.AllZero(buf) { // the disk file starts sparse
		off, _ := h.blockRange(i)
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	h.have[i] = true
	h.remaining.Add(-int64(len(buf)))
	return nil
}

// fillLocked makes block i local, from the export. The caller holds h.mu.
func (h *hydrator) fillLocked(f *os.File, i int64) error {
	if h.have[i] {
		return nil
	}
	buf, err := h.fetch(i)
	if err != nil {
		return err
	}
	return h.storeLocked(f, i, buf)
}

// run copies every block not yet local, paced at rate bytes per second
// (0: unpaced), then drops the disk's data source.
func (h *hydrator) run(ctx context.Context, rate int64) {
	f, err := os.OpenFile(h.file, os.O_RDWR, 0)
	if err != nil {
		h.finish(ctx, err)
		return
	}
	defer f.Close()
	start := time.Now()
	var copied int64
	for i := range int64(len(h.have)) {
		if h.s.hydrationPaused.Load() {
			for h.s.hydrationPaused.Load() && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
			start, copied = time.Now(), 0
		}
		if ctx.Err() != nil {
			h.src.Close()
			return
		}
		// The export is read without h.mu: a guest write meanwhile
		// completes the block itself, and then this copy is dropped.
		h.mu.Lock()
		was := h.have[i]
		h.mu.Unlock()
		if was {
			continue
		}
		buf, err := h.fetch(i)
		if err == nil {
			h.mu.Lock()
			err = h.storeLocked(f, i, buf)
			h.mu.Unlock()
		}
		if err != nil {
			h.finish(ctx, fmt.Errorf("hydrate block %d: %w", i, err))
			return
		}
		if rate <= 0 {
			continue
		}
		_, n := h.blockRange(i)
		copied += n
		if ahead := time.Duration(float64(copied)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(ahead):
			}
		}
	}
	if err := f.Sync(); err != nil {
		h.finish(ctx, err)
		return
	}
	if d := h.s.opts.HydrationSettle; d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	h.finish(ctx, nil)
}

// finish records the end of hydration: the disk is local (err nil) or
// hydration FAILED. A cancelled hydrator (its VM deleted, the simulator
// closing) records nothing.
func (h *hydrator) finish(ctx context.Context, err error) {
	h.src.Close()
	if ctx.Err() != nil {
		return
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hydrators[h.disk.UUID] != h {
		return
	}
	if err != nil {
		s.logf("hydrate disk %s: %v", h.disk.UUID, err)
		h.disk.External.Status, h.disk.External.Err = "FAILED", err.Error()
		h.disk.External.Remaining = h.remaining.Load()
	} else {
		h.disk.External = nil
	}
	delete(s.hydrators, h.disk.UUID)
	s.save()
}

// startHydratorLocked tracks a new external disk and, when it hydrates in
// the background, starts its copy. The caller holds s.mu.
func (s *Sim) startHydratorLocked(d *vmDisk, src *nfsSource) {
	h := newHydrator(s, d, src)
	ctx, cancel := context.WithCancel(s.ctx)
	h.cancel = cancel
	if s.hydrators == nil {
		s.hydrators = map[string]*hydrator{}
	}
	s.hydrators[d.UUID] = h
	if !d.External.Hydrate {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		h.run(ctx, s.opts.HydrationRate)
	}()
}

// stopHydratorLocked cancels a disk's hydration (its VM is going). The
// caller holds s.mu.
func (s *Sim) stopHydratorLocked(d *vmDisk) {
	if h := s.hydrators[d.UUID]; h != nil {
		delete(s.hydrators, d.UUID)
		h.cancel()
		if !d.External.Hydrate {
			h.src.Close()
		}
	}
}

// hydrationLocked is a disk's hydration info for the API (nil: none). The
// caller holds s.mu.
func (s *Sim) hydrationLocked(d *vmDisk) (status string, remaining int64, ok bool) {
	if d.External == nil {
		return "", 0, false
	}
	status, remaining = d.External.Status, d.External.Remaining
	if h := s.hydrators[d.UUID]; h != nil {
		remaining = h.remaining.Load()
	}
	return status, remaining, true
}

// openForGuest finds disk n (position in the VM's list) for a guest's
// access (verb) of length bytes at off, and opens its file with flag;
// the hydrator is nil when the disk is local.
func (s *Sim) openForGuest(nameOrUUID string, n int, verb string, off int64, length int, flag int) (*hydrator, *os.File, error) {
	h, file, err := s.diskForGuest(nameOrUUID, n, verb, off, length)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(file, flag, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("prismsim: %w", err)
	}
	return h, f, nil
}

func (s *Sim) diskForGuest(nameOrUUID string, n int, verb string, off int64, length int) (*hydrator, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vmByNameOrUUIDLocked(nameOrUUID)
	if v == nil {
		return nil, "", fmt.Errorf("prismsim: VM %q not found", nameOrUUID)
	}
	if n < 0 || n >= len(v.Disks) {
		return nil, "", fmt.Errorf("prismsim: VM %s has no disk %d", v.Name, n)
	}
	d := v.Disks[n]
	if off < 0 || off+int64(length) > d.Size {
		return nil, "", fmt.Errorf("prismsim: %s %d bytes at %d: disk %d holds %d", verb, length, off, n, d.Size)
	}
	h := s.hydrators[d.UUID]
	if h == nil && d.External != nil {
		// The export is gone from under the disk: an I/O error in the
		// guest, never the zeros of blocks not hydrated.
		return nil, "", fmt.Errorf("prismsim: %s disk %d of %s: its external source failed (%s)", verb, n, v.Name, d.External.Err)
	}
	return h, s.abs(d.File), nil
}

// WriteDisk writes p at off into disk n (position in the VM's disk list)
// of a VM, as its guest would: on a disk still hydrating, the blocks
// written are first completed from the external repository, and
// hydration never copies them again.
func (s *Sim) WriteDisk(nameOrUUID string, n int, off int64, p []byte) error {
	h, f, err := s.openForGuest(nameOrUUID, n, "write", off, len(p), os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i := off / hydrateBlock; i*hydrateBlock < off+int64(len(p)); i++ {
			if err := h.fillLocked(f, i); err != nil {
				return fmt.Errorf("prismsim: complete block %d from the external repository: %w", i, err)
			}
		}
	}
	if _, err := f.WriteAt(p, off); err != nil {
		return fmt.Errorf("prismsim: %w", err)
	}
	return f.Sync()
}

// ReadDisk reads disk n of a VM as its guest sees it: blocks not yet
// hydrated come from the external repository.
func (s *Sim) ReadDisk(nameOrUUID string, n int, off int64, p []byte) error {
	h, f, err := s.openForGuest(nameOrUUID, n, "read", off, len(p), os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	for done := 0; done < len(p); {
		at := off + int64(done)
		i := at / hydrateBlock
		k := int(min(int64(len(p)-done), (i+1)*hydrateBlock-at))
		var err error
		if h != nil && !h.have[i] {
			_, err = h.src.ReadAt(p[done:done+k], at)
		} else {
			_, err = f.ReadAt(p[done:done+k], at)
		}
		if err != nil {
			return fmt.Errorf("prismsim: read disk %d at %d: %w", n, at, err)
		}
		done += k
	}
	return nil
}

// failOrphanHydrations marks FAILED the disks a previous run of the
// simulator was serving from an export: their hydrator died with it.
func (s *Sim) failOrphanHydrations() {
	for _, v := range s.m.VMs {
		for _, d := range v.Disks {
			if x := d.External; x != nil && x.Status != "FAILED" {
				x.Status, x.Err = "FAILED", "the simulator restarted during hydration"
			}
		}
	}
}

// openExternalDisks opens the export file of every external disk of a VM
// being created (nil for the others) and sets its size and status. On
// error none stays open.
func (s *Sim) openExternalDisks(disks []diskSpec) ([]*nfsSource, error) {
	srcs := make([]*nfsSource, len(disks))
	fail := func(err error) ([]*nfsSource, error) {
		for _, src := range srcs {
			if src != nil {
				src.Close()
			}
		}
		return nil, err
	}
	for i := range disks {
		ds := &disks[i]
		if ds.SourceKind != "external" {
			continue
		}
		s.mu.Lock()
		x0 := s.m.ExternalRepos[ds.External.Repo]
		var x externalRepo
		if x0 != nil {
			x = *x0
		}
		s.mu.Unlock()
		if x0 == nil {
			return fail(errNotFound("external repository %s not found", ds.External.Repo))
		}
		if ds.External.Path == "" {
			return fail(errInvalid("disks[%d]: externalDiskRelativePath is required", i))
		}
		src, err := openNFSSource(&x, ds.External.Path)
		if err != nil {
			return fail(errInvalid("disks[%d]: %v", i, err))
		}
		srcs[i] = src
		if ds.Size > 0 && ds.Size != src.size {
			return fail(errInvalid("disks[%d]: diskSizeBytes %d differs from the external file's %d bytes", i, ds.Size, src.size))
		}
		ds.Size = src.size
		ds.External.Status, ds.External.Remaining = "IN_PROGRESS", src.size
		if !ds.External.Hydrate {
			ds.External.Status = "DISABLED"
		}
	}
	return srcs, nil
}

// PauseHydration stops (true) or resumes (false) every background
// hydration between two blocks, so that a test can act on a disk that is
// certainly still hydrating.
func (s *Sim) PauseHydration(pause bool) { s.hydrationPaused.Store(pause) }

// closeHydrators stops every hydration and closes the exports' files
// (the simulator is closing). The caller holds s.mu.
func (s *Sim) closeHydratorsLocked() {
	for _, h := range s.hydrators {
		h.cancel()
		if !h.disk.External.Hydrate {
			h.src.Close()
		}
	}
	s.hydrators = nil
}
