package bootcheck

import (
	"context"
	"crypto/sha256"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/stretchr/testify/require"
)

// bootImage builds the bootable test disk described by spec.
func bootImage(t *testing.T, spec mkimage.BootSpec) string {
	t.Helper()
	testenv.Commands(t, "qemu-system-x86_64", "qemu-img")
	err := mkimage.CheckBootable()
	testenv.RequireOrSkip(t, err == nil, fmt.Sprint(err))
	p := filepath.Join(t.TempDir(), "boot.raw")
	require.NoError(t, mkimage.BuildBootable(context.Background(), p, spec))
	return p
}

// consoleEnd is the last lines of a check's console: where a boot that
// failed stopped (a failure message shows the start of a long text only).
func consoleEnd(rep *Report) string {
	lines := strings.Split(rep.Console, "\n")
	return strings.Join(lines[max(len(lines)-60, 0):], "\n")
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return [32]byte(h.Sum(nil))
}

// TestBootsAndScreenshots boots the test image from a SATA disk and from a
// virtio-blk disk: the console shows the login prompt, the screenshot is a
// PNG with something drawn on it, and the disk is not written.
func TestBootsAndScreenshots(t *testing.T) {
	img := bootImage(t, mkimage.BootSpec{})
	before := sum(t, img)
	for _, bus := range []string{"SATA", "PCI"} {
		t.Run(bus, func(t *testing.T) {
			shot := filepath.Join(t.TempDir(), "screen.png")
			m := Machine{Name: "boot", Disks: []Disk{{Source: img, Bus: bus}}, MemoryBytes: 256 << 20, VCPUs: 1}
			rep, err := Run(context.Background(), m, Options{Screenshot: shot})
			require.NoError(t, err)
			require.True(t, rep.Booted, "reason %s, console (end):\n%s\nstderr: %s", rep.Reason, consoleEnd(rep), rep.QEMUStderr)
			require.Equal(t, ReasonMatched, rep.Reason)
			require.Equal(t, "ahvfs-boot login:", rep.Matched)
			require.Contains(t, rep.Console, "ahvfs boot test image: Linux")
			require.Equal(t, shot, rep.Screenshot, rep.ScreenshotError)
			f, err := os.Open(shot)
			require.NoError(t, err)
			defer f.Close()
			pic, err := png.Decode(f)
			require.NoError(t, err)
			b := pic.Bounds()
			require.GreaterOrEqual(t, b.Dx(), 640)
			colors := map[uint32]int{}
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bl, _ := pic.At(x, y).RGBA()
					colors[r>>8<<16|g>>8<<8|bl>>8]++
				}
			}
			// Text on the console: more than one colour, and the
			// bottom lines, where the screen's login prompt sits once
			// the kernel's messages have scrolled up, are not empty.
			require.Greater(t, len(colors), 1, "the screenshot is one flat colour")
			var bg uint32
			for c, n := range colors {
				if n > colors[bg] {
					bg = c
				}
			}
			ink := 0
			for y := b.Max.Y - 32; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bl, _ := pic.At(x, y).RGBA()
					if r>>8<<16|g>>8<<8|bl>>8 != bg {
						ink++
					}
				}
			}
			require.Greater(t, ink, 100, "nothing drawn on the screen's last lines")
		})
	}
	require.Equal(t, before, sum(t, img), "the boot check wrote to its disk")
}

// TestBootsUEFI boots the UEFI variant of the test disk with OVMF, as a
// UEFI VM: it comes up; as a SECURE_BOOT VM, Secure Boot refuses its
// unsigned loader.
func TestBootsUEFI(t *testing.T) {
	_, err := os.Stat(ovmfCode)
	testenv.RequireOrSkip(t, err == nil, "needs OVMF (Debian's ovmf)")
	img := bootImage(t, mkimage.BootSpec{UEFI: true})
	m := Machine{Disks: []Disk{{Source: img, Bus: "SCSI"}}, MemoryBytes: 512 << 20, VCPUs: 1, UEFI: true}
	rep, err := Run(context.Background(), m, Options{})
	require.NoError(t, err)
	require.True(t, rep.Booted, "reason %s, console (end):\n%s\nstderr: %s", rep.Reason, consoleEnd(rep), rep.QEMUStderr)
	require.Equal(t, "ahvfs-boot login:", rep.Matched)
	require.NotContains(t, strings.Join(rep.Notes, "\n"), "Secure Boot")

	// With Secure Boot enforced, its unsigned loader is refused.
	m.SecureBoot = true
	rep, err = Run(context.Background(), m, Options{})
	require.NoError(t, err)
	require.False(t, rep.Booted, "an unsigned loader booted with Secure Boot enforced:\n%s", consoleEnd(rep))
	require.Equal(t, ReasonBootFailure, rep.Reason, "console (end):\n%s\nstderr: %s", consoleEnd(rep), rep.QEMUStderr)
	require.Contains(t, rep.Matched, "Access Denied")
	require.Contains(t, strings.Join(rep.Notes, "\n"), "Secure Boot enforced")

	// The same disk on a BIOS has nothing to boot.
	m.UEFI, m.SecureBoot = false, false
	rep, err = Run(context.Background(), m, Options{Timeout: 3 * time.Second})
	require.NoError(t, err)
	require.False(t, rep.Booted)
}

