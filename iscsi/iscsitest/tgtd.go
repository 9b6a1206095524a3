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
	"strings"
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
	history [][]string // configuration replayed by Restart and Replay
	// placeholder is the tid of the target RestartUnconfigured adds, or 0.
	placeholder int
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
	d := &Tgtd{t: t, Host: host, out: &bytes.Buffer{}}
	var err error
	if d.tgtd, err = lookPath("tgtd"); err != nil {
		t.Fatal(err)
	}
	if d.tgtadm, err = lookPath("tgtadm"); err != nil {
		t.Fatal(err)
	}
	d.Port = d.start()
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

// readyTimeout bounds the wait for a tgtd to answer, on a loaded machine.
const readyTimeout = 30 * time.Second

// start starts tgtd with its portal at a free port of d.Host and returns
// the port once tgtd answers there. A port taken between choosing it and
// tgtd binding it makes tgtd exit: then it tries another.
func (d *Tgtd) start() int {
	d.t.Helper()
	for attempt := 1; ; attempt++ {
		port := FreePort(d.t, d.Host)
		if d.launch(port) {
			return port
		}
		if attempt == 5 {
			d.t.Fatalf("tgtd on %s exited at start %d times", d.Host, attempt)
		}
	}
}

// launch starts tgtd with its portal at port and waits until it answers
// tgtadm and accepts connections there. It reports false when tgtd exited
// at start.
func (d *Tgtd) launch(port int) bool {
	d.t.Helper()
	addr := net.JoinHostPort(d.Host, strconv.Itoa(port))
	for {
		d.mu.Lock()
		if d.ctl == 0 {
			d.ctl = d.freeControlPort()
		}
		cmd := exec.Command(d.tgtd, "-f", "-C", strconv.Itoa(d.ctl), "--iscsi", "portal="+addr)
		cmd.Stdout = lockedWriter{&d.mu, d.out}
		cmd.Stderr = cmd.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		mark := d.out.Len()
		if err := cmd.Start(); err != nil {
			d.mu.Unlock()
			d.t.Fatalf("start tgtd: %v", err)
		}
		waited := make(chan struct{})
		d.cmd, d.waited = cmd, waited
		d.mu.Unlock()
		go func() { _ = cmd.Wait(); close(waited) }()

		err := d.await("tgtd on "+addr+" to answer", func() (bool, error) {
			select {
			case <-waited:
				return true, nil
			default:
			}
			if err := d.run("--op", "show", "--mode", "sys"); err != nil {
				return false, err
			}
			return dialable(addr)
		})
		if err != nil {
			d.t.Fatal(err)
		}
		select {
		case <-waited:
		default:
			return true
		}
		d.mu.Lock()
		d.cmd = nil
		// tgtd locks its control socket; another tgtd holding the same
		// control port makes it exit. That socket is not ours to remove.
		clash := bytes.Contains(d.out.Bytes()[mark:], []byte("another tgtd is using"))
		if clash {
			d.ctl = 0
		}
		d.mu.Unlock()
		if !clash {
			return false
		}
	}
}

