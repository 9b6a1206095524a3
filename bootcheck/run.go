package bootcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options tune a boot check.
type Options struct {
	// Expect is the console text that proves the boot (default
	// DefaultExpect, a login prompt). It is matched with each kernel
	// message on its own line, even one printed right after a prompt.
	Expect *regexp.Regexp
	// Timeout bounds the boot, from QEMU's start to the expected text
	// (default 5 minutes); making the overlays and the screenshot come
	// on top.
	Timeout time.Duration
	// Screenshot, when set, is the PNG file the screen is saved to when
	// the check ends (while QEMU still runs).
	Screenshot string
	// WorkDir holds the throwaway overlays and the QMP socket (default:
	// a new WorkDir under os.TempDir(), removed when the check ends).
	WorkDir *WorkDir
	// QEMU and QEMUImg are the binaries (default: qemu-system-x86_64 and
	// qemu-img from PATH).
	QEMU, QEMUImg string
	// Logger gets debug lines (QEMU's command line); default: discard.
	Logger *slog.Logger
}

// Outcomes of a boot check, in Report.Reason.
const (
	ReasonMatched     = "matched"      // the console printed Expect
	ReasonBootFailure = "boot failure" // the console printed a known boot failure
	ReasonTimeout     = "timeout"      // neither, within Timeout
	ReasonExited      = "qemu exited"  // the guest reset or powered off (QEMU runs with -no-reboot), or QEMU failed
)

// screenSettle is how long a booted guest's screen is given to catch up
// with its serial console before the screenshot.
const screenSettle = time.Second

// Report is what a boot check saw.
type Report struct {
	Booted  bool    `json:"booted"`
	Reason  string  `json:"reason"`
	Matched string  `json:"matched,omitempty"` // the console text that decided it
	Accel   string  `json:"accel"`             // kvm or tcg
	Seconds float64 `json:"seconds"`
	// Console is the serial console's text (the last 256 KiB).
	Console    string `json:"console"`
	Screenshot string `json:"screenshot,omitempty"`
	// ScreenshotError says why no screenshot was saved.
	ScreenshotError string `json:"screenshot_error,omitempty"`
	QEMUStderr      string `json:"qemu_stderr,omitempty"`
	// ExitStatus is how QEMU ended when it ended by itself ("" while it
	// ran: the check stopped it).
	ExitStatus string `json:"exit_status,omitempty"`
	// Notes say where the check differed from the VM.
	Notes []string `json:"notes,omitempty"`
}

