package nfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

// TestReadReplies: READ's statuses (a directory, a stale handle, a read
// past the end) and its data, reply by reply.
func TestReadReplies(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 8<<20, 3)
	want, _ := os.ReadFile(img)
	dir := rptreetest.RepoWithVMs(t, []string{"web01"}, img)
	tree, _ := rptreetest.OpenTree(t, dir, rptree.Options{})
	h := newHandles(tree)
	r := newReads(ctx, tree, h, slog.New(slog.DiscardHandler))
	defer r.close()
	rp := []string{"web01", rptreetest.T0.Format(time.RFC3339)}
	disk := h.toHandle(append(rp, "disk-0.raw"))
	read := func(fh []byte, off uint64, count uint32) (status uint32, data []byte, eof bool) {
		t.Helper()
		rec := call(9, progNFS, 3, nfsProcRead)
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(fh)))
		rec = append(rec, fh...) // handles are a multiple of 4 bytes
		rec = binary.BigEndian.AppendUint64(rec, off)
		rec = binary.BigEndian.AppendUint32(rec, count)
		if !isRead(rec) {
			t.Fatal("not a READ call")
		}
		var reply []byte
		if err := r.serve(rec, func(parts ...[]byte) error { reply = bytes.Join(parts, nil); return nil }); err != nil {
			t.Fatal(err)
		}
		d := xdrReader{b: reply}
		for range 6 { // xid, REPLY, accepted, verifier, stat
			d.uint32()
		}
		status = d.uint32()
		if status != nfs3OK {
			return status, nil, false
		}
		if d.uint32() != 1 {
			t.Fatal("no attributes")
		}
		d.b = d.b[84:]
		n := d.uint32()
		eof = d.uint32() == 1
		data = d.opaque(maxReadCount)
		if d.err != nil || int(n) != len(data) {
			t.Fatalf("reply: count %d, %d bytes: %v", n, len(data), d.err)
		}
		return status, data, eof
	}
	if s, data, eof := read(disk, 1<<20, 300000); s != nfs3OK || !bytes.Equal(data, want[1<<20:1<<20+300000]) || eof {
		t.Fatalf("read of the disk: status %d, %d bytes, eof %v", s, len(data), eof)
	}
	if s, data, eof := read(disk, uint64(len(want))-10, 100); s != nfs3OK || !bytes.Equal(data, want[len(want)-10:]) || !eof {
		t.Fatalf("read across the end: status %d, %d bytes, eof %v", s, len(data), eof)
	}
	if s, data, eof := read(disk, uint64(len(want))+4096, 100); s != nfs3OK || len(data) != 0 || !eof {
		t.Fatalf("read past the end: status %d, %d bytes, eof %v", s, len(data), eof)
	}
	vmjson := h.toHandle(append(rp, "vm.json"))
	f, _ := tree.Open(strings.Join(append(rp, "vm.json"), "/"))
	wantJSON, _ := io.ReadAll(f)
	if s, data, eof := read(vmjson, 0, 1<<20); s != nfs3OK || !bytes.Equal(data, wantJSON) || !eof {
		t.Fatalf("read of vm.json: status %d, %q", s, data)
	}
	if s, _, _ := read(h.toHandle(rp), 0, 100); s != nfs3IsDir {
		t.Fatalf("read of a directory: status %d, want %d", s, nfs3IsDir)
	}
	if s, _, _ := read(h.toHandle([]string{"web01", "2001-01-01T00:00:00Z", "disk-0.raw"}), 0, 100); s != nfs3Stale {
		t.Fatalf("read of a missing file: status %d, want %d", s, nfs3Stale)
	}
	if s, _, _ := read([]byte{9, 9, 9, 9}, 0, 100); s != nfs3Stale {
		t.Fatalf("read with a foreign handle: status %d, want %d", s, nfs3Stale)
	}
}