// TestBootsSecureBoot boots a disk whose loaders are signed (Debian's
// shim, GRUB and kernel) as a Secure Boot VM: it comes up with Secure Boot
// enforced, as the kernel itself reports.
func TestBootsSecureBoot(t *testing.T) {
	_, err := os.Stat(ovmfSecureCode)
	testenv.RequireOrSkip(t, err == nil, "needs OVMF's Secure Boot build (Debian's ovmf)")
	err = mkimage.CheckSecureBoot()
	testenv.RequireOrSkip(t, err == nil, fmt.Sprint(err))
	img := bootImage(t, mkimage.BootSpec{UEFI: true, SecureBoot: true})
	m := Machine{Disks: []Disk{{Source: img, Bus: "SCSI"}}, MemoryBytes: 512 << 20, VCPUs: 1, UEFI: true, SecureBoot: true}
	rep, err := Run(context.Background(), m, Options{})
	require.NoError(t, err)
	require.True(t, rep.Booted, "reason %s, console (end):\n%s\nstderr: %s", rep.Reason, consoleEnd(rep), rep.QEMUStderr)
	require.Contains(t, rep.Console, "Secure boot enabled")
	require.Contains(t, strings.Join(rep.Notes, "\n"), "Secure Boot enforced")
}

// TestNoKernel boots the image without its kernel: the boot loader's
// failure ends the check, reported with the console output.
func TestNoKernel(t *testing.T) {
	img := bootImage(t, mkimage.BootSpec{NoKernel: true})
	m := Machine{Disks: []Disk{{Source: img, Bus: "SCSI"}}, MemoryBytes: 256 << 20, VCPUs: 1}
	rep, err := Run(context.Background(), m, Options{})
	require.NoError(t, err)
	require.False(t, rep.Booted)
	require.Equal(t, ReasonBootFailure, rep.Reason, consoleEnd(rep))
	require.Equal(t, "Loading /vmlinuz... failed: No such file or directory", rep.Matched)
	require.Contains(t, rep.Console, "SYSLINUX")
}

// TestExpectTimeout: text the guest never prints ends the check at its
// timeout, not as a success.
func TestExpectTimeout(t *testing.T) {
	img := bootImage(t, mkimage.BootSpec{})
	m := Machine{Disks: []Disk{{Source: img, Bus: "IDE"}}, MemoryBytes: 256 << 20, VCPUs: 1}
	rep, err := Run(context.Background(), m, Options{Expect: regexp.MustCompile(`never printed`), Timeout: 3 * time.Second})
	require.NoError(t, err)
	require.False(t, rep.Booted)
	require.Equal(t, ReasonTimeout, rep.Reason)
}

// TestNothingToBoot: a blank disk ends the check at once (the firmware
// resets, QEMU exits), not at the timeout.
func TestNothingToBoot(t *testing.T) {
	testenv.Commands(t, "qemu-system-x86_64", "qemu-img")
	blank := filepath.Join(t.TempDir(), "blank.raw")
	require.NoError(t, os.WriteFile(blank, make([]byte, 1<<20), 0o644))
	rep, err := Run(context.Background(), Machine{Disks: []Disk{{Source: blank, Bus: "SATA"}}, MemoryBytes: 256 << 20}, Options{})
	require.NoError(t, err)
	require.False(t, rep.Booted)
	require.Equal(t, ReasonExited, rep.Reason)
	require.Equal(t, "exit status 0", rep.ExitStatus)
}

// TestQEMUFails: QEMU that cannot start is an error, not "did not boot".
func TestQEMUFails(t *testing.T) {
	testenv.Commands(t, "qemu-img")
	blank := filepath.Join(t.TempDir(), "blank.raw")
	require.NoError(t, os.WriteFile(blank, make([]byte, 1<<20), 0o644))
	_, err := Run(context.Background(), Machine{Disks: []Disk{{Source: blank, Bus: "SATA"}}}, Options{QEMU: "/bin/false"})
	require.ErrorContains(t, err, "QEMU failed (exit status 1)")
	_, err = Run(context.Background(), Machine{Disks: []Disk{{Source: blank, Bus: "SATA"}}}, Options{Expect: regexp.MustCompile(`x*`)})
	require.ErrorContains(t, err, "matches an empty console")
}

func TestMissingDisk(t *testing.T) {
	testenv.Commands(t, "qemu-system-x86_64", "qemu-img")
	_, err := Run(context.Background(), Machine{Disks: []Disk{{Source: "/nonexistent/disk-0.raw", Bus: "SCSI"}}}, Options{})
	require.ErrorContains(t, err, "disk 0")
}

