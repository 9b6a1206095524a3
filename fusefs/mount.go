package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/rptree"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Server is a mounted Tree.
type Server struct {
	tree       *rptree.Tree
	srv        *fuse.Server
	mountpoint string
}

// ErrBusy is wrapped by Unmount's error when files under the mountpoint
// are still in use.
var ErrBusy = errors.New("mountpoint is busy")

// Mount serves tree at mountpoint, which must be an existing, empty
// directory that is not a mountpoint already (the error then wraps
// ErrMountpoint). It returns once the kernel has the mount; requests are
// served in the background until Unmount. The tree (and its repository)
// must stay open until Wait returns; the caller closes it.
func Mount(ctx context.Context, tree *rptree.Tree, mountpoint string, o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("fusefs: options: %w", err)
	}
	o = o.withDefaults()
	mp, err := checkMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	short := time.Second
	root := &node{fs: &fsys{tree: tree, opts: o}, path: "."}
	logger := log.New(&slogWriter{o.Logger}, "", 0)
	fopts := &gofs.Options{
		// Per-entry timeouts are set in Lookup and Getattr; these are the
		// fallbacks.
		EntryTimeout: &short,
		AttrTimeout:  &short,
		MountOptions: fuse.MountOptions{
			AllowOther:    o.AllowOther,
			FsName:        "ahvfs:" + tree.Repository().Location(),
			Name:          "ahvfs",
			MaxWrite:      1 << 20, // also the largest read the kernel sends
			MaxReadAhead:  1 << 20,
			MaxBackground: o.MaxBackground,
			DisableSplice: true, // at 1 MiB every spliced reply fails and falls back to a copy
			DisableXAttrs: true,
			DirectMount:   os.Geteuid() == 0,
			Options:       []string{"ro", "default_permissions"},
			Debug:         o.Debug,
			Logger:        logger,
		},
		Logger: logger,
	}
	srv, err := serve(mp, root, fopts, o.OthersOnly)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mp, err)
	}
	closeFUSEOnExec()
	if o.ReadAhead > 0 {
		if err := setReadAhead(mp, o.ReadAhead); err != nil {
			o.Logger.Debug("set the mount's read-ahead window", "err", err)
		}
	}
	return &Server{tree: tree, srv: srv, mountpoint: mp}, nil
}

// serve mounts root on mp and serves it in the background. It is
// gofs.Mount without that function's poll of its own mount when
// othersOnly (Options.OthersOnly): fuse.NewServer returns once mount(2)
// has, and requests that come before Serve reads them wait in the kernel.
func serve(mp string, root gofs.InodeEmbedder, o *gofs.Options, othersOnly bool) (*fuse.Server, error) {
	if !othersOnly {
		return gofs.Mount(mp, root, o)
	}
	srv, err := fuse.NewServer(gofs.NewNodeFS(root, o), mp, &o.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	return srv, nil
}

// closeFUSEOnExec marks this process's /dev/fuse descriptors close-on-exec.
// go-fuse opens the device (or receives it from fusermount) without the
// flag, so every program the process starts would inherit it: a child
// that holds it keeps the connection alive after this process dies, and
// one that reads the mount (QEMU on verify-boot's overlay) then hangs
// for ever on its own exit, waiting on a server that is gone.
func closeFUSEOnExec() {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

// setReadAhead sets the kernel read-ahead window of the FUSE connection
// mounted on mp (needs root). The connection's device number comes from
// /proc/self/mountinfo: a stat of mp would be a request to this very
// process (see Options.OthersOnly).
func setReadAhead(mp string, bytes int) error {
	dev, err := mountDevice(mp)
	if err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%s/read_ahead_kb", dev)
	return os.WriteFile(p, []byte(strconv.Itoa(bytes>>10)), 0)
}

// mountDevice returns "major:minor" of the newest mount on mp.
func mountDevice(mp string) (string, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	dev := ""
	for _, line := range strings.Split(string(info), "\n") {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ... (proc(5)); spaces in
		// the mount point are written \040.
		f := strings.Fields(line)
		if len(f) >= 5 && strings.ReplaceAll(f[4], `\040`, " ") == mp {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s is not in /proc/self/mountinfo", mp)
	}
	return dev, nil
}

// Mountpoint is the absolute path the tree is mounted on.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Tree is the tree the server serves.
func (s *Server) Tree() *rptree.Tree { return s.tree }

// Unmount unmounts the tree. When files are still open under it, the
// error wraps ErrBusy and the mount stays; UnmountLazy then detaches it.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		if errors.Is(err, syscall.EBUSY) || isBusyText(err) {
			return fmt.Errorf("unmount %s: %w: %v", s.mountpoint, ErrBusy, err)
		}
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	return nil
}

func isBusyText(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "busy")
}

// UnmountLazy detaches the mount (umount -l): it disappears from the
// namespace now, and the server stops when the last open file is closed.
func (s *Server) UnmountLazy() error {
	if err := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH); err != nil {
		if err2 := s.srv.Unmount(); err2 != nil { // not root: fusermount -u
			return fmt.Errorf("lazy unmount %s: %w", s.mountpoint, err)
		}
	}
	return nil
}

// Wait blocks until the tree is unmounted (by Unmount, UnmountLazy or
// umount) and every request is answered.
func (s *Server) Wait() { s.srv.Wait() }

// slogWriter passes go-fuse's log lines to a slog.Logger.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.l.Debug(msg, "component", "fuse")
	return len(p), nil
}
