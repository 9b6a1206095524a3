package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
)

// diskSource is a snapshot disk exposed to this host. ReadAt and
// ReadAtContext are safe for concurrent use. Close deletes what was
// created on the cluster for it (and its ledger entries); it is called
// with a context that is not the job's, so it runs after a cancellation.
type diskSource interface {
	io.ReaderAt
	cbt.ContextReaderAt
	Close(ctx context.Context) error
}

// sourceOpener exposes one disk of a snapshot.
type sourceOpener interface {
	open(ctx context.Context, snap nutanix.Snapshot, d plannedDisk, size int64) (diskSource, error)
}

// ---- iSCSI: a volume group cloned from the snapshot disk ----

type iscsiOpener struct {
	jb     *clusterjob.Job
	o      *Options
	vmName string
}

type iscsiSource struct {
	*iscsi.LUN
	close func(ctx context.Context) error
}

func (s *iscsiSource) Close(ctx context.Context) error { return s.close(ctx) }

func (p *iscsiOpener) open(ctx context.Context, snap nutanix.Snapshot, d plannedDisk, size int64) (diskSource, error) {
	vg, vo, err := p.jb.CreateVolumeGroupFromSnapshotDisk(ctx, snap, d.UUID, fmt.Sprintf("%s-disk%d", p.vmName, d.N))
	if err != nil {
		return nil, err
	}
	a, err := p.jb.Attach(ctx, vg, []int64{size}, clusterjob.AttachOptions{Initiator: p.o.InitiatorIQN, Port: p.o.ISCSIPort,
		ISCSI: iscsi.Options{CHAP: p.o.CHAP, Logger: p.o.Logger.With("vg", vg.Name)}})
	if err != nil {
		cctx, cancel := p.jb.CleanupContext(ctx)
		defer cancel()
		if rerr := p.jb.Release(cctx, vo); rerr != nil {
			p.o.Logger.Warn("release a volume group after a failed attach", "err", rerr)
		}
		return nil, err
	}
	return &iscsiSource{LUN: a.LUNs[0], close: func(ctx context.Context) error {
		return errors.Join(a.Close(ctx), p.jb.Release(ctx, vo))
	}}, nil
}

// ---- REST: an image imported from the snapshot vDisk ----

type restOpener struct {
	jb     *clusterjob.Job
	vmName string
}

// restSource reads an image with ranged downloads, one per ReadAt.
type restSource struct {
	cl    nutanix.Cluster
	id    string
	size  int64
	close func(ctx context.Context) error
}

func (s *restSource) Close(ctx context.Context) error { return s.close(ctx) }

func (s *restSource) ReadAt(p []byte, off int64) (int, error) {
	return s.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext downloads [off, off+len(p)). A body cut short after it
// brought data continues with a request for the rest (at most
// maxBodyCuts times); a request that fails is not repeated here: the
// Prism client's transport already retried it.
func (s *restSource) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	want := p
	if rest := s.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n := 0
	for cuts := 0; n < len(want); cuts++ {
		rc, err := s.cl.DownloadImage(ctx, s.id, off+int64(n), int64(len(want)-n))
		if err != nil {
			return n, err
		}
		m, err := io.ReadFull(rc, want[n:])
		rc.Close()
		n += m
		if err != nil && (m == 0 || cuts >= maxBodyCuts || ctx.Err() != nil) {
			return n, fmt.Errorf("download image %s at %d: %w", s.id, off+int64(n), err)
		}
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// maxBodyCuts is how many times one read continues after a download body
// ended early having brought data.
const maxBodyCuts = 3

func (p *restOpener) open(ctx context.Context, snap nutanix.Snapshot, d plannedDisk, size int64) (diskSource, error) {
	sd, ok := snap.Disk(d.UUID)
	if !ok {
		return nil, fmt.Errorf("disk %s is not in snapshot %s", d.Address(), snap.ID)
	}
	// v3 vm_snapshots name the snapshot vDisk's path; v2.0 snapshots its
	// NDFS path.
	path := cmp.Or(sd.SnapshotFilePath, sd.NDFSFilePath)
	if path == "" {
		return nil, fmt.Errorf("REST data path: snapshot %s names no vDisk path for %s (v4 recovery points have none; use --data-path iscsi or --api v3): %w",
			snap.ID, d.Address(), nutanix.ErrUnsupported)
	}
	// AOS imports a vDisk of its own containers by NFS path; the
	// snapshot's vDisk is one of them.
	im, io, err := p.jb.CreateImage(ctx, nutanix.ImageSpec{Description: "ahvfs temporary copy of " + snap.Name,
		Type: nutanix.DiskImage, SourceURL: "nfs://127.0.0.1" + path, ClusterUUID: snap.ClusterUUID},
		fmt.Sprintf("%s-disk%d", p.vmName, d.N))
	if err != nil {
		return nil, err
	}
	release := func(ctx context.Context) error { return p.jb.Release(ctx, io) }
	if im.SizeBytes > 0 && im.SizeBytes < size {
		cctx, cancel := p.jb.CleanupContext(ctx)
		defer cancel()
		release(cctx)
		return nil, fmt.Errorf("image %s of %s holds %d bytes, the disk %d", im.UUID, d.Address(), im.SizeBytes, size)
	}
	return &restSource{cl: p.jb.Cluster(), id: im.UUID, size: size, close: release}, nil
}

// ---- auto ----

// portalProber decides iSCSI or REST once per portal.
type portalProber struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (pp *portalProber) reachable(ctx context.Context, portal string) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if ok, done := pp.seen[portal]; done {
		return ok
	}
	if pp.seen == nil {
		pp.seen = map[string]bool{}
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", portal)
	ok := err == nil
	if ok {
		c.Close()
	}
	pp.seen[portal] = ok
	return ok
}
