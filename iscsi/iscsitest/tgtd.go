// Package iscsitest runs real iSCSI targets for tests: Debian's tgtd on a
// loopback portal with a private control port, LUNs backed by files, CHAP
// accounts and login redirects, and a TCP proxy that cuts connections.
//
// The tests that use it must first require root and the tgtd and tgtadm
// programs with internal/testenv.
package iscsitest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tgtd is a running tgtd.
type Tgtd struct {
	t       testing.TB
	Host    string // portal host, e.g. 127.0.0.1
	Port    int    // portal port
	ctl     int
	tgtd    string
	tgtadm  string
	mu      sync.Mutex
	cmd     *exec.Cmd
	out     *bytes.Buffer
	waited  chan struct{}
	history [][]string // configuration replayed by Restart

	startFailures int
}

// Addr is the portal address, host:port.
func (d *Tgtd) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// StartTgtd starts tgtd on host (a 127.0.0.0/8 address) at a free port and
// stops it with SIGKILL when the test ends.
func StartTgtd(t testing.TB, host string) *Tgtd {
	t.Helper()
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("iscsitest: %q is not a loopback address", host)
	}
	d := &Tgtd{t: t, Host: host, Port: FreePort(t, host)}
	var err error
	if d.tgtd, err = lookPath("tgtd"); err != nil {
		t.Fatal(err)
	}
	if d.tgtadm, err = lookPath("tgtadm"); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			d.mu.Lock()
			t.Logf("tgtd %s output:\n%s", d.Addr(), d.out.String())
			d.mu.Unlock()
		}
	})
	return d
}

