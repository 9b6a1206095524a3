package backend

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// diskBlocks is the on-disk tier of the read cache (S3Options.BlockCacheDir,
// under the host's --cache-dir): blocks a sequential reader fetched stay
// there for the next process, so mounting or reading a restore point again
// does not fetch it again. A block is named by a hash of its object key,
// ETag and index, so a rewritten object never reads an old block; each
// file ends with the CRC-32C of the block, and one that fails it is
// deleted and fetched again (a cache must never pass damage on as the
// pack's). Files are written whole and renamed into place; the least
// recently used go when the directory holds more than its budget.
type diskBlocks struct {
	dir    string
	budget int64

	mu    sync.Mutex
	bytes int64 // an estimate, from the last trim on
	trims int   // trims running (at most one)
}

func newDiskBlocks(dir string, budget int64) (*diskBlocks, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("block cache %s: %w", dir, err)
	}
	d := &diskBlocks{dir: dir, budget: budget}
	d.bytes = d.usage()
	return d, nil
}

func (d *diskBlocks) path(k blockKey) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", k.key, k.etag, k.idx))
	name := hex.EncodeToString(h[:16])
	return filepath.Join(d.dir, name[:2], name)
}

// read fills buf with block k and reports whether the cache had it, whole
// and intact.
func (d *diskBlocks) read(k blockKey, buf []byte) bool {
	p := d.path(k)
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	tail := make([]byte, 4)
	n, err := f.ReadAt(buf, 0)
	if err != nil || n != len(buf) {
		return false
	}
	if m, _ := f.ReadAt(tail, int64(len(buf))); m != 4 {
		os.Remove(p)
		return false
	}
	if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(tail) {
		os.Remove(p) // damaged: fetched again
		return false
	}
	now := time.Now()
	os.Chtimes(p, now, now) // recently used
	return true
}

// write stores block k, then trims the directory when it is over budget.
func (d *diskBlocks) write(k blockKey, data []byte) {
	p := d.path(k)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	tmp := fmt.Sprintf("%s.tmp-%d", p, time.Now().UnixNano())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc32.Checksum(data, castagnoli))
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Write(tail[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return
	}
	d.mu.Lock()
	d.bytes += int64(len(data)) + 4
	over := d.bytes > d.budget && d.trims == 0
	if over {
		d.trims++
	}
	d.mu.Unlock()
	if over {
		d.trim()
	}
}

// usage sums the sizes of the cached blocks.
func (d *diskBlocks) usage() int64 {
	var n int64
	filepath.WalkDir(d.dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// trim deletes the least recently used blocks (and leftover temporary
// files) until the cache holds at most 3/4 of its budget.
func (d *diskBlocks) trim() {
	defer func() {
		d.mu.Lock()
		d.trims--
		d.mu.Unlock()
	}()
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		files = append(files, file{p, fi.Size(), fi.ModTime()})
		total += fi.Size()
		return nil
	})
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= d.budget*3/4 {
			break
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
	d.mu.Lock()
	d.bytes = total
	d.mu.Unlock()
}