// await polls cond until it holds, and fails after readyTimeout with the
// last error cond returned.
func (d *Tgtd) await(what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iscsitest: waited %v for %s: %v", readyTimeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialable reports whether addr accepts TCP connections.
func dialable(addr string) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
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

// Restart kills tgtd, waits down, starts it again and replays the
// configuration made with Admin (targets, LUNs, accounts, ACLs,
// redirects). The restarted tgtd listens on a scratch port until the
// configuration is back and only then opens the portal at Port, so that
// no login sees a target half configured; Restart returns once the portal
// accepts connections.
func (d *Tgtd) Restart(down time.Duration) {
	d.t.Helper()
	d.Kill()
	time.Sleep(down)
	scratch := d.start()
	d.Replay()
	d.movePortal(scratch)
}

// RestartUnconfigured kills tgtd, waits down, and starts it again on the
// same portal serving none of its targets, as a target service that is up
// before its targets: every login is answered "target not found" (status
// 0x0203) until Replay. It returns once the portal accepts connections.
func (d *Tgtd) RestartUnconfigured(down time.Duration) {
	d.t.Helper()
	d.Kill()
	time.Sleep(down)
	scratch := d.start()
	// A tgtd with no target at all drops connections instead of answering
	// logins: it serves a placeholder, open to nobody, until Replay.
	tid := 1
	for _, args := range d.recorded() {
		if c := parseAdmin(args); c.tid >= tid {
			tid = c.tid + 1
		}
	}
	d.admin([]string{"--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "-T", placeholderIQN})
	d.mu.Lock()
	d.placeholder = tid
	d.mu.Unlock()
	d.movePortal(scratch)
}

const placeholderIQN = "iqn.2024-01.io.ahvfs.iscsitest:placeholder"

// Replay applies the configuration made with Admin again (and removes
// the placeholder target of RestartUnconfigured). It returns once tgtadm
// shows every target the configuration creates.
func (d *Tgtd) Replay() {
	d.t.Helper()
	var names []string
	for _, args := range d.recorded() {
		d.admin(args)
		if c := parseAdmin(args); c.op == "new" && c.mode == "target" {
			names = append(names, c.name)
		}
	}
	d.mu.Lock()
	tid := d.placeholder
	d.placeholder = 0
	d.mu.Unlock()
	if tid != 0 {
		d.admin([]string{"--op", "delete", "--mode", "target", "--tid", strconv.Itoa(tid)})
	}
	err := d.await("tgtadm to show targets "+strings.Join(names, ", "), func() (bool, error) {
		out, err := d.output("--op", "show", "--mode", "target")
		if err != nil {
			return false, err
		}
		for _, name := range names {
			if !bytes.Contains(out, []byte(": "+name+"\n")) {
				return false, fmt.Errorf("target %s missing from:\n%s", name, out)
			}
		}
		return true, nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
}

// recorded returns the tgtadm commands recorded by Admin.
func (d *Tgtd) recorded() [][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.history
}

// adminCmd is what a tgtadm command does, as far as Replay cares.
type adminCmd struct {
	op, mode, name string
	tid            int
}

func parseAdmin(args []string) adminCmd {
	var c adminCmd
	for i := 0; i+1 < len(args); i++ {
		switch v := args[i+1]; args[i] {
		case "--op", "-o":
			c.op = v
		case "--mode", "-m":
			c.mode = v
		case "--tid", "-t":
			c.tid, _ = strconv.Atoi(v)
		case "--targetname", "-T":
			c.name = v
		}
	}
	return c
}

// movePortal opens the portal at Port on the running tgtd, closes its
// portal at the scratch port, and waits until Port accepts connections.
func (d *Tgtd) movePortal(scratch int) {
	d.t.Helper()
	portal := "portal=" + d.Addr()
	err := d.await("tgtd to open portal "+d.Addr(), func() (bool, error) {
		// Fails while another process holds the port: try again.
		if err := d.run("--op", "new", "--mode", "portal", "--param", portal); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.admin([]string{"--op", "delete", "--mode", "portal", "--param", "portal=" + net.JoinHostPort(d.Host, strconv.Itoa(scratch))})
	if err := d.await("portal "+d.Addr()+" to accept connections", func() (bool, error) { return dialable(d.Addr()) }); err != nil {
		d.t.Fatal(err)
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
	if _, err := d.output(args...); err != nil {
		d.t.Fatal(err)
	}
}

// run runs tgtadm --lld iscsi with args against this tgtd.
func (d *Tgtd) run(args ...string) error {
	_, err := d.output(args...)
	return err
}

// output runs tgtadm --lld iscsi with args against this tgtd and returns
// what it printed.
func (d *Tgtd) output(args ...string) ([]byte, error) {
	d.mu.Lock()
	full := append([]string{"-C", strconv.Itoa(d.ctl), "--lld", "iscsi"}, args...)
	d.mu.Unlock()
	out, err := exec.Command(d.tgtadm, full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("tgtadm %v: %w: %s", full, err, bytes.TrimSpace(out))
	}
	return out, nil
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
