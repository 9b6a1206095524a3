package mkimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Filesystem types Build can make.
const (
	Ext4  = "ext4"
	XFS   = "xfs"
	FAT32 = "fat32"
	FAT16 = "fat16"
	NTFS  = "ntfs"
	// Raw leaves the partition's bytes as zeros (or copies Image into it).
	Raw = "raw"
)

// Partition tables Build can write.
const (
	GPT  = "gpt"
	MBR  = "mbr"
	None = "" // a bare filesystem: the image is exactly one partition's content
)

// Partition is one filesystem of an image.
type Partition struct {
	FS    string // Ext4, XFS, FAT32, FAT16, NTFS or Raw
	Size  int64  // bytes; rounded up to 1 MiB
	Dir   string // tree to copy in (empty: an empty filesystem)
	Label string // filesystem label (optional)
	// Image, for Raw, is a file whose bytes fill the partition.
	Image string
	// Bootable marks the partition active in an MBR table (the flag a
	// BIOS boot loader's MBR code looks for).
	Bootable bool
	// ESP types a GPT partition as the EFI system partition.
	ESP bool
}

// Spec describes an image.
type Spec struct {
	Table      string // GPT, MBR or None
	Partitions []Partition
}

const mib = 1 << 20

// Build writes the image described by spec to path (a sparse regular file).
func Build(ctx context.Context, path string, spec Spec) error {
	if len(spec.Partitions) == 0 {
		return fmt.Errorf("mkimage: no partitions in spec")
	}
	if spec.Table == None {
		if len(spec.Partitions) != 1 {
			return fmt.Errorf("mkimage: a bare image holds exactly one filesystem, got %d", len(spec.Partitions))
		}
		return makeFS(ctx, path, spec.Partitions[0])
	}
	if spec.Table != GPT && spec.Table != MBR {
		return fmt.Errorf("mkimage: unknown partition table %q (want gpt, mbr or none)", spec.Table)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".mkimage-*")
	if err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	defer os.RemoveAll(tmp)

	// Layout: 1 MiB aligned partitions after a 1 MiB gap, and 1 MiB at the
	// end for the backup GPT.
	var script strings.Builder
	if spec.Table == GPT {
		script.WriteString("label: gpt\n")
	} else {
		script.WriteString("label: dos\n")
	}
	off := int64(mib)
	type placed struct {
		file string
		off  int64
	}
	var parts []placed
	for i, p := range spec.Partitions {
		p.Size = roundUp(p.Size, mib)
		if p.Size == 0 {
			return fmt.Errorf("mkimage: partition %d has no size", i)
		}
		f := filepath.Join(tmp, fmt.Sprintf("part-%d", i))
		if err := makeFS(ctx, f, p); err != nil {
			return fmt.Errorf("mkimage: partition %d: %w", i, err)
		}
		typ := partType(spec.Table, p.FS)
		if p.ESP && spec.Table == GPT {
			typ = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EFI system partition
		}
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s", off/512, p.Size/512, typ)
		if p.Bootable && spec.Table == MBR {
			script.WriteString(", bootable")
		}
		script.WriteString("\n")
		parts = append(parts, placed{f, off})
		off += p.Size
	}
	total := off + mib
	out, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	defer out.Close()
	if err := out.Truncate(total); err != nil {
		return fmt.Errorf("mkimage: %w", err)
	}
	if err := run(ctx, strings.NewReader(script.String()), "sfdisk", "-q", "--no-reread", "--no-tell-kernel", path); err != nil {
		return err
	}
	for _, p := range parts {
		if err := copySparse(out, p.file, p.off); err != nil {
			return fmt.Errorf("mkimage: place %s: %w", filepath.Base(p.file), err)
		}
	}
	return out.Close()
}

// DefaultFill is the fraction of a filesystem of type fs that a Tree can fill
// safely: XFS and NTFS keep more for their logs and metadata.
func DefaultFill(fs string) float64 {
	switch fs {
	case XFS, NTFS:
		return 0.6
	}
	return 0.7
}