func TestArgs(t *testing.T) {
	m := Machine{MemoryBytes: 1 << 30, VCPUs: 2, Disks: []Disk{{Bus: "SCSI", Index: 1}, {Bus: "SATA", Index: 2}, {Bus: "IDE", Index: 3}, {Bus: "PCI"}}}
	a, err := m.args(runFiles{overlays: []string{"o0", "o1", "o2", "o3"}, qmpFD: 3, pid: "/q.pid"}, false)
	require.NoError(t, err)
	s := strings.Join(a, " ")
	for _, want := range []string{"-machine pc,accel=tcg", "-m 1024M", "-smp 2", "-nic none", "-no-reboot",
		"scsi-hd,bus=scsi0.0,scsi-id=1,drive=disk0,bootindex=0", "ide-hd,bus=ahci0.2,drive=disk1 ",
		"ide-hd,bus=ide.1,unit=1,drive=disk2 ", "virtio-blk-pci,drive=disk3", "-chardev socket,id=qmp,fd=3 -mon chardev=qmp,mode=control", "-boot reboot-timeout=0"} {
		require.Contains(t, s, want)
	}
	_, err = Machine{Disks: []Disk{{Bus: "SATA", Index: 6}}}.args(runFiles{overlays: []string{"o"}, qmpFD: 3, pid: "p"}, false)
	require.ErrorContains(t, err, "ports 0 to 5")
	_, err = os.Stat(ovmfCode)
	testenv.RequireOrSkip(t, err == nil, "needs OVMF (Debian's ovmf)")
	a, err = Machine{UEFI: true, Disks: []Disk{{Bus: "SCSI"}}}.args(runFiles{overlays: []string{"/a,b/o"}, qmpFD: 3, pid: "p", vars: "/v.fd"}, false)
	require.NoError(t, err)
	s = strings.Join(a, " ")
	require.Contains(t, s, "if=pflash,format=raw,readonly=on,file="+ovmfCode)
	require.Contains(t, s, "if=pflash,format=raw,file=/v.fd")
	require.Contains(t, s, "file=/a,,b/o,format=qcow2")
}

func TestConsoleText(t *testing.T) {
	var c console
	c.write([]byte("\x1b[2J\x1b[1;1Hfirst\r\nsec"))
	c.write([]byte("ond \x1b[0"))
	c.write([]byte("mline\r\nhost login: "))
	require.Equal(t, "first\nsecond line\nhost login: ", c.String())
	// Escape sequences other than CSI, and a cut one, leave the text.
	for _, in := range []string{"\x1b(Bhost login: ", "\x1b7host login: ", "\x1bchost login: ", "\x1b[>0chost login: "} {
		var c console
		c.write([]byte(in))
		require.Equal(t, "host login: ", c.String(), "%q", in)
	}
	require.True(t, DefaultExpect.MatchString(c.String()))
	require.False(t, DefaultExpect.MatchString("Last login: Mon\nwelcome\n$ "))
}

// TestPromptThenKernelMessage: a kernel message printed right after the
// login prompt, on its line, read in the same look, still proves the boot
// (what timed a boot check out on a busy machine: "ahvfs-boot login: [
// 2.099763] tsc: Refined TSC clocksource calibration"). A timestamp cut by
// a read waits for the rest; text after a prompt that is not a kernel
// message is not a prompt.
func TestPromptThenKernelMessage(t *testing.T) {
	for _, reads := range [][]string{
		{"Welcome\nahvfs-boot login: [    2.099763] tsc: Refined TSC clocksource calibration: 2096.007 MHz\n"},
		{"ahvfs-boot login: [    2.0", "99763] tsc: Refined TSC\n[    2.100531] clocksource: tsc: mask\n"},
		{"ahvfs-boot login: [12345.000001] random: crng init done"},
	} {
		var c console
		var sc scanner
		rep := &Report{}
		done := false
		for _, r := range reads {
			c.write([]byte(r))
			done = sc.decide(rep, &c, DefaultExpect)
		}
		require.True(t, done, "%q", reads)
		require.True(t, rep.Booted)
		require.Equal(t, "ahvfs-boot login:", rep.Matched)
	}
	for _, text := range []string{"ahvfs-boot login: root\n", "ahvfs-boot login: [ 2.0] not a kernel timestamp\n"} {
		var c console
		var sc scanner
		rep := &Report{}
		c.write([]byte(text))
		require.False(t, sc.decide(rep, &c, DefaultExpect), "%q", text)
		require.False(t, rep.Booted)
	}
}

// FuzzConsole: whatever bytes the serial port sends, the console text
// holds no control bytes but newlines and tabs, and stays within its limit.
func FuzzConsole(f *testing.F) {
	f.Add([]byte("\x1b[2J\x1b[1;1Hhost login: "), []byte("\x1b[0"))
	f.Add([]byte("a\r\nb\x00\x07\x7f"), []byte("\x1b"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var c, whole console
		c.write(a)
		c.write(b)
		s := c.String()
		// However the bytes arrive, the text is the same.
		whole.write(append(append([]byte(nil), a...), b...))
		if len(s) < consoleLimit {
			require.Equal(t, whole.String(), s)
		}
		require.LessOrEqual(t, len(s), consoleLimit)
		for _, r := range []byte(s) {
			if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
				t.Fatalf("control byte %#x in %q", r, s)
			}
		}
	})
}
