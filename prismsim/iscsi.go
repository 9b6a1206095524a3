package prismsim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tgtManager drives two tgtd daemons the way a Nutanix cluster presents
// volume groups: the Data Services IP portal (dsip) knows every target so it
// answers SendTargets discovery, and redirects each login (iSCSI status
// 0x0101, "target moved temporarily") to the CVM portal, which serves the
// LUNs. Both daemons use private control ports (tgtadm -C), so several
// simulators and tests can run side by side.
type tgtManager struct {
	cfg      tgtConfig
	dsipAddr string
	cvmAddr  string
	dsipCtl  int
	cvmCtl   int
	procs    []*tgtProc
	tgtadm   string

	mu      sync.Mutex
	nextTid int
	targets map[string]*tgtTarget
}

type tgtConfig struct {
	dir                  string
	dsip, cvm            string // host:port (port 0: pick)
	chapUser, chapSecret string
	logf                 func(string, ...any)
}

type tgtProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

type tgtTarget struct {
	tid      int
	luns     []string
	acl      []string // initiator IQNs, IPs, or "ALL"
	accounts []string // CHAP user names bound
}

// chapAccount is one CHAP credential bound to a target.
type chapAccount struct{ user, secret string }

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (Debian package tgt)", name)
}

// freePort returns host:port with a currently free TCP port when port is 0.
func freePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" && port != "" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// freeControlPort picks a tgtd control port (tgtd accepts at most 32767)
// whose socket is unused.
func freeControlPort() int {
	for {
		n := 10000 + rand.IntN(22000) // tgtd accepts -C 0..32767
		if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", n)); errors.Is(err, os.ErrNotExist) {
			return n
		}
	}
}