// Run boots m and reports whether its console printed o.Expect. An error
// means the check itself could not run (no QEMU, an unreadable disk, QEMU
// refusing its command line); a guest that does not boot is a Report with
// Booted false.
func Run(ctx context.Context, m Machine, o Options) (*Report, error) {
	if o.Expect == nil {
		o.Expect = DefaultExpect
	}
	if o.Expect.MatchString("") {
		return nil, fmt.Errorf("verify-boot: the expected text %q matches an empty console", o.Expect)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	qemu, err := lookBinary(o.QEMU, "qemu-system-x86_64")
	if err != nil {
		return nil, err
	}
	qemuImg, err := lookBinary(o.QEMUImg, "qemu-img")
	if err != nil {
		return nil, err
	}
	if o.WorkDir == nil {
		wd, err := NewWorkDir("")
		if err != nil {
			return nil, err
		}
		defer wd.Close()
		o.WorkDir = wd
	}
	kvm := kvmUsable()
	rep, err := boot(ctx, m, o, qemu, qemuImg, kvm)
	if errors.Is(err, errKVMInternal) {
		// Some hosts (nested ones) offer a /dev/kvm that stops a guest at
		// code it cannot emulate, or lacks what the machine needs (SMM):
		// the check runs again under TCG.
		o.Logger.Info("verify-boot: running again under TCG", "err", err)
		rep, err = boot(ctx, m, o, qemu, qemuImg, false)
		if rep != nil {
			rep.Notes = append(rep.Notes, "QEMU could not run the guest under KVM here (a nested host?); the check ran again under TCG")
		}
	}
	return rep, err
}

// errKVMInternal: QEMU could not run the guest under KVM: a KVM internal
// error stopped it, or QEMU refused to start it.
var errKVMInternal = errors.New("QEMU could not run the guest under KVM")

// boot is one QEMU run of Run, under KVM or TCG.
func boot(ctx context.Context, m Machine, o Options, qemu, qemuImg string, kvm bool) (*Report, error) {
	work := o.WorkDir.Path
	overlays, err := makeOverlays(ctx, qemuImg, work, m.Disks)
	if err != nil {
		return nil, err
	}
	// QMP on one end of a socket pair, QEMU's fd 3: no socket path (whose
	// length and characters QEMU's option syntax limits).
	qmpConn, qmpFile, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("verify-boot: QMP socket: %w", err)
	}
	defer qmpConn.Close()
	files := runFiles{overlays: overlays, qmpFD: 3, pid: filepath.Join(work, "qemu.pid"), vars: filepath.Join(work, "uefi-vars.fd")}
	if m.ovmf() {
		if err := m.copyVars(files.vars); err != nil {
			return nil, fmt.Errorf("verify-boot: %w", err)
		}
	}
	args, err := m.args(files, kvm)
	if err != nil {
		return nil, fmt.Errorf("verify-boot: %w", err)
	}
	rep := &Report{Accel: "tcg"}
	if m.SecureBoot {
		rep.Notes = append(rep.Notes, "Secure Boot enforced: OVMF with Microsoft's keys enrolled, on Q35 with SMM (a boot loader they do not sign is refused)")
	}
	if kvm {
		rep.Accel = "kvm"
	}
	o.Logger.Debug("starting QEMU", "args", strings.Join(args, " "))
	cmd := exec.Command(qemu, args...)
	// QEMU dies with us, even on SIGKILL: its overlays are throwaway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.ExtraFiles = []*os.File{qmpFile}
	stderr := &stderrWatch{kvmFailed: make(chan struct{})}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("verify-boot: %w", err)
	}
	start := time.Now()
	err = cmd.Start()
	qmpFile.Close() // QEMU holds its end
	if err != nil {
		return nil, fmt.Errorf("verify-boot: start QEMU: %w", err)
	}
	con := &console{}
	fresh := make(chan struct{}, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				con.write(buf[:n])
				select {
				case fresh <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-readDone
		exited <- cmd.Wait()
	}()
	var sc scanner
	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	running := true
	var exitErr error // how QEMU ended, when it ended by itself
wait:
	for {
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("verify-boot: %w", ctx.Err())
		case <-timer.C:
			rep.Reason = ReasonTimeout
			break wait
		case exitErr = <-exited:
			running = false
			rep.ExitStatus = "exit status 0"
			if exitErr != nil {
				rep.ExitStatus = exitErr.Error()
			}
			// The last bytes may have come with the exit.
			if sc.decide(rep, con, o.Expect) {
				break wait
			}
			rep.Reason = ReasonExited
			break wait
		case <-fresh:
			if sc.decide(rep, con, o.Expect) {
				break wait
			}
		case <-stderr.kvmFailed:
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("verify-boot: %w: %s", errKVMInternal, stderr.String())
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if o.Screenshot != "" {
		switch {
		case !running:
			rep.ScreenshotError = "QEMU had exited: there was no screen to save"
		default:
			if rep.Booted {
				// The screen's own login prompt may be drawn a moment
				// after the serial port's.
				time.Sleep(screenSettle)
			}
			if err := screendump(ctx, qmpConn, o.Screenshot); err != nil {
				rep.ScreenshotError = err.Error()
			} else {
				rep.Screenshot = o.Screenshot
			}
		}
	}
	if running {
		cmd.Process.Kill()
		<-exited
	}
	rep.Console = con.String()
	rep.QEMUStderr = strings.TrimSpace(stderr.String())
	if rep.Reason == ReasonExited && exitErr != nil && rep.Console == "" {
		err := fmt.Errorf("verify-boot: QEMU failed (%s): %s", rep.ExitStatus, rep.QEMUStderr)
		if kvm { // KVM may lack what the machine needs (SMM on a nested host): TCG next
			err = fmt.Errorf("%w: %w", errKVMInternal, err)
		}
		return nil, err
	}
	return rep, nil
}

// scanner decides the check from the console as it grows, reading each
// line once: only what arrived since the last look, from the start of the
// line then still open.
type scanner struct {
	from int64 // absolute console offset to scan from
}

// decide settles the check from the console text: Expect wins, then a
// known boot failure. It reports whether the check is over. Matched is the
// console line that decided.
func (sc *scanner) decide(rep *Report, con *console, expect *regexp.Regexp) bool {
	text, base := con.since(sc.from)
	lines := kernelLines(text)
	if loc := expect.FindStringIndex(lines); loc != nil {
		rep.Booted, rep.Reason, rep.Matched = true, ReasonMatched, lineAt(lines, loc)
		return true
	}
	complete := text[:strings.LastIndexByte(text, '\n')+1]
	loc := bootFailures.FindStringIndex(complete)
	if loc == nil {
		loc = bootPrompts.FindStringIndex(text)
	}
	if loc != nil {
		rep.Reason, rep.Matched = ReasonBootFailure, lineAt(text, loc)
		return true
	}
	// Next time, from the start of the line still open.
	sc.from = base + int64(len(complete))
	return false
}

// kernelMessage is a kernel message's timestamp that does not start its
// line: the kernel printed it on the console after a prompt (or other
// text) that ends without a newline, as "host login: [    2.09] tsc: ...".
var kernelMessage = regexp.MustCompile(`([^\n])(\[ *[0-9]+\.[0-9]{6}\] )`)

// kernelLines is text with each kernel message that continues a line
// moved onto its own line, so a prompt the kernel wrote after is still at
// the end of its line, however late the scanner reads the two.
func kernelLines(text string) string {
	return kernelMessage.ReplaceAllString(text, "$1\n$2")
}

// lineAt is the line of text holding the match loc, trimmed.
func lineAt(text string, loc []int) string {
	start := strings.LastIndexByte(text[:loc[0]], '\n') + 1
	end, from := len(text), max(loc[0], loc[1]-1)
	if i := strings.IndexByte(text[from:], '\n'); i >= 0 {
		end = from + i
	}
	return strings.TrimSpace(text[start:end])
}

// makeOverlays creates one throwaway qcow2 per disk in dir, backed by the
// disk's source read-only.
func makeOverlays(ctx context.Context, qemuImg, dir string, disks []Disk) ([]string, error) {
	var out []string
	for i, d := range disks {
		src := d.Source
		if !strings.Contains(src, "://") {
			abs, err := filepath.Abs(src)
			if err != nil {
				return nil, fmt.Errorf("verify-boot: %w", err)
			}
			// No stat here: the source may be on this process's own
			// FUSE mount (fusefs.Options.OthersOnly); qemu-img says
			// when it is missing.
			src = abs
		}
		ov := filepath.Join(dir, fmt.Sprintf("overlay-%d.qcow2", i))
		// qemu-img opens the source (an NFS URL may not answer): it has
		// a minute, and dies with us.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(cctx, qemuImg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", src, ov)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("verify-boot: overlay for disk %d (%s): %w: %s", i, d.Source, err, strings.TrimSpace(string(b)))
		}
		out = append(out, ov)
	}
	return out, nil
}

// lookBinary is path when set, else name from PATH.
func lookBinary(path, name string) (string, error) {
	if path != "" {
		return path, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("verify-boot: %s not found (install Debian's qemu-system-x86 and qemu-utils)", name)
		}
		return "", fmt.Errorf("verify-boot: %w", err)
	}
	return p, nil
}

// stderrWatch keeps QEMU's stderr and closes kvmFailed when QEMU reports
// a KVM internal error (after which the guest stays stopped).
type stderrWatch struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	kvmFailed chan struct{}
	seen      bool
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && bytes.Contains(w.buf.Bytes(), []byte("KVM internal error")) {
		w.seen = true
		close(w.kvmFailed)
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
