package engine

import (
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// TestPacksHoldAtMostMaxPackBlobs: chunks that compress to a few bytes
// fill packs by count, not by size.
func TestPacksHoldAtMostMaxPackBlobs(t *testing.T) {
	defer func(n int) { maxPackBlobs = n }(maxPackBlobs)
	maxPackBlobs = 8
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Init(ctx, dir, InitOptions{ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, dir, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const chunks = 40
	w, err := r.NewRestorePoint(ctx, RestorePointSpec{VM: "vm", Time: time.Unix(1e9, 0), Level: LevelImport})
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.AddDisk(DiskSpec{Size: chunks << 16})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, chunks<<16)
	for i := range chunks {
		binary.LittleEndian.PutUint64(data[i<<16:], uint64(i)+1)
	}
	if err := d.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	db, release := r.reader()
	defer release()
	packs, blobs := 0, 0
	err = scanSpace(db, keyPack, func(_, v []byte) error {
		rec, err := decodePackRecord(v)
		if err != nil {
			return err
		}
		if rec.Blobs > uint32(maxPackBlobs) {
			t.Errorf("a pack holds %d blobs, more than %d", rec.Blobs, maxPackBlobs)
		}
		packs++
		blobs += int(rec.Blobs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if blobs < chunks || packs < chunks/maxPackBlobs {
		t.Fatalf("%d blobs in %d packs, want at least %d in %d", blobs, packs, chunks, chunks/maxPackBlobs)
	}
}
