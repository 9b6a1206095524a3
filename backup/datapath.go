package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
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
	cl       nutanix.Cluster
	ledger   ledger
	iqn      string
	port     int // override of the portal's port (0: keep)
	chap     iscsi.CHAP
	o        *Options
	vmUUID   string
	vmName   string
	cleanupT time.Duration
}

type iscsiSource struct {
	*iscsi.LUN
	sess  *iscsi.Session
	close func(ctx context.Context) error
}

func (s *iscsiSource) Close(ctx context.Context) error { return s.close(ctx) }

// overridePort replaces the port of host:port (or adds it).
func overridePort(portal string, port int) string {
	if port == 0 {
		return portal
	}
	host, _, err := net.SplitHostPort(portal)
	if err != nil {
		host = portal
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func (p *iscsiOpener) open(ctx context.Context, snap nutanix.Snapshot, d plannedDisk, size int64) (_ diskSource, err error) {
	e := LedgerEntry{Kind: KindVolumeGroup, Name: objectName(KindVolumeGroup, fmt.Sprintf("%s-disk%d", p.vmName, d.N), p.o.Now()),
		VMUUID: p.vmUUID, VM: p.vmName, InitiatorIQN: p.iqn, Created: p.o.Now().UTC()}
	if err := p.ledger.put(ctx, e); err != nil {
		return nil, err
	}
	var sess *iscsi.Session
	// teardown undoes whatever was done, in reverse; used on failure here
	// and by Close.
	teardown := func(ctx context.Context) error {
		var errs []error
		if sess != nil {
			if err := sess.Close(ctx); err != nil {
				p.o.Logger.Debug("iscsi logout", "err", err)
			}
		}
		ids := []string{e.ID}
		if e.ID == "" {
			vgs, err := p.cl.ListVolumeGroups(ctx, e.Name)
			if err != nil {
				return fmt.Errorf("find volume group %s: %w", e.Name, err)
			}
			ids = ids[:0]
			for _, g := range vgs {
				if g.Name == e.Name {
					ids = append(ids, g.UUID)
				}
			}
		}
		for _, id := range ids {
			if err := p.cl.DetachISCSIClient(ctx, id, p.iqn); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
				p.o.Logger.Warn("detach iSCSI client", "vg", id, "err", err)
			}
			if err := p.cl.DeleteVolumeGroup(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("delete volume group %s: %w", e.Name, err))
			}
		}
		if len(errs) == 0 {
			if err := p.ledger.remove(ctx, e); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cleanupT)
			defer cancel()
			if cerr := teardown(cctx); cerr != nil {
				p.o.Logger.Warn("clean up after a failed iSCSI open", "err", cerr)
			}
		}
	}()
	vg, err := p.cl.CreateVolumeGroupFromSnapshotDisk(ctx, snap, d.UUID, e.Name)
	if err != nil {
		// Even a failed task can leave a group behind: teardown looks for it.
		e.ID = vg.UUID
		return nil, err
	}
	e.ID = vg.UUID
	if err := p.ledger.put(ctx, e); err != nil {
		return nil, err
	}
	tgt, err := p.cl.AttachISCSIClient(ctx, vg.UUID, p.iqn)
	if err != nil {
		return nil, err
	}
	target := tgt.TargetIQN
	if target == "" {
		target = vg.TargetIQN
	}
	if target == "" || tgt.Portal == "" {
		return nil, fmt.Errorf("volume group %s: the cluster named no iSCSI target or portal", vg.UUID)
	}
	portal := overridePort(tgt.Portal, p.port)
	sess, err = iscsi.Dial(ctx, iscsi.Options{Portal: portal, TargetIQN: target, InitiatorIQN: p.iqn, CHAP: p.chap,
		Logger: p.o.Logger.With("vg", vg.Name)})
	if err != nil {
		return nil, fmt.Errorf("iSCSI login to %s at %s: %w", target, portal, err)
	}
	luns, err := sess.ReportLUNs(ctx)
	if err != nil {
		return nil, err
	}
	var lun *iscsi.LUN
	var lerr error
	for _, n := range luns {
		if n == 0 && len(luns) > 1 {
			continue // tgtd's controller LUN
		}
		l, err := sess.LUN(ctx, n)
		if err != nil {
			lerr = err
			continue
		}
		if l.Size() >= size {
			lun = l
			break
		}
		lerr = fmt.Errorf("LUN %d holds %d bytes, the disk %d", n, l.Size(), size)
	}
	if lun == nil {
		if lerr == nil {
			lerr = errors.New("no LUN")
		}
		return nil, fmt.Errorf("volume group %s (%s): %w", vg.Name, target, lerr)
	}
	return &iscsiSource{LUN: lun, sess: sess, close: teardown}, nil
}