func partType(table, fsType string) string {
	if table == GPT {
		switch fsType {
		case FAT32, FAT16, NTFS:
			return "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" // Microsoft basic data
		default:
			return "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux filesystem
		}
	}
	switch fsType {
	case FAT32:
		return "c"
	case FAT16:
		return "e"
	case NTFS:
		return "7"
	default:
		return "83"
	}
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// makeFS writes one filesystem image of p.Size bytes to path.
func makeFS(ctx context.Context, path string, p Partition) error {
	p.Size = roundUp(p.Size, mib)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(p.Size); err != nil {
		f.Close()
		return err
	}
	f.Close()
	label := p.Label
	switch p.FS {
	case Ext4:
		args := []string{"-q", "-F", "-t", "ext4", "-E", "root_owner=0:0"}
		if label != "" {
			args = append(args, "-L", label)
		}
		if p.Dir != "" {
			args = append(args, "-d", p.Dir)
		}
		return run(ctx, nil, "mkfs.ext4", append(args, path)...)
	case XFS:
		args := []string{"-q", "-f"}
		if label != "" {
			args = append(args, "-L", label)
		}
		if p.Dir != "" {
			proto := path + ".proto"
			if err := writeProto(proto, p.Dir); err != nil {
				return err
			}
			defer os.Remove(proto)
			args = append(args, "-p", proto)
		}
		return run(ctx, nil, "mkfs.xfs", append(args, path)...)
	case FAT32, FAT16:
		bits := "32"
		if p.FS == FAT16 {
			bits = "16"
		}
		args := []string{"-F", bits}
		if label != "" {
			args = append(args, "-n", label)
		}
		if err := run(ctx, nil, "mkfs.vfat", append(args, path)...); err != nil {
			return err
		}
		return fatCopy(ctx, path, p.Dir)
	case NTFS:
		args := []string{"-F", "-Q", "-q"}
		if label != "" {
			args = append(args, "-L", label)
		}
		if err := run(ctx, nil, "mkntfs", append(args, path)...); err != nil {
			return err
		}
		return ntfsCopy(ctx, path, p.Dir)
	case Raw:
		if p.Image == "" {
			return nil
		}
		out, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer out.Close()
		return copySparse(out, p.Image, 0)
	default:
		return fmt.Errorf("unknown filesystem %q", p.FS)
	}
}

// writeProto writes an mkfs.xfs protofile that reproduces dir. Entries whose
// names a protofile cannot hold (white space) are left out.
func writeProto(proto, dir string) error {
	var b bytes.Buffer
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(string, int) error
	walk = func(d string, depth int) error {
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		ind := strings.Repeat(" ", depth)
		for _, e := range entries {
			name := e.Name()
			if strings.ContainsAny(name, " \t\n$") {
				continue
			}
			full := filepath.Join(d, name)
			info, err := os.Lstat(full)
			if err != nil {
				return err
			}
			perm := info.Mode().Perm()
			switch {
			case info.IsDir():
				fmt.Fprintf(&b, "%s%s d--%03o 0 0\n", ind, name, perm)
				if err := walk(full, depth+1); err != nil {
					return err
				}
				fmt.Fprintf(&b, "%s$\n", ind)
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(full)
				if err != nil || strings.ContainsAny(target, " \t\n") {
					continue
				}
				fmt.Fprintf(&b, "%s%s l--777 0 0 %s\n", ind, name, target)
			case info.Mode().IsRegular():
				abs, _ := filepath.Abs(full)
				if strings.ContainsAny(abs, " \t\n") {
					continue
				}
				fmt.Fprintf(&b, "%s%s ---%03o 0 0 %s\n", ind, name, perm, abs)
			}
		}
		return nil
	}
	if err := walk(dir, 1); err != nil {
		return fmt.Errorf("protofile for %s: %w", dir, err)
	}
	b.WriteString("$\n")
	return os.WriteFile(proto, b.Bytes(), 0o644)
}

// fatCopy copies dir's regular files and directories into the FAT image with
// mtools (symlinks have no FAT form and are left out).
func fatCopy(ctx context.Context, img, dir string) error {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	args := []string{"-s", "-p", "-m", "-Q", "-i", img}
	n := 0
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		args = append(args, filepath.Join(dir, e.Name()))
		n++
	}
	if n == 0 {
		return nil
	}
	args = append(args, "::/")
	return runEnv(ctx, []string{"MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0"}, "mcopy", args...)
}

// ntfsCopy mounts the NTFS image with ntfs-3g (FUSE, root) and copies dir in.
func ntfsCopy(ctx context.Context, img, dir string) error {
	if dir == "" {
		return nil
	}
	mnt, err := os.MkdirTemp("", "mkimage-ntfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	if err := run(ctx, nil, "ntfs-3g", "-o", "loop", img, mnt); err != nil {
		return fmt.Errorf("mount NTFS image (needs root and FUSE): %w", err)
	}
	copyErr := run(ctx, nil, "cp", "-r", "--preserve=timestamps", dir+"/.", mnt)
	umountErr := run(context.Background(), nil, "umount", mnt)
	if copyErr != nil {
		return copyErr
	}
	return umountErr
}

// copySparse copies src into dst at off, skipping all-zero 64 KiB blocks so
// the image stays sparse.
func copySparse(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, 1<<20)
	var pos int64
	for {
		n, err := io.ReadFull(in, buf)
		for b := 0; b < n; b += 64 << 10 {
			e := min(b+64<<10, n)
			if !allZero(buf[b:e]) {
				if _, werr := dst.WriteAt(buf[b:e], off+pos+int64(b)); werr != nil {
					return werr
				}
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func run(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	return runIn(ctx, nil, stdin, name, args...)
}

func runEnv(ctx context.Context, env []string, name string, args ...string) error {
	return runIn(ctx, env, nil, name, args...)
}

func runIn(ctx context.Context, env []string, stdin io.Reader, name string, args ...string) error {
	path, err := lookPath(name)
	if err != nil {
		return fmt.Errorf("mkimage: %s not found (install the Debian package: e2fsprogs, xfsprogs, dosfstools, mtools, ntfs-3g or fdisk): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkimage: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name), nil
		}
	}
	return "", exec.ErrNotFound
}