func startTgt(ctx context.Context, cfg tgtConfig) (*tgtManager, error) {
	tgtd, err := lookPath("tgtd")
	if err != nil {
		return nil, err
	}
	tgtadm, err := lookPath("tgtadm")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return nil, err
	}
	t := &tgtManager{cfg: cfg, tgtadm: tgtadm, targets: map[string]*tgtTarget{}, nextTid: 1}
	ok := false
	defer func() {
		if !ok {
			t.close()
		}
	}()
	start := func(role, addr string) (string, int, error) {
		var lastErr error
		for attempt := 0; attempt < 5; attempt++ {
			a, err := freePort(addr)
			if err != nil {
				return "", 0, fmt.Errorf("%s portal %s: %w", role, addr, err)
			}
			ctl := freeControlPort()
			logf, err := os.Create(filepath.Join(cfg.dir, role+".log"))
			if err != nil {
				return "", 0, err
			}
			cmd := exec.Command(tgtd, "-f", "-C", strconv.Itoa(ctl), "--iscsi", "portal="+a)
			// Per-command buffers on tgtd's heap, not an mmap/munmap per
			// command of 128 KiB or more (glibc's default threshold): the
			// simulated CVM should not burn the backup host's CPU.
			cmd.Env = append(os.Environ(), "MALLOC_MMAP_THRESHOLD_=16777216")
			cmd.Stdout, cmd.Stderr = logf, logf
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				logf.Close()
				return "", 0, fmt.Errorf("start tgtd: %w", err)
			}
			logf.Close()
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			t.procs = append(t.procs, &tgtProc{cmd, exited})
			if err := t.waitReady(ctx, ctl, filepath.Join(cfg.dir, role+".log"), a, exited); err != nil {
				cmd.Process.Kill()
				<-exited
				lastErr = fmt.Errorf("%s tgtd on %s: %w", role, a, err)
				continue
			}
			return a, ctl, nil
		}
		return "", 0, lastErr
	}
	if t.dsipAddr, t.dsipCtl, err = start("dsip", cfg.dsip); err != nil {
		return nil, err
	}
	if t.cvmAddr, t.cvmCtl, err = start("cvm", cfg.cvm); err != nil {
		return nil, err
	}
	dh, _, _ := net.SplitHostPort(t.dsipAddr)
	ch, _, _ := net.SplitHostPort(t.cvmAddr)
	if dh == ch {
		return nil, fmt.Errorf("the CVM portal %s must use another address than the Data Services IP %s (tgtd does not redirect to the initiator's own address)", t.cvmAddr, t.dsipAddr)
	}
	if cfg.chapUser != "" {
		for _, ctl := range []int{t.dsipCtl, t.cvmCtl} {
			if err := t.adm(ctl, "--op", "new", "--mode", "account", "--user", cfg.chapUser, "--password", cfg.chapSecret); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return t, nil
}

// waitReady polls the daemon until tgtadm answers and the portal accepts
// connections.
func (t *tgtManager) waitReady(ctx context.Context, ctl int, logFile, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("tgtd exited: %s", strings.TrimSpace(string(b)))
		default:
		}
		if t.adm(ctl, "--op", "show", "--mode", "sys") == nil {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("not ready after 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (t *tgtManager) adm(ctl int, args ...string) error {
	_, err := t.admOut(ctl, args...)
	return err
}

func (t *tgtManager) admOut(ctl int, args ...string) (string, error) {
	full := append([]string{"-C", strconv.Itoa(ctl), "--lld", "iscsi"}, args...)
	cmd := exec.Command(t.tgtadm, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("tgtadm %s: %v: %s", strings.Join(full, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// sync makes target iqn match the wanted LUN files, ACL and CHAP accounts on
// both daemons. An empty acl removes the target.
func (t *tgtManager) sync(iqn string, luns, acl []string, accounts []chapAccount) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tg := t.targets[iqn]
	if len(acl) == 0 {
		if tg == nil {
			return nil
		}
		return t.removeLocked(iqn)
	}
	if tg != nil && !slices.Equal(tg.luns, luns) {
		if err := t.removeLocked(iqn); err != nil {
			return err
		}
		tg = nil
	}
	if tg == nil {
		tg = &tgtTarget{tid: t.nextTid}
		t.nextTid++
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			if err := t.adm(ctl, "--op", "new", "--mode", "target", "--tid", strconv.Itoa(tg.tid), "-T", iqn); err != nil {
				return err
			}
		}
		for i, f := range luns {
			if err := t.adm(t.cvmCtl, "--op", "new", "--mode", "logicalunit", "--tid", strconv.Itoa(tg.tid),
				"--lun", strconv.Itoa(i+1), "-b", f); err != nil {
				return err
			}
		}
		// The CVM target offers what a modern target (Nutanix Volumes
		// among them) negotiates, not tgtd's 8 KiB / InitialR2T=Yes
		// defaults, which would make every 1 MiB write 128 PDUs and four
		// R2T round trips.
		for _, kv := range [][2]string{{"MaxRecvDataSegmentLength", "262144"}, {"MaxXmitDataSegmentLength", "262144"},
			{"MaxBurstLength", "1048576"}, {"FirstBurstLength", "262144"}, {"InitialR2T", "No"}, {"ImmediateData", "Yes"}} {
			if err := t.adm(t.cvmCtl, "--op", "update", "--mode", "target", "--tid", strconv.Itoa(tg.tid), "-n", kv[0], "-v", kv[1]); err != nil {
				return err
			}
		}
		host, port, _ := net.SplitHostPort(t.cvmAddr)
		for _, kv := range [][2]string{{"RedirectAddress", host}, {"RedirectPort", port}, {"RedirectReason", "Temporary"}} {
			if err := t.adm(t.dsipCtl, "--op", "update", "--mode", "target", "--tid", strconv.Itoa(tg.tid), "-n", kv[0], "-v", kv[1]); err != nil {
				return err
			}
		}
		tg.luns = slices.Clone(luns)
		t.targets[iqn] = tg
		if t.cfg.chapUser != "" {
			accounts = append(accounts, chapAccount{t.cfg.chapUser, t.cfg.chapSecret})
		}
	} else if t.cfg.chapUser != "" {
		accounts = append(accounts, chapAccount{t.cfg.chapUser, t.cfg.chapSecret})
	}
	tid := strconv.Itoa(tg.tid)
	// ACL.
	for _, a := range acl {
		if slices.Contains(tg.acl, a) {
			continue
		}
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			if err := t.adm(ctl, append([]string{"--op", "bind", "--mode", "target", "--tid", tid}, aclArgs(a)...)...); err != nil {
				return err
			}
		}
		tg.acl = append(tg.acl, a)
	}
	for _, a := range slices.Clone(tg.acl) {
		if slices.Contains(acl, a) {
			continue
		}
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			if err := t.adm(ctl, append([]string{"--op", "unbind", "--mode", "target", "--tid", tid}, aclArgs(a)...)...); err != nil {
				return err
			}
		}
		tg.acl = slices.DeleteFunc(tg.acl, func(x string) bool { return x == a })
	}
	// CHAP accounts.
	var want []string
	for _, ac := range accounts {
		want = append(want, ac.user)
		if slices.Contains(tg.accounts, ac.user) {
			continue
		}
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			if ac.user != t.cfg.chapUser {
				// Per-client accounts: (re)create with the current secret.
				_ = t.adm(ctl, "--op", "delete", "--mode", "account", "--user", ac.user)
				if err := t.adm(ctl, "--op", "new", "--mode", "account", "--user", ac.user, "--password", ac.secret); err != nil {
					return err
				}
			}
			if err := t.adm(ctl, "--op", "bind", "--mode", "account", "--tid", tid, "--user", ac.user); err != nil {
				return err
			}
		}
		tg.accounts = append(tg.accounts, ac.user)
	}
	for _, u := range slices.Clone(tg.accounts) {
		if slices.Contains(want, u) {
			continue
		}
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			_ = t.adm(ctl, "--op", "unbind", "--mode", "account", "--tid", tid, "--user", u)
		}
		tg.accounts = slices.DeleteFunc(tg.accounts, func(x string) bool { return x == u })
	}
	return nil
}

