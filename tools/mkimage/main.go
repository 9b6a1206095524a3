// Command mkimage builds a realistic test disk image from real files.
//
//	mkimage --out disk.raw --size 4GiB [--fs ext4] [--table none|gpt|mbr] [--seed N]
//	mkimage --out disk.raw --table gpt --part fat32:256MiB --part ext4:1GiB --part xfs:1GiB
//	mkimage --out boot.raw --bootable [--uefi] [--secure-boot] [--no-kernel] [--kernel /boot/vmlinuz-...]
//
// Each partition is filled with a tree of real files (about 70% of its size)
// copied from this machine; --dir uses a given tree instead. --bootable writes
// the small BIOS-bootable Linux disk of the boot tests instead (SYSLINUX, a
// Debian kernel, a busybox initramfs that prints a login prompt); with
// --no-kernel its boot loader finds no kernel.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/dustin/go-humanize"
)

type partFlags []string

func (p *partFlags) String() string     { return strings.Join(*p, ",") }
func (p *partFlags) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	out := flag.String("out", "", "image file to write")
	size := flag.String("size", "1GiB", "size of a bare filesystem image")
	fsType := flag.String("fs", "ext4", "filesystem of a bare image: ext4, xfs, fat32, fat16, ntfs")
	table := flag.String("table", "none", "partition table: none, gpt or mbr")
	dir := flag.String("dir", "", "copy this tree instead of generating one")
	fill := flag.Float64("fill", 0, "fraction of each filesystem to fill with real files (default 0.7; 0.6 for XFS and NTFS)")
	seed := flag.Uint64("seed", 1, "varies which files are picked")
	bootable := flag.Bool("bootable", false, "write the bootable test disk (SYSLINUX + kernel + busybox initramfs); --size defaults to 64MiB")
	noKernel := flag.Bool("no-kernel", false, "with --bootable: leave the kernel out, so the disk does not boot")
	kernel := flag.String("kernel", "", "with --bootable: the kernel to use (default: newest /boot/vmlinuz-*)")
	uefi := flag.Bool("uefi", false, "with --bootable: a GPT disk that boots with UEFI firmware (SYSLINUX's EFI loader on an EFI system partition)")
	secureBoot := flag.Bool("secure-boot", false, "with --bootable: a UEFI disk that boots with Secure Boot enforced (Debian's signed shim, GRUB and kernel)")
	var parts partFlags
	flag.Var(&parts, "part", "FS:SIZE partition (repeatable; with --table gpt|mbr)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkimage: --out is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *bootable {
		spec := mkimage.BootSpec{Kernel: *kernel, NoKernel: *noKernel, UEFI: *uefi || *secureBoot, SecureBoot: *secureBoot}
		if sizeSet(flag.CommandLine, "size") {
			n, err := humanize.ParseBytes(*size)
			if err != nil {
				fmt.Fprintln(os.Stderr, "mkimage: --size:", err)
				os.Exit(2)
			}
			spec.Size = int64(n)
		}
		if err := mkimage.BuildBootable(ctx, *out, spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, *out, *size, *fsType, *table, *dir, *fill, *seed, parts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, size, fsType, table, dir string, fill float64, seed uint64, parts []string) error {
	if table == "none" {
		table = mkimage.None
		parts = []string{fsType + ":" + size}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".mkimage-tree-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	spec := mkimage.Spec{Table: table}
	for i, p := range parts {
		fsName, sz, ok := strings.Cut(p, ":")
		if !ok {
			return fmt.Errorf("mkimage: --part %q: want FS:SIZE", p)
		}
		n, err := humanize.ParseBytes(sz)
		if err != nil {
			return fmt.Errorf("mkimage: --part %q: %w", p, err)
		}
		src := dir
		if src == "" {
			src = filepath.Join(tmp, fmt.Sprint(i))
			f := fill
			if f == 0 {
				f = mkimage.DefaultFill(fsName)
			}
			opts := mkimage.TreeOptions{Seed: seed + uint64(i), Symlinks: fsName == mkimage.Ext4 || fsName == mkimage.XFS,
				PortableNames: fsName != mkimage.Ext4}
			if _, err := mkimage.Tree(ctx, src, int64(float64(n)*f), opts); err != nil {
				return err
			}
		}
		spec.Partitions = append(spec.Partitions, mkimage.Partition{FS: fsName, Size: int64(n), Dir: src, Label: fmt.Sprintf("part%d", i)})
	}
	return mkimage.Build(ctx, out, spec)
}

// sizeSet reports whether the flag name was given on the command line.
func sizeSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
