package nfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/ahvfs/ahvfs/rptree"
)

// A file handle names a tree path by the inode numbers (rptree.Inode) of
// its prefixes: "a", "a/b", "a/b/c". A server that has never seen the
// handle (it restarted) finds the path again by listing each directory
// from the root and picking the child with the next number, so handles
// survive restarts.
//
//	byte 0     handleVersion
//	byte 1     n, the number of components (0: the root)
//	bytes 2-3  zero
//	8 bytes    per component up to handleDepth: the inode number of the
//	           path's prefix ending with it
//	8 bytes    when n > handleDepth: the inode number of the whole path,
//	           resolved from memory only
//
// At most 4 + 8*(handleDepth+1) = 60 bytes, within NFSv3's 64; always a
// multiple of 4, as go-nfs reads a handle without the XDR padding after it
// (an argument after a handle of another length would be read shifted).
const (
	handleVersion = 1
	handleDepth   = 6
	handleHeader  = 4
)

// ErrStale is a file handle the server cannot resolve: not one it makes,
// or a path that no longer exists (or, beyond handleDepth components, that
// it has forgotten). go-nfs answers NFS3ERR_STALE.
var ErrStale = errors.New("stale file handle")

// handles turns paths into handles and back, remembering the paths it has
// seen by inode number.
type handles struct {
	tree *rptree.Tree
	mu   sync.Mutex
	// paths maps inode numbers to the tree paths seen; cleared when it
	// reaches maxPaths (handles stay valid: they are resolved again by
	// listing).
	paths map[uint64]string
}

// maxPaths bounds the remembered paths (tens of MiB at most).
const maxPaths = 1 << 18

func newHandles(tree *rptree.Tree) *handles {
	return &handles{tree: tree, paths: map[uint64]string{}}
}

// toHandle returns the handle of the path with components comps.
func (h *handles) toHandle(comps []string) []byte {
	b := make([]byte, handleHeader, handleHeader+8*(handleDepth+1))
	b[0], b[1] = handleVersion, byte(min(len(comps), 255))
	p := "."
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range comps {
		p = rptree.ChildPath(p, c)
		ino := rptree.Inode(p)
		h.remember(ino, p)
		if i < handleDepth {
			b = binary.BigEndian.AppendUint64(b, ino)
		}
	}
	if len(comps) > handleDepth {
		b = binary.BigEndian.AppendUint64(b, rptree.Inode(p))
	}
	return b
}

// remember records p under ino (h.mu held).
func (h *handles) remember(ino uint64, p string) {
	if len(h.paths) >= maxPaths {
		clear(h.paths)
	}
	h.paths[ino] = p
}

// lookup returns the remembered path of ino, if any.
func (h *handles) lookup(ino uint64) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.paths[ino]
	return p, ok
}

// fromHandle returns the components of the path b names.
func (h *handles) fromHandle(ctx context.Context, b []byte) ([]string, error) {
	if len(b) < handleHeader || b[0] != handleVersion || b[2] != 0 || b[3] != 0 {
		return nil, fmt.Errorf("%w: %d bytes, not one of ours", ErrStale, len(b))
	}
	n := int(b[1])
	want := handleHeader + 8*min(n, handleDepth)
	if n > handleDepth {
		want += 8
	}
	if len(b) != want {
		return nil, fmt.Errorf("%w: %d bytes for %d components", ErrStale, len(b), n)
	}
	if n > handleDepth {
		p, ok := h.lookup(binary.BigEndian.Uint64(b[handleHeader+8*handleDepth:]))
		if !ok {
			return nil, fmt.Errorf("%w: a path deeper than %d components that this server has not seen since it started", ErrStale, handleDepth)
		}
		return strings.Split(p, "/"), nil
	}
	p := "."
	for i := range n {
		ino := binary.BigEndian.Uint64(b[handleHeader+8*i:])
		next, err := h.child(ctx, p, ino)
		if err != nil {
			return nil, err
		}
		p = next
	}
	if p == "." {
		return []string{}, nil
	}
	return strings.Split(p, "/"), nil
}

// child returns the path of the child of dir whose inode number is ino:
// remembered, or found by listing dir.
func (h *handles) child(ctx context.Context, dir string, ino uint64) (string, error) {
	if p, ok := h.lookup(ino); ok && parentOf(p) == dir {
		return p, nil
	}
	ents, err := h.tree.ReadDirContext(ctx, dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s: %v", ErrStale, dir, err)
		}
		return "", err
	}
	found := ""
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range ents {
		p := rptree.ChildPath(dir, e.Name())
		i := rptree.Inode(p)
		h.remember(i, p)
		if i == ino {
			found = p
		}
	}
	if found == "" {
		return "", fmt.Errorf("%w: no longer in %s", ErrStale, dir)
	}
	return found, nil
}

// parentOf is the tree path of p's directory.
func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "."
	}
	return p[:i]
}
