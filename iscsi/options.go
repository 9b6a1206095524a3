package iscsi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the well-known iSCSI TCP port.
const DefaultPort = "3260"

// CHAP holds the credentials of the security phase of login. With User
// empty no authentication is offered (AuthMethod=None).
type CHAP struct {
	// User and Secret are the initiator's credentials, checked by the
	// target (one-way CHAP).
	User, Secret string
	// TargetUser and TargetSecret, when TargetSecret is set, make the
	// authentication mutual: the initiator challenges the target and
	// expects this name and secret in its answer.
	TargetUser, TargetSecret string
}

// Options configure a session. The zero value of every field means its
// documented default; Validate reports every problem at once.
type Options struct {
	// Portal is the address of the target portal or the discovery portal:
	// "host" or "host:port" (default port 3260). Required.
	Portal string
	// TargetIQN names the target to log in to. Required by Dial, ignored
	// by Discover.
	TargetIQN string
	// InitiatorIQN names this initiator. Default
	// DefaultInitiatorIQN().
	InitiatorIQN string
	// CHAP credentials; none by default.
	CHAP CHAP
	// HeaderDigest and DataDigest require CRC32C digests on headers and
	// data segments; a target that refuses them fails the login. Default
	// off.
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength is the largest data segment the target may
	// send in one PDU. Default 256 KiB; 512 B to 16 MiB-1.
	MaxRecvDataSegmentLength int
	// MaxBurstLength is the largest burst (sequence of Data-In or Data-Out
	// PDUs) proposed to the target; the target may lower it. Default 1 MiB.
	MaxBurstLength int
	// FirstBurstLength is the largest amount of unsolicited data (immediate
	// data plus unsolicited Data-Out) proposed. Default 256 KiB, at most
	// MaxBurstLength.
	FirstBurstLength int
	// MaxTransferLength is the largest transfer of one SCSI command; longer
	// ReadAt and WriteAt calls are split into commands of this size issued
	// concurrently. It is lowered to the LUN's maximum transfer length when
	// the LUN reports one. Default 1 MiB: most of the initiator's CPU goes
	// to per-command work (wake-ups, syscalls), so a sequential read with
	// 1 MiB commands costs the initiator half the CPU per byte of one with
	// 128 KiB commands (0.57 -> 0.28 CPU-s/GB against tgtd,
	// tools/bench/iscsi), and the target no more.
	MaxTransferLength int
	// QueueDepth is the number of SCSI commands a session keeps in flight
	// at most (the target's CmdSN window may allow fewer). Default 64.
	QueueDepth int
	// DialTimeout bounds each TCP connect. Default 10 s.
	DialTimeout time.Duration
	// LoginTimeout bounds a whole login, redirects included. Default 20 s.
	LoginTimeout time.Duration
	// IOTimeout is how long the target may stay silent while commands or a
	// ping are outstanding before the connection is declared dead and
	// recovered. Default 30 s.
	IOTimeout time.Duration
	// KeepAlive is the idle time after which a NOP-Out ping checks the
	// connection. Default 5 s.
	KeepAlive time.Duration
	// RecoveryTimeout is how long a session tries to log in again after
	// losing its connection before it fails for good. Until then a portal
	// that refuses connections and a target that refuses the login
	// transiently ("target not found", "target removed", "service
	// unavailable", "out of resources": LoginError.Transient), as a
	// restarting target does, are tried again with backoff; a refused
	// authentication or authorization ends recovery at once. Dial does not
	// retry. Default 60 s.
	RecoveryTimeout time.Duration
	// MaxRedirects bounds the login redirections followed per login.
	// Default 5.
	MaxRedirects int
	// Logger receives connection events (redirects, recoveries) at info
	// level and protocol detail at debug level. Default: discard.
	Logger *slog.Logger
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	if o.Portal == "" {
		errs = append(errs, errors.New("Portal is required"))
	} else if _, _, err := splitPortal(o.Portal); err != nil {
		errs = append(errs, err)
	}
	if o.CHAP.User == "" && o.CHAP.Secret != "" {
		errs = append(errs, errors.New("CHAP.Secret set without CHAP.User"))
	}
	if o.CHAP.User != "" && o.CHAP.Secret == "" {
		errs = append(errs, errors.New("CHAP.User set without CHAP.Secret"))
	}
	if o.CHAP.TargetSecret != "" && o.CHAP.User == "" {
		errs = append(errs, errors.New("mutual CHAP (CHAP.TargetSecret) needs CHAP.User and CHAP.Secret"))
	}
	chk := func(name string, v, lo, hi int) {
		if v != 0 && (v < lo || v > hi) {
			errs = append(errs, fmt.Errorf("%s %d out of range [%d, %d]", name, v, lo, hi))
		}
	}
	chk("MaxRecvDataSegmentLength", o.MaxRecvDataSegmentLength, 512, maxDataSegment)
	chk("MaxBurstLength", o.MaxBurstLength, 512, maxDataSegment)
	chk("FirstBurstLength", o.FirstBurstLength, 512, maxDataSegment)
	chk("MaxTransferLength", o.MaxTransferLength, 4096, 1<<30)
	chk("QueueDepth", o.QueueDepth, 1, 4096)
	chk("MaxRedirects", o.MaxRedirects, 0, 100)
	if o.FirstBurstLength != 0 && o.MaxBurstLength != 0 && o.FirstBurstLength > o.MaxBurstLength {
		errs = append(errs, fmt.Errorf("FirstBurstLength %d > MaxBurstLength %d", o.FirstBurstLength, o.MaxBurstLength))
	}
	for name, d := range map[string]time.Duration{"DialTimeout": o.DialTimeout, "LoginTimeout": o.LoginTimeout,
		"IOTimeout": o.IOTimeout, "KeepAlive": o.KeepAlive, "RecoveryTimeout": o.RecoveryTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s is negative", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("iscsi options: %w", errors.Join(errs...))
	}
	return nil
}

