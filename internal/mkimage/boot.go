package mkimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// BootSpec describes the small bootable Linux disk BuildBootable writes: an
// MBR disk with one active FAT16 partition holding SYSLINUX, a Debian kernel
// and a busybox initramfs whose init prints a login prompt on the serial
// console and on the screen. With UEFI: a GPT disk whose FAT16 EFI system
// partition holds SYSLINUX's EFI loader as the removable-media boot file
// (EFI/BOOT/BOOTX64.EFI) instead.
type BootSpec struct {
	// UEFI makes the disk boot with UEFI firmware (OVMF) instead of a BIOS.
	UEFI bool
	// SecureBoot (with UEFI) boots through Debian's signed shim and GRUB
	// instead of SYSLINUX, so that the disk boots with Secure Boot
	// enforced: shim is signed by Microsoft, GRUB and the Debian kernel by
	// Debian. The loaders come from SecureBootDir.
	SecureBoot bool
	// Kernel is the bzImage to boot (default: the newest /boot/vmlinuz-*,
	// from Debian's linux-image-amd64).
	Kernel string
	// NoKernel leaves the kernel out: the boot loader then stops with
	// "Loading /vmlinuz... failed", the broken restore point tests need.
	NoKernel bool
	// Busybox is a statically linked busybox (default /bin/busybox, from
	// busybox-static).
	Busybox string
	// Hostname is what the login prompt names (default "ahvfs-boot").
	Hostname string
	// Size of the disk (default 64 MiB).
	Size int64
}

// Boot-loader files from Debian's syslinux-common (BIOS) and
// syslinux-efi (UEFI).
const (
	syslinuxMBR    = "/usr/lib/syslinux/mbr/mbr.bin"
	syslinuxEFI    = "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
	syslinuxEFILib = "/usr/lib/syslinux/modules/efi64/ldlinux.e64"
)

// syslinuxCfg boots the kernel at once, echoing the boot loader on the
// first serial port; panic=5 with QEMU's -no-reboot ends a failed boot.
const syslinuxCfg = `SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=tty0 console=ttyS0,115200 panic=5
`

// grubCfg boots the kernel at once: Debian's signed GRUB reads it from
// EFI/debian (and, started from the removable-media path, from EFI/BOOT).
const grubCfg = `set timeout=0
linux /vmlinuz console=tty0 console=ttyS0,115200 panic=5
initrd /initrd.gz
boot
`

// SecureBootDir holds Debian's signed shim and GRUB, unpacked from the
// shim-signed and grub-efi-amd64-signed packages by tools/install-deps.sh
// (not installed: their scripts would set up this machine's own boot):
// $AHVFS_TOOLS_DIR/secureboot, default ~/.cache/ahvfs-tools/secureboot.
func SecureBootDir() string {
	tools := os.Getenv("AHVFS_TOOLS_DIR")
	if tools == "" {
		home, _ := os.UserHomeDir()
		tools = filepath.Join(home, ".cache", "ahvfs-tools")
	}
	return filepath.Join(tools, "secureboot")
}

// Signed loaders, within SecureBootDir.
const (
	shimSigned = "usr/lib/shim/shimx64.efi.signed"
	grubSigned = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
)

// CheckSecureBoot reports what a SecureBoot disk lacks on this machine.
func CheckSecureBoot() error {
	for _, f := range []string{shimSigned, grubSigned} {
		if _, err := os.Stat(filepath.Join(SecureBootDir(), f)); err != nil {
			return fmt.Errorf("mkimage: a Secure Boot image needs Debian's signed shim and GRUB in %s (tools/install-deps.sh unpacks them there): %w", SecureBootDir(), err)
		}
	}
	return nil
}

