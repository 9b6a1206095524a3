package clusterjob

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
)

// AttachOptions configure Attach.
type AttachOptions struct {
	// Initiator is this host's IQN (default iscsi.DefaultInitiatorIQN()).
	Initiator string
	// Port overrides the port of the portal the cluster names (NAT,
	// tests); 0 keeps it (3260).
	Port int
	// ISCSI tunes the session (CHAP, timeouts, transfer sizes); Portal,
	// TargetIQN and InitiatorIQN are set by Attach.
	ISCSI iscsi.Options
}

// Attachment is a volume group attached to this host's initiator with a
// logged-in iSCSI session and its LUNs open. Close logs out and detaches;
// the job's Close does it too, so an attachment is never left behind by a
// job that returns.
type Attachment struct {
	VolumeGroup nutanix.VolumeGroup
	Target      string // IQN
	Portal      string // host:port logged in to
	Session     *iscsi.Session
	// LUNs are the group's disks in order: LUNs[i] holds at least
	// sizes[i] bytes as asked of Attach.
	LUNs []*iscsi.LUN

	jb  *Job
	obj Object
}

// OverridePort replaces the port of host:port (or adds it); 0 keeps it.
func OverridePort(portal string, port int) string {
	if port == 0 {
		return portal
	}
	host, _, err := net.SplitHostPort(portal)
	if err != nil {
		host = portal
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Attach attaches this host's initiator to vg, logs in and opens one LUN
// per entry of sizes, in order, each holding at least that many bytes
// (tgtd's controller LUN 0 is skipped when the target reports more LUNs
// than asked). The attachment is journaled before the attach call. On
// failure everything Attach did is undone before it returns.
func (jb *Job) Attach(ctx context.Context, vg nutanix.VolumeGroup, sizes []int64, o AttachOptions) (_ *Attachment, err error) {
	iqn := firstNonEmpty(o.Initiator, o.ISCSI.InitiatorIQN, iscsi.DefaultInitiatorIQN())
	a := &Attachment{VolumeGroup: vg, jb: jb,
		obj: Object{Kind: KindAttachment, Name: vg.Name + " " + iqn, VolumeGroup: vg.UUID, Initiator: iqn}}
	if err := jb.Record(a.obj); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cctx, cancel := jb.CleanupContext(ctx)
			defer cancel()
			if cerr := a.Close(cctx); cerr != nil {
				jb.log.Warn("undo a failed attach", "err", cerr)
			}
		}
	}()
	tgt, err := jb.cl.AttachISCSIClient(ctx, vg.UUID, iqn)
	if err != nil {
		return nil, fmt.Errorf("attach %s to volume group %s: %w", iqn, vg.Name, err)
	}
	a.Target = firstNonEmpty(tgt.TargetIQN, vg.TargetIQN)
	if a.Target == "" || tgt.Portal == "" {
		return nil, fmt.Errorf("volume group %s: the cluster named no iSCSI target or portal", vg.Name)
	}
	a.Portal = OverridePort(tgt.Portal, o.Port)
	so := o.ISCSI
	so.Portal, so.TargetIQN, so.InitiatorIQN = a.Portal, a.Target, iqn
	if so.Logger == nil {
		so.Logger = jb.log.With("vg", vg.Name)
	}
	if a.Session, err = dialAttached(ctx, so); err != nil {
		return nil, fmt.Errorf("iSCSI login to %s at %s: %w", a.Target, a.Portal, err)
	}
	jb.mu.Lock()
	jb.attachments[a.obj.Name] = a
	jb.mu.Unlock()
	if a.LUNs, err = openLUNs(ctx, a.Session, sizes); err != nil {
		return nil, fmt.Errorf("volume group %s (%s): %w", vg.Name, a.Target, err)
	}
	return a, nil
}

// attachSettle is how long a target just attached may answer logins "not
// found" or "unavailable" while the cluster configures it.
const attachSettle = 30 * time.Second

// dialAttached logs in to a target that was just attached to this host:
// a refusal the iscsi package deems transient (the target is not
// configured yet) is tried again, with backoff, for attachSettle; any
// other failure at once.
func dialAttached(ctx context.Context, o iscsi.Options) (*iscsi.Session, error) {
	deadline := time.Now().Add(attachSettle)
	wait := 100 * time.Millisecond
	for {
		s, err := iscsi.Dial(ctx, o)
		var le *iscsi.LoginError
		if err == nil || !errors.As(err, &le) || !le.Transient() || time.Now().Add(wait).After(deadline) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// openLUNs opens the LUNs of a session that hold a volume group's disks.
func openLUNs(ctx context.Context, s *iscsi.Session, sizes []int64) ([]*iscsi.LUN, error) {
	nums, err := s.ReportLUNs(ctx)
	if err != nil {
		return nil, fmt.Errorf("REPORT LUNS: %w", err)
	}
	if len(nums) > len(sizes) && nums[0] == 0 {
		nums = nums[1:] // tgtd's controller LUN
	}
	if len(nums) < len(sizes) {
		return nil, fmt.Errorf("the target reports %d LUNs, want %d", len(nums), len(sizes))
	}
	var luns []*iscsi.LUN
	for i, want := range sizes {
		l, err := s.LUN(ctx, nums[i])
		if err != nil {
			return nil, fmt.Errorf("LUN %d: %w", nums[i], err)
		}
		if l.Size() < want {
			return nil, fmt.Errorf("LUN %d holds %d bytes, the disk %d", nums[i], l.Size(), want)
		}
		luns = append(luns, l)
	}
	return luns, nil
}

// Close logs out and detaches the initiator, then drops the attachment
// from the journal. It may be called more than once.
func (a *Attachment) Close(ctx context.Context) error {
	a.jb.mu.Lock()
	delete(a.jb.attachments, a.obj.Name)
	s := a.Session
	a.Session = nil
	a.jb.mu.Unlock()
	var errs []error
	if s != nil {
		if err := s.Close(ctx); err != nil && !errors.Is(err, iscsi.ErrClosed) {
			a.jb.log.Debug("iscsi logout", "vg", a.VolumeGroup.Name, "err", err)
		}
	}
	if err := a.jb.Release(ctx, a.obj); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
