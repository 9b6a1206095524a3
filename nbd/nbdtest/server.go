// Package nbdtest runs real NBD servers for tests: Debian's qemu-nbd
// (qemu-utils) and nbdkit on a loopback TCP port or a Unix socket, plus
// disk images of random data with zero runs and holes, TLS certificates in
// the layout both servers read, and a TCP proxy that cuts connections.
//
// Tests that use it must first require the programs with
// internal/testenv (testenv.Commands(t, "qemu-nbd")), so that a missing
// program skips the test, or fails it under AHVFS_REQUIRE_ALL=1.
package nbdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// ReadyTimeout bounds the wait for a server to accept connections, on a
// loaded machine.
const ReadyTimeout = 30 * time.Second

// Server is a running NBD server process.
type Server struct {
	// Addr is what nbd.Options.Address takes: "127.0.0.1:PORT" or
	// "unix:PATH".
	Addr string
	// Export is the name of the export it serves.
	Export string

	t      testing.TB
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	waited chan struct{}
}

// Output returns what the server printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// output collects what the server prints.
type output struct{ s *Server }

func (o output) Write(b []byte) (int, error) {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.s.out.Write(b)
}

// Kill stops the server with SIGKILL (at once, without closing its
// connections cleanly) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.waited
}

// Exited tells whether the server process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.waited:
		return true
	default:
		return false
	}
}

// Common are the settings both servers share.
type Common struct {
	// Export names the export; default "disk".
	Export string
	// Unix serves on a Unix socket in a temporary directory instead of
	// a TCP port of 127.0.0.1.
	Unix bool
	// TLSDir, when set, serves TLS only, with the certificates in the
	// directory (see NewTLSDir); clients are not asked for a
	// certificate.
	TLSDir string
}

// start launches program with args (built by mk for the chosen endpoint)
// and waits until it accepts connections. A TCP port taken between
// choosing it and the server binding it makes the server exit: then it
// tries another port.
func start(t testing.TB, program string, c Common, mk func(endpoint []string) []string) *Server {
	t.Helper()
	if c.Export == "" {
		c.Export = "disk"
	}
	for attempt := 1; ; attempt++ {
		var endpoint []string
		var addr, dialNet, dialAddr string
		if c.Unix {
			sock := filepath.Join(t.TempDir(), "nbd.sock")
			endpoint, addr, dialNet, dialAddr = []string{"unix", sock}, "unix:"+sock, "unix", sock
		} else {
			port := FreePort(t)
			endpoint = []string{"tcp", "127.0.0.1", strconv.Itoa(port)}
			dialAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			addr, dialNet = dialAddr, "tcp"
		}
		s := &Server{Addr: addr, Export: c.Export, t: t, name: filepath.Base(program), waited: make(chan struct{})}
		s.cmd = exec.Command(program, mk(endpoint)...)
		s.cmd.Stdout, s.cmd.Stderr = output{s}, output{s}
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", program, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.waited) }()
		t.Cleanup(func() {
			s.Kill()
			if t.Failed() {
				t.Logf("%s on %s printed:\n%s", s.name, s.Addr, s.Output())
			}
		})
		err := waitAccepting(dialNet, dialAddr, s.waited)
		if err == nil {
			return s
		}
		if !s.Exited() || attempt == 5 {
			t.Fatalf("%s %v: %v\n%s", program, s.cmd.Args[1:], err, s.Output())
		}
	}
}

var errExited = errors.New("server exited")

// waitAccepting polls until addr accepts a connection, the process
// exits, or ReadyTimeout passes.
func waitAccepting(network, addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("%s %s not accepting after %v: %w", network, addr, ReadyTimeout, err)
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatalf("nbdtest: %s: %v (require it with testenv.Commands first)", name, err)
	}
	return p
}

// QemuOptions configure StartQemuNBD.
type QemuOptions struct {
	Common
	// Format of the image; default "raw".
	Format string
	// Args are more qemu-nbd arguments.
	Args []string
}

// StartQemuNBD serves file read-only with qemu-nbd (persistent, up to 16
// clients at once) and stops it when the test ends.
func StartQemuNBD(t testing.TB, file string, o QemuOptions) *Server {
	t.Helper()
	prog := lookPath(t, "qemu-nbd")
	if o.Format == "" {
		o.Format = "raw"
	}
	return start(t, prog, o.Common, func(ep []string) []string {
		args := []string{"--read-only", "--persistent", "--shared=16", "--format=" + o.Format, "--export-name=" + exportName(o.Common)}
		if ep[0] == "unix" {
			args = append(args, "--socket="+ep[1])
		} else {
			args = append(args, "--bind="+ep[1], "--port="+ep[2])
		}
		if o.TLSDir != "" {
			args = append(args, "--object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir="+o.TLSDir, "--tls-creds=tls0")
		}
		args = append(args, o.Args...)
		return append(args, file)
	})
}

// NbdkitOptions configure StartNbdkit.
type NbdkitOptions struct {
	Common
	// NoStructuredReplies makes nbdkit refuse structured replies
	// (--no-sr).
	NoStructuredReplies bool
	// Filters are nbdkit filters (--filter=NAME), outermost first.
	Filters []string
	// Writable serves read-write; default read-only.
	Writable bool
}

// StartNbdkit runs nbdkit with plugin and its arguments (e.g. "memory",
// "size=64M", or "file", "file=PATH"), and stops it when the test ends.
func StartNbdkit(t testing.TB, o NbdkitOptions, plugin string, args ...string) *Server {
	t.Helper()
	prog := lookPath(t, "nbdkit")
	return start(t, prog, o.Common, func(ep []string) []string {
		a := []string{"--foreground", "--exit-with-parent", "--exportname=" + exportName(o.Common)}
		if !o.Writable {
			a = append(a, "--readonly")
		}
		if ep[0] == "unix" {
			a = append(a, "--unix="+ep[1])
		} else {
			a = append(a, "--ipaddr="+ep[1], "--port="+ep[2])
		}
		if o.TLSDir != "" {
			a = append(a, "--tls=require", "--tls-certificates="+o.TLSDir)
		}
		if o.NoStructuredReplies {
			a = append(a, "--no-sr")
		}
		for _, f := range o.Filters {
			a = append(a, "--filter="+f)
		}
		a = append(a, plugin)
		return append(a, args...)
	})
}

func exportName(c Common) string {
	if c.Export == "" {
		return "disk"
	}
	return c.Export
}