// ---- REST: an image imported from the snapshot vDisk ----

type restOpener struct {
	cl       nutanix.Cluster
	ledger   ledger
	o        *Options
	vmUUID   string
	vmName   string
	cleanupT time.Duration
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

// ReadAtContext downloads [off, off+len(p)); a body cut short is retried
// from where it stopped, three times.
func (s *restSource) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	want := p
	if rest := s.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n := 0
	var last error
	for attempt := 0; attempt < 4 && n < len(want); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		rc, err := s.cl.DownloadImage(ctx, s.id, off+int64(n), int64(len(want)-n))
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		m, err := io.ReadFull(rc, want[n:])
		rc.Close()
		n += m
		if err != nil {
			last = fmt.Errorf("download image %s at %d: %w", s.id, off+int64(n), err)
		}
	}
	if n < len(want) {
		return n, last
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (p *restOpener) open(ctx context.Context, snap nutanix.Snapshot, d plannedDisk, size int64) (_ diskSource, err error) {
	sd, ok := snap.Disk(d.UUID)
	if !ok {
		return nil, fmt.Errorf("disk %s is not in snapshot %s", d.Address(), snap.ID)
	}
	if sd.SnapshotFilePath == "" {
		return nil, fmt.Errorf("REST data path: snapshot %s names no vDisk path for %s (v4 recovery points have none; use --data-path iscsi or --api v3): %w",
			snap.ID, d.Address(), nutanix.ErrUnsupported)
	}
	e := LedgerEntry{Kind: KindImage, Name: objectName(KindImage, fmt.Sprintf("%s-disk%d", p.vmName, d.N), p.o.Now()),
		VMUUID: p.vmUUID, VM: p.vmName, Created: p.o.Now().UTC()}
	if err := p.ledger.put(ctx, e); err != nil {
		return nil, err
	}
	teardown := func(ctx context.Context) error {
		ids := []string{e.ID}
		if e.ID == "" {
			ims, err := p.cl.ListImages(ctx, e.Name)
			if err != nil {
				return fmt.Errorf("find image %s: %w", e.Name, err)
			}
			ids = ids[:0]
			for _, im := range ims {
				if im.Name == e.Name {
					ids = append(ids, im.UUID)
				}
			}
		}
		for _, id := range ids {
			if err := p.cl.DeleteImage(ctx, id); err != nil {
				return fmt.Errorf("delete image %s: %w", e.Name, err)
			}
		}
		return p.ledger.remove(ctx, e)
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cleanupT)
			defer cancel()
			if cerr := teardown(cctx); cerr != nil {
				p.o.Logger.Warn("clean up after a failed REST open", "err", cerr)
			}
		}
	}()
	// AOS imports a vDisk of its own containers by NFS path; the
	// snapshot's vDisk is one of them.
	im, err := p.cl.CreateImage(ctx, nutanix.ImageSpec{Name: e.Name, Description: "ahvfs temporary copy of " + snap.Name,
		Type: nutanix.DiskImage, SourceURL: "nfs://127.0.0.1" + sd.SnapshotFilePath, ClusterUUID: snap.ClusterUUID})
	if err != nil {
		e.ID = im.UUID // teardown looks it up by name when unknown
		return nil, err
	}
	e.ID = im.UUID
	if err := p.ledger.put(ctx, e); err != nil {
		return nil, err
	}
	if im.SizeBytes > 0 && im.SizeBytes < size {
		return nil, fmt.Errorf("image %s of %s holds %d bytes, the disk %d", im.UUID, d.Address(), im.SizeBytes, size)
	}
	return &restSource{cl: p.cl, id: im.UUID, size: size, close: teardown}, nil
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