func (d *Tgtd) start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctl == 0 {
		d.ctl = d.freeControlPort()
	}
	cmd := exec.Command(d.tgtd, "-f", "-C", strconv.Itoa(d.ctl), "--iscsi", "portal="+d.Addr())
	if d.out == nil {
		d.out = &bytes.Buffer{}
	}
	cmd.Stdout = lockedWriter{&d.mu, d.out}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start tgtd: %v", err)
	}
	d.cmd = cmd
	d.waited = make(chan struct{})
	go func(c chan struct{}) { _ = cmd.Wait(); close(c) }(d.waited)
	d.mu.Unlock()
	defer d.mu.Lock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := exec.Command(d.tgtadm, "-C", strconv.Itoa(d.ctl), "--lld", "iscsi", "--op", "show", "--mode", "sys").Run()
		if err == nil {
			if c, err := net.DialTimeout("tcp", d.Addr(), time.Second); err == nil {
				c.Close()
				return
			}
		}
		select {
		case <-d.waited:
			// Most likely the port was taken between FreePort and now
			// (or, on Restart, is still held): try again a few times.
			d.mu.Lock()
			d.startFailures++
			failures, fresh := d.startFailures, len(d.history) == 0
			if fresh {
				d.Port = FreePort(d.t, d.Host)
			}
			d.mu.Unlock()
			if failures > 5 {
				d.t.Fatalf("tgtd on %s exited at start", d.Addr())
			}
			time.Sleep(100 * time.Millisecond)
			d.start()
			return
		default:
		}
		d.mu.Lock()
		clash := bytes.Contains(d.out.Bytes(), []byte("another tgtd is using"))
		if clash {
			d.out.Reset()
		}
		d.mu.Unlock()
		if clash {
			// Another tgtd took the same control port: start over.
			d.Kill()
			d.mu.Lock()
			d.ctl = 0
			d.mu.Unlock()
			d.start()
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("tgtd on %s not ready after 10s: %v", d.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Kill stops tgtd with SIGKILL (it ignores SIGTERM) and waits for it.
func (d *Tgtd) Kill() {
	d.mu.Lock()
	cmd, waited := d.cmd, d.waited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-waited
	// A killed tgtd leaves its management socket behind; it was ours.
	base := fmt.Sprintf("/var/run/tgtd/socket.%d", d.ctl)
	_ = os.Remove(base)
	_ = os.Remove(base + ".lock")
}

// Pause stops tgtd with SIGSTOP: connections stay open but nothing is
// answered, like a hung target.
func (d *Tgtd) Pause() { d.signal(syscall.SIGSTOP) }

// Resume continues a paused tgtd.
func (d *Tgtd) Resume() { d.signal(syscall.SIGCONT) }

func (d *Tgtd) signal(sig syscall.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(sig)
	}
}

// Restart kills tgtd, starts it again on the same portal and replays the
// configuration made with Admin. down is how long it stays away.
func (d *Tgtd) Restart(down time.Duration) {
	d.t.Helper()
	d.Kill()
	time.Sleep(down)
	d.start()
	d.mu.Lock()
	h := d.history
	d.mu.Unlock()
	for _, args := range h {
		d.admin(args)
	}
}

// Admin runs tgtadm --lld iscsi with args against this tgtd and records it
// for Restart. The test fails if tgtadm does.
func (d *Tgtd) Admin(args ...string) {
	d.t.Helper()
	d.admin(args)
	d.mu.Lock()
	d.history = append(d.history, args)
	d.mu.Unlock()
}

func (d *Tgtd) admin(args []string) {
	d.t.Helper()
	full := append([]string{"-C", strconv.Itoa(d.ctl), "--lld", "iscsi"}, args...)
	out, err := exec.Command(d.tgtadm, full...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("tgtadm %v: %v: %s", full, err, out)
	}
}

// AddTarget creates target tid named iqn, open to every initiator.
func (d *Tgtd) AddTarget(tid int, iqn string) {
	d.t.Helper()
	d.Admin("--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "-T", iqn)
	d.Admin("--op", "bind", "--mode", "target", "--tid", strconv.Itoa(tid), "-I", "ALL")
}

// AddLUN adds LUN lun to target tid, backed by the file at path.
func (d *Tgtd) AddLUN(tid, lun int, path string) {
	d.t.Helper()
	d.Admin("--op", "new", "--mode", "logicalunit", "--tid", strconv.Itoa(tid), "--lun", strconv.Itoa(lun), "-b", path)
}

// SetParam sets an iSCSI parameter of target tid (MaxRecvDataSegmentLength,
// RedirectAddress, ...).
func (d *Tgtd) SetParam(tid int, name, value string) {
	d.t.Helper()
	d.Admin("--op", "update", "--mode", "target", "--tid", strconv.Itoa(tid), "-n", name, "-v", value)
}

// RequireCHAP adds the account user/secret and binds it to target tid, so
// the target requires CHAP.
func (d *Tgtd) RequireCHAP(tid int, user, secret string) {
	d.t.Helper()
	d.Admin("--op", "new", "--mode", "account", "--user", user, "--password", secret)
	d.Admin("--op", "bind", "--mode", "account", "--tid", strconv.Itoa(tid), "--user", user)
}

// MutualCHAP adds the account the target answers with (outgoing).
func (d *Tgtd) MutualCHAP(tid int, user, secret string) {
	d.t.Helper()
	d.Admin("--op", "new", "--mode", "account", "--user", user, "--password", secret)
	d.Admin("--op", "bind", "--mode", "account", "--tid", strconv.Itoa(tid), "--user", user, "--outgoing")
}

// Redirect makes logins to target tid redirect to host:port, with reason
// "Temporary" or "Permanent".
func (d *Tgtd) Redirect(tid int, host string, port int, reason string) {
	d.t.Helper()
	d.SetParam(tid, "RedirectAddress", host)
	d.SetParam(tid, "RedirectPort", strconv.Itoa(port))
	d.SetParam(tid, "RedirectReason", reason)
}

// freeControlPort picks a control port (it names tgtd's management
// socket, 1-32767) that no running tgtd answers on.
func (d *Tgtd) freeControlPort() int {
	for {
		n := 10000 + rand.IntN(22000)
		err := exec.Command(d.tgtadm, "-C", strconv.Itoa(n), "--op", "show", "--mode", "sys").Run()
		if err != nil {
			return n
		}
	}
}

// FreePort returns a TCP port free on host right now.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// LUNFile creates a file of size bytes of pseudo-random data (from seed)
// in a test directory and returns its path.
func LUNFile(t testing.TB, size int64, seed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("lun-%d.img", seed))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("iscsitest: %s not found", name)
}