// BuildBootable writes the bootable test disk described by spec to path.
// The partition is FAT16 so SYSLINUX installs into the image file itself
// (syslinux's mtools installer; EXTLINUX would need the filesystem mounted).
func BuildBootable(ctx context.Context, path string, spec BootSpec) error {
	if spec.Size == 0 {
		spec.Size = 64 * mib
	}
	if spec.Hostname == "" {
		spec.Hostname = "ahvfs-boot"
	}
	if spec.Busybox == "" {
		spec.Busybox = "/bin/busybox"
	}
	if spec.Kernel == "" && !spec.NoKernel {
		k, err := newestKernel()
		if err != nil {
			return err
		}
		spec.Kernel = k
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".mkimage-boot-*")
	if err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	initrd, err := bootInitramfs(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "initrd.gz"), initrd, 0o644); err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	if !spec.NoKernel {
		k, err := os.ReadFile(spec.Kernel)
		if err != nil {
			return fmt.Errorf("mkimage: kernel: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tree, "vmlinuz"), k, 0o644); err != nil {
			return fmt.Errorf("mkimage: %w", err)
		}
	}
	if spec.UEFI || spec.SecureBoot {
		return buildUEFIBootable(ctx, path, tree, spec)
	}
	if err := os.WriteFile(filepath.Join(tree, "syslinux.cfg"), []byte(syslinuxCfg), 0o644); err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	mbr, err := os.ReadFile(syslinuxMBR)
	if err != nil {
		return fmt.Errorf("mkimage: SYSLINUX MBR code (install syslinux-common): %w", err)
	}
	if len(mbr) < 440 {
		return fmt.Errorf("mkimage: %s holds %d bytes, want 440", syslinuxMBR, len(mbr))
	}
	part := Partition{FS: FAT16, Size: spec.Size - 2*mib, Dir: tree, Label: "AHVFSBOOT", Bootable: true}
	if err := Build(ctx, path, Spec{Table: MBR, Partitions: []Partition{part}}); err != nil {
		return err
	}
	// Build places the one partition at 1 MiB.
	if err := run(ctx, nil, "syslinux", "--install", "--offset", fmt.Sprint(mib), path); err != nil {
		return fmt.Errorf("%w (install the syslinux package)", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr[:440], 0); err != nil {
		return fmt.Errorf("mkimage: MBR code: %w", err)
	}
	return f.Close()
}

// buildUEFIBootable writes the UEFI variant: the tree (kernel, initramfs)
// plus the boot loaders (SYSLINUX's EFI loader or, for Secure Boot,
// Debian's signed shim and GRUB) on a GPT EFI system partition.
func buildUEFIBootable(ctx context.Context, path, tree string, spec BootSpec) error {
	add := addSyslinuxEFI
	if spec.SecureBoot {
		add = addSignedLoaders
	}
	if err := add(tree); err != nil {
		return err
	}
	part := Partition{FS: FAT16, Size: spec.Size - 2*mib, Dir: tree, Label: "AHVFSBOOT", ESP: true}
	return Build(ctx, path, Spec{Table: GPT, Partitions: []Partition{part}})
}

// addSyslinuxEFI puts SYSLINUX's EFI loader (the removable-media boot
// file), its library and its configuration into the ESP tree.
func addSyslinuxEFI(tree string) error {
	boot := filepath.Join(tree, "EFI", "BOOT")
	for src, dst := range map[string]string{syslinuxEFI: "BOOTX64.EFI", syslinuxEFILib: "ldlinux.e64"} {
		if err := copyFile(src, filepath.Join(boot, dst)); err != nil {
			return fmt.Errorf("mkimage: SYSLINUX EFI loader (install syslinux-efi): %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(boot, "syslinux.cfg"), []byte(syslinuxCfg), 0o644); err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	return nil
}

// addSignedLoaders puts shim (the removable-media boot file), GRUB beside
// it and GRUB's configuration into the ESP tree.
func addSignedLoaders(tree string) error {
	if err := CheckSecureBoot(); err != nil {
		return err
	}
	files := map[string]string{
		filepath.Join(SecureBootDir(), shimSigned): "EFI/BOOT/BOOTX64.EFI",
		filepath.Join(SecureBootDir(), grubSigned): "EFI/BOOT/grubx64.efi",
	}
	for src, dst := range files {
		if err := copyFile(src, filepath.Join(tree, dst)); err != nil {
			return fmt.Errorf("mkimage: %w", err)
		}
	}
	for _, dir := range []string{"EFI/BOOT", "EFI/debian"} {
		if err := os.MkdirAll(filepath.Join(tree, dir), 0o755); err != nil {
			return fmt.Errorf("mkimage: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tree, dir, "grub.cfg"), []byte(grubCfg), 0o644); err != nil {
			return fmt.Errorf("mkimage: %w", err)
		}
	}
	return nil
}

// newestKernel is the last /boot/vmlinuz-* in version order (numbers
// compared as numbers: 6.1.0-10 after 6.1.0-9).
func newestKernel() (string, error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return "", fmt.Errorf("mkimage: no kernel in /boot (install linux-image-amd64, or name one with --kernel)")
	}
	sort.Slice(ks, func(i, j int) bool { return versionLess(ks[i], ks[j]) })
	return ks[len(ks)-1], nil
}

// versionLess compares a and b run by run, digit runs as numbers.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		ra, rb := leadingRun(a), leadingRun(b)
		if ra != rb {
			na, ea := strconv.Atoi(ra)
			nb, eb := strconv.Atoi(rb)
			if ea == nil && eb == nil {
				return na < nb
			}
			return ra < rb
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return len(a) < len(b)
}

// leadingRun is s's first run of digits, or of other characters.
func leadingRun(s string) string {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	i := 1
	for i < len(s) && digit(s[i]) == digit(s[0]) {
		i++
	}
	return s[:i]
}

// bootInitramfs is the gzipped initramfs: busybox, an /init that mounts the
// kernel filesystems and hands over to busybox init, and an inittab with a
// getty on the serial port and on the first virtual terminal.
func bootInitramfs(spec BootSpec) ([]byte, error) {
	bb, err := os.ReadFile(spec.Busybox)
	if err != nil {
		return nil, fmt.Errorf("mkimage: busybox (install busybox-static): %w", err)
	}
	initScript := "#!/bin/busybox sh\n" +
		"/bin/busybox --install -s\n" +
		"mount -t proc proc /proc\n" +
		"mount -t sysfs sysfs /sys\n" +
		"mount -t devtmpfs devtmpfs /dev\n" +
		"hostname " + spec.Hostname + "\n" +
		"echo \"ahvfs boot test image: Linux $(uname -r) is up\"\n" +
		"exec /sbin/init\n"
	inittab := "::sysinit:/bin/true\n" +
		"tty1::respawn:/sbin/getty 38400 tty1\n" +
		"ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
	dir := fs.ModeDir | 0o755
	entries := []cpioEntry{
		{Name: "bin", Mode: dir}, {Name: "sbin", Mode: dir}, {Name: "usr", Mode: dir},
		{Name: "usr/bin", Mode: dir}, {Name: "usr/sbin", Mode: dir}, {Name: "etc", Mode: dir},
		{Name: "proc", Mode: dir}, {Name: "sys", Mode: dir}, {Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Name: "dev", Mode: dir},
		{Name: "dev/console", Mode: fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "bin/busybox", Mode: 0o755, Data: bb},
		{Name: "init", Mode: 0o755, Data: []byte(initScript)},
		{Name: "etc/inittab", Mode: 0o644, Data: []byte(inittab)},
		{Name: "etc/issue", Mode: 0o644, Data: []byte("ahvfs boot test image\n\n")},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/:/bin/sh\n")},
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := writeCPIO(zw, entries); err != nil {
		return nil, fmt.Errorf("mkimage: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("mkimage: %w", err)
	}
	return buf.Bytes(), nil
}

// CheckBootable reports what BuildBootable lacks on this machine, naming
// the Debian packages to install.
func CheckBootable() error {
	var missing []string
	for _, t := range []struct{ cmd, pkg string }{{"syslinux", "syslinux"}, {"mkfs.vfat", "dosfstools"}, {"mcopy", "mtools"}, {"sfdisk", "fdisk"}} {
		if _, err := lookPath(t.cmd); err != nil {
			missing = append(missing, t.cmd+" ("+t.pkg+")")
		}
	}
	for _, f := range []struct{ path, pkg string }{{syslinuxMBR, "syslinux-common"}, {syslinuxEFI, "syslinux-efi"},
		{syslinuxEFILib, "syslinux-common"}, {"/bin/busybox", "busybox-static"}} {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, f.path+" ("+f.pkg+")")
		}
	}
	if _, err := newestKernel(); err != nil {
		missing = append(missing, "/boot/vmlinuz-* (linux-image-amd64)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("mkimage: a bootable image needs %s", strings.Join(missing, ", "))
	}
	return nil
}