// withDefaults returns a copy with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.InitiatorIQN == "" {
		o.InitiatorIQN = DefaultInitiatorIQN()
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&o.MaxRecvDataSegmentLength, 256<<10)
	setInt(&o.MaxBurstLength, 1<<20)
	setInt(&o.FirstBurstLength, min(256<<10, o.MaxBurstLength))
	setInt(&o.MaxTransferLength, 1<<20)
	setInt(&o.QueueDepth, 64)
	setInt(&o.MaxRedirects, 5)
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setDur(&o.DialTimeout, 10*time.Second)
	setDur(&o.LoginTimeout, 20*time.Second)
	setDur(&o.IOTimeout, 30*time.Second)
	setDur(&o.KeepAlive, 5*time.Second)
	setDur(&o.RecoveryTimeout, 60*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// DefaultInitiatorIQN is this host's initiator name: the one open-iscsi
// configured in /etc/iscsi/initiatorname.iscsi when there is one (so the
// cluster's ACLs recognise the host), else "iqn.2026-11.io.ahvfs:<hostname>".
func DefaultInitiatorIQN() string {
	if b, err := os.ReadFile("/etc/iscsi/initiatorname.iscsi"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "InitiatorName="); ok && strings.TrimSpace(v) != "" {
				return strings.TrimSpace(v)
			}
		}
	}
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, h)
	if h == "" {
		h = "initiator"
	}
	return "iqn.2026-11.io.ahvfs:" + h
}

// splitPortal parses "host", "host:port", "[v6]" or "[v6]:port" and
// returns host and port; a ",tpgt" suffix (as in TargetAddress) is
// dropped.
func splitPortal(p string) (host, port string, err error) {
	if i := strings.LastIndexByte(p, ','); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "", "", errors.New("empty portal address")
	}
	if h, pt, err := net.SplitHostPort(p); err == nil {
		if n, err := strconv.ParseUint(pt, 10, 16); h == "" || err != nil || n == 0 {
			return "", "", fmt.Errorf("bad portal address %q", p)
		}
		return h, pt, nil
	}
	if strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]") {
		return p[1 : len(p)-1], DefaultPort, nil
	}
	if strings.Count(p, ":") == 1 {
		return "", "", fmt.Errorf("bad portal address %q", p)
	}
	return p, DefaultPort, nil
}

// portalAddr normalises a portal to host:port for net.Dial.
func portalAddr(p string) (string, error) {
	h, pt, err := splitPortal(p)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, pt), nil
}
