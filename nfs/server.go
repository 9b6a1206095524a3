package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/rptree"
	"github.com/go-git/go-billy/v5"
	gonfs "github.com/willscott/go-nfs"
)

// Options are Serve's.
type Options struct {
	// Allow lists the client networks admitted; empty admits loopback
	// clients only.
	Allow []netip.Prefix
	// Logger receives refused connections and the NFS server's errors.
	Logger *slog.Logger
}

// Serve answers NFSv3 and MOUNT on ln with tree until ctx is cancelled or
// ln fails; it closes ln. Cancelling ctx closes the listener and returns
// nil; connections being served end with their next request.
func Serve(ctx context.Context, tree *rptree.Tree, ln net.Listener, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Allow) == 0 {
		o.Allow = Loopback
	}
	setLogger(o.Logger)
	h := &handler{fs: &treeFS{ctx: ctx, tree: tree}, handles: newHandles(tree), ctx: ctx}
	srv := &gonfs.Server{Handler: h, Context: ctx}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	rd := newReads(ctx, tree, h.handles, o.Logger)
	defer rd.close()
	al := &allowListener{Listener: ln, allow: o.Allow, log: o.Logger,
		wrap: func(c net.Conn) net.Conn { return newRPCConn(c, []string{"/"}, rd) }}
	err := srv.Serve(al)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Loopback is the default Options.Allow.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// handler implements go-nfs's Handler over one tree.
type handler struct {
	ctx     context.Context
	fs      *treeFS
	handles *handles
}

// Mount answers MOUNT of a directory of the tree: "/" (the whole tree)
// or any directory below it, as clients that mount a file's directory do
// (libnfs).
func (h *handler) Mount(ctx context.Context, conn net.Conn, req gonfs.MountRequest) (gonfs.MountStatus, billy.Filesystem, []gonfs.AuthFlavor) {
	p := treePath(string(req.Dirpath))
	fi, err := h.fs.tree.StatContext(ctx, p)
	switch {
	case err != nil:
		return gonfs.MountStatusErrNoEnt, nil, nil
	case !fi.IsDir():
		return gonfs.MountStatusErrNotDir, nil, nil
	}
	var comps []string
	if p != "." {
		comps = strings.Split(p, "/")
	}
	return gonfs.MountStatusOk, &mountFS{treeFS: h.fs, comps: comps}, []gonfs.AuthFlavor{gonfs.AuthFlavorNull, gonfs.AuthFlavorUnix}
}

// mountFS is what Mount returns: go-nfs asks only for its handle, which
// names the mounted directory (every later request comes with a handle,
// and FromHandle answers with the whole tree and a full path).
type mountFS struct {
	*treeFS
	comps []string
}

// Change returns nil: the export is read-only.
func (h *handler) Change(billy.Filesystem) billy.Change { return nil }

// FSStat reports a full, read-only filesystem whose attributes clients may
// cache for a second (restore points appear as backups run).
func (h *handler) FSStat(ctx context.Context, _ billy.Filesystem, s *gonfs.FSStat) error {
	s.CacheHint = time.Second
	return nil
}

func (h *handler) ToHandle(f billy.Filesystem, path []string) []byte {
	if m, ok := f.(*mountFS); ok {
		path = append(slices.Clip(m.comps), path...)
	}
	return h.handles.toHandle(path)
}

func (h *handler) FromHandle(b []byte) (billy.Filesystem, []string, error) {
	comps, err := h.handles.fromHandle(h.ctx, b)
	if err != nil {
		return nil, nil, err
	}
	return h.fs, comps, nil
}

func (h *handler) InvalidateHandle(billy.Filesystem, []byte) error { return nil }

// HandleLimit is large: handles cost nothing to keep (they are resolved
// from the path, not looked up in a table).
func (h *handler) HandleLimit() int { return 1 << 30 }

// AllowListener wraps ln so that it accepts connections from the allowed
// networks only; the others are closed and logged.
func AllowListener(ln net.Listener, allow []netip.Prefix, log *slog.Logger) net.Listener {
	return &allowListener{Listener: ln, allow: allow, log: log, wrap: func(c net.Conn) net.Conn { return c }}
}

// allowListener accepts connections from the allowed networks only.
type allowListener struct {
	net.Listener
	allow []netip.Prefix
	log   *slog.Logger
	// wrap, when set, wraps each accepted connection.
	wrap func(net.Conn) net.Conn
}

func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(c.RemoteAddr(), l.allow) {
			return l.wrap(c), nil
		}
		l.log.Warn("NFS connection refused: the client is not in --allow", "client", c.RemoteAddr().String())
		c.Close()
	}
}

// allowed reports whether addr lies in one of the prefixes.
func allowed(addr net.Addr, allow []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseAllow parses a comma-separated list of networks (CIDR) or single
// addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err2 := netip.ParseAddr(s); err2 == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		} else {
			errs = append(errs, fmt.Errorf("--allow %q: want a network such as 10.0.0.0/24 or an address", s))
		}
	}
	return out, errors.Join(errs...)
}
