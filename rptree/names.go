package rptree

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ahvfs/ahvfs/engine"
)

// Names inside the tree.
const (
	LatestName = "latest"  // in a VM directory: symlink to the newest restore point
	VMJSONName = "vm.json" // in a restore-point directory: configuration and facts
	rawSuffix  = ".raw"    // disk-N.raw
)

// MaxNameLen is the longest name of a directory entry the tree shows, in
// bytes: the limit of Linux filesystems, FUSE and NFS clients.
const MaxNameLen = 255

// hashMark introduces the hash of a VM name too long to show whole. An
// escaped name never holds it: '%' is always followed by two hex digits.
const hashMark = "%~"

// VMDirName returns the name of VM vm's directory in the tree.
//
// Most names are their own directory name: spaces, non-ASCII letters and
// punctuation stay as they are. Otherwise:
//
//   - '%', '/', control characters (U+0000–U+001F, U+007F–U+009F) and
//     bytes that are not UTF-8 are written %XX, one per byte, upper-case;
//   - the names "." and ".." are written %2E and %2E%2E;
//   - when that is longer than MaxNameLen bytes (a 200-byte name of '/'
//     is 600 bytes escaped), the directory name is the escaped name cut
//     on a character boundary, then "%~" and 16 hex digits of the
//     SHA-256 of the name: at most MaxNameLen bytes in all.
//
// Distinct VM names get distinct directory names. ParseVMDirName maps a
// directory name back to its VM name, except for the hashed form, which
// only a listing of the VMs resolves (the Tree does).
func VMDirName(vm string) string {
	esc := escapeName(vm)
	if esc != "" && len(esc) <= MaxNameLen {
		return esc
	}
	sum := sha256.Sum256([]byte(vm))
	suffix := hashMark + hex.EncodeToString(sum[:8])
	return cutEscaped(esc, MaxNameLen-len(suffix)) + suffix
}

// ParseVMDirName returns the VM name whose directory name is dir. ok is
// false when dir is not a directory name VMDirName makes, or is the hashed
// form of a long name.
func ParseVMDirName(dir string) (vm string, ok bool) {
	if strings.Contains(dir, hashMark) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(dir); i++ {
		if dir[i] != '%' {
			b.WriteByte(dir[i])
			continue
		}
		if i+2 >= len(dir) {
			return "", false
		}
		n, err := strconv.ParseUint(dir[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	vm = b.String()
	if VMDirName(vm) != dir { // not the canonical form (%41 for A, a lower-case hex digit)
		return "", false
	}
	return vm, true
}

// RestorePointDir is the tree path of rp's directory, <vm>/<time>, with
// <vm> as VMDirName makes it.
func RestorePointDir(rp *engine.RestorePoint) string {
	return VMDirName(rp.VM) + "/" + engine.FormatTime(rp.Time)
}

// DiskPath is the tree path of disk d of rp, <vm>/<time>/disk-N.raw.
func DiskPath(rp *engine.RestorePoint, d *engine.Disk) string {
	return RestorePointDir(rp) + "/" + d.Name() + rawSuffix
}

// escapeName %-encodes what cannot or should not appear in a directory
// name; see VMDirName.
func escapeName(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	const hexDigits = "0123456789ABCDEF"
	var out []byte // nil until the first byte to encode
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case (r == utf8.RuneError && size == 1) || r == '%' || r == '/' || unicode.IsControl(r):
			if out == nil {
				out = append(make([]byte, 0, len(s)+16), s[:i]...)
			}
			for _, c := range []byte(s[i : i+size]) {
				out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
			}
		case out != nil:
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	if out == nil {
		return s
	}
	return string(out)
}

// cutEscaped returns the longest prefix of an escaped name of at most max
// bytes that splits neither a %XX nor a UTF-8 character.
func cutEscaped(esc string, max int) string {
	end := 0
	for i := 0; i < len(esc); {
		n := 3
		if esc[i] != '%' {
			_, n = utf8.DecodeRuneInString(esc[i:])
		}
		if i+n > max {
			break
		}
		i += n
		end = i
	}
	return esc[:end]
}

// parseDiskName parses "disk-N" + suffix.
func parseDiskName(name, suffix string) (int, bool) {
	s, ok := strings.CutPrefix(name, "disk-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, suffix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// RootInode is the inode number of the tree's root ".".
const RootInode = 1

// Inode is the inode number of a tree path: the same path always gets the
// same number, across lookups, mounts and servers (a 64-bit FNV-1a hash;
// RootInode for "."). A file reached through "latest" has the number of
// that path, not of the restore point's own.
func Inode(name string) uint64 {
	if name == "." {
		return RootInode
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	ino := h.Sum64()
	if ino <= RootInode || ino == ^uint64(0) {
		ino += 2
	}
	return ino
}

// Immutable reports whether the tree path name lies inside a restore point
// reached without "latest" (<vm>/<time>/...): what it names never
// changes, so servers may let clients cache its attributes, names and
// data for long. The root, VM directories, restore-point directories
// themselves and "latest" change as backups run and are forgotten.
func Immutable(name string) bool {
	comps := strings.SplitN(name, "/", 3)
	return len(comps) == 3 && comps[1] != LatestName
}

// ChildPath is the tree path of name in directory dir.
func ChildPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
