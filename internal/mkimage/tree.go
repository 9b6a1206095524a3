package mkimage

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultSources are the directories Tree copies real files from, in order.
var DefaultSources = []string{
	"/usr/share/doc",
	"/usr/local/go/src",
	"/usr/share/man",
	"/usr/share/locale",
	"/usr/local/go/pkg",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib",
	"/usr/share",
}

// TreeOptions tunes Tree. The zero value copies from DefaultSources.
type TreeOptions struct {
	// Sources are the directories to copy from (default DefaultSources).
	Sources []string
	// Seed varies which files are picked and how the tree is shaped
	// (default 1). The same seed and sources give the same tree.
	Seed uint64
	// MaxFileSize skips larger source files (default 64 MiB).
	MaxFileSize int64
	// Symlinks adds a few relative symlinks, and one empty file and one
	// deep directory chain (default false: FAT cannot hold symlinks).
	Symlinks bool
	// PortableNames keeps only names that FAT and XFS protofiles accept
	// (no spaces, no ':' or other characters Windows forbids). Default false.
	PortableNames bool
}

// Tree fills dir with real files copied from the machine, keeping their
// relative paths, modes and modification times, until they would take more
// than size bytes on a filesystem (4 KiB blocks plus inodes). It returns
// that footprint.
func Tree(ctx context.Context, dir string, size int64, o TreeOptions) (int64, error) {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = 64 << 20
	}
	srcs := o.Sources
	if len(srcs) == 0 {
		srcs = DefaultSources
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("mkimage: create %s: %w", dir, err)
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	var total int64
	seen := map[string]bool{}
	for si, src := range srcs {
		files, err := listFiles(src, o)
		if err != nil {
			continue // a missing source directory is not an error
		}
		// Take files in runs of a random length from random starting points, so
		// directories stay realistic (many siblings) yet seeds differ.
		rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
		prefix := fmt.Sprintf("src%d-%s", si, strings.ReplaceAll(strings.Trim(src, "/"), "/", "-"))
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			if total >= size {
				break
			}
			// Count what the file takes on a filesystem (4 KiB blocks plus
			// an inode), so a tree of size bytes fits a filesystem of size.
			cost := (f.size+4095)/4096*4096 + 512
			if cost > size-total || seen[f.path] {
				continue
			}
			seen[f.path] = true
			rel, _ := filepath.Rel(src, f.path)
			dst := filepath.Join(dir, prefix, rel)
			if err := copyFile(f.path, dst); err != nil {
				continue // unreadable files are skipped
			}
			total += cost
		}
		if total >= size {
			break
		}
	}
	if o.Symlinks {
		if err := addOddities(dir); err != nil {
			return total, err
		}
	}
	return total, nil
}

type srcFile struct {
	path string
	size int64
}

func listFiles(root string, o TreeOptions) ([]srcFile, error) {
	if _, err := os.Stat(root); err != nil {
		return nil, err
	}
	var out []srcFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if o.PortableNames && !portable(d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > o.MaxFileSize {
			return nil
		}
		out = append(out, srcFile{p, info.Size()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, err
}

// portable reports whether a name is safe on FAT and in an XFS protofile.
func portable(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || strings.ContainsRune(`"*:<>?\|$`, r) {
			return false
		}
	}
	// FAT names are case-insensitive: avoid names that differ only by case
	// by refusing upper case entirely.
	return strings.ToLower(name) == name
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}

// addOddities adds what real guest filesystems have and naive readers get
// wrong: symlinks (relative and dangling), an empty file, a deep directory.
func addOddities(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		if err := os.Symlink(entries[0].Name(), filepath.Join(dir, "link-to-first")); err != nil {
			return err
		}
	}
	if err := os.Symlink("does/not/exist", filepath.Join(dir, "dangling-link")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "empty-file"), nil, 0o644); err != nil {
		return err
	}
	deep := filepath.Join(dir, "deep", "a", "b", "c", "d", "e", "f", "g")
	if err := os.MkdirAll(deep, 0o750); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(deep, "leaf.txt"), []byte("leaf\n"), 0o600)
}