func aclArgs(a string) []string {
	if a == "ALL" || net.ParseIP(a) != nil || strings.Contains(a, "/") {
		return []string{"-I", a}
	}
	return []string{"-Q", a}
}

// removeLocked deletes a target (forcing its sessions off) on both daemons.
func (t *tgtManager) removeLocked(iqn string) error {
	tg := t.targets[iqn]
	if tg == nil {
		return nil
	}
	var errs []error
	for _, ctl := range []int{t.dsipCtl, t.cvmCtl} {
		if err := t.adm(ctl, "--op", "delete", "--mode", "target", "--force", "--tid", strconv.Itoa(tg.tid)); err != nil {
			errs = append(errs, err)
		}
	}
	delete(t.targets, iqn)
	return errors.Join(errs...)
}

// dropConnections forcibly closes every iSCSI connection on the CVM portal.
func (t *tgtManager) dropConnections() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	var errs []error
	for _, tg := range t.targets {
		tid := strconv.Itoa(tg.tid)
		for _, ctl := range []int{t.cvmCtl, t.dsipCtl} {
			out, err := t.admOut(ctl, "--op", "show", "--mode", "conn", "--tid", tid)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			sc := bufio.NewScanner(strings.NewReader(out))
			var sid string
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if v, ok := strings.CutPrefix(line, "Session:"); ok {
					sid = strings.TrimSpace(v)
				}
				if v, ok := strings.CutPrefix(line, "Connection:"); ok && sid != "" {
					cid := strings.TrimSpace(v)
					err := t.adm(ctl, "--op", "delete", "--mode", "conn", "--tid", tid, "--sid", sid, "--cid", cid)
					switch {
					case err != nil && strings.Contains(err.Error(), "can't find the session"):
						// It ended between the listing and the delete.
					case err != nil:
						errs = append(errs, err)
					default:
						n++
					}
				}
			}
		}
	}
	return n, errors.Join(errs...)
}

// pids of the tgtd processes (for tests).
func (t *tgtManager) pids() []int {
	var out []int
	for _, p := range t.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

// close kills both daemons with SIGKILL (tgtd ignores SIGTERM) and waits
// until they are reaped.
func (t *tgtManager) close() error {
	var errs []error
	for _, p := range t.procs {
		if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("kill tgtd %d: %w", p.cmd.Process.Pid, err))
		}
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("tgtd %d still running 5s after SIGKILL", p.cmd.Process.Pid))
		}
	}
	for _, ctl := range []int{t.dsipCtl, t.cvmCtl} {
		if ctl != 0 {
			os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d", ctl))
			os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d.lock", ctl))
		}
	}
	t.procs = nil
	return errors.Join(errs...)
}

// DropISCSIConnections forcibly closes every open iSCSI connection (a fault:
// the initiator must reconnect). It returns how many were closed.
func (s *Sim) DropISCSIConnections(ctx context.Context) (int, error) {
	if s.tgt == nil {
		return 0, nil
	}
	return s.tgt.dropConnections()
}

// TgtdPIDs returns the process ids of the two tgtd daemons (nil without
// iSCSI), so tests can check none is left after Close.
func (s *Sim) TgtdPIDs() []int {
	if s.tgt == nil {
		return nil
	}
	return s.tgt.pids()
}

// TgtdControlPorts returns the private tgtadm control ports (DSIP, CVM).
func (s *Sim) TgtdControlPorts() []int {
	if s.tgt == nil {
		return nil
	}
	return []int{s.tgt.dsipCtl, s.tgt.cvmCtl}
}
