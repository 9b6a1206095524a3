package dr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
)

// The decoders of what a peer sends must reject anything malformed with an
// error, never panic, and never return what the bytes do not hold.

func FuzzFrames(f *testing.F) {
	var good bytes.Buffer
	fw := newFrameWriter(&good)
	fw.blob(&engine.StoredBlob{ID: engine.ID{1}, Raw: 3, Data: []byte("abc")})
	fw.end()
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()-3])
	f.Add([]byte{frameError, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b))
		for n := 0; ; n++ {
			blob, err := fr.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				return
			}
			if n > len(b)/frameHeader {
				t.Fatalf("%d frames from %d bytes", n, len(b))
			}
			if !bytes.Contains(b, blob.Data) {
				t.Fatal("a blob's data is not in the stream")
			}
		}
	})
}

func FuzzPages(f *testing.F) {
	f.Add(encodePages([][]engine.ID{{{1}, {2}}, {}}), 2)
	f.Add([]byte{1, 0, 0, 0}, 1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		want = max(0, min(want, 64))
		lists, err := decodePages(b, want)
		if err != nil {
			return
		}
		if len(lists) != want || !bytes.Equal(encodePages(lists), b) {
			t.Fatalf("decoded %d lists that do not encode back to the input", len(lists))
		}
	})
}

func FuzzWholePacks(f *testing.F) {
	asked := []engine.ID{{1}, {2}, {3}}
	f.Add(encodeWholePacks(map[engine.PackID][]engine.ID{{9}: {{1}, {3}}}))
	f.Add(binary.LittleEndian.AppendUint32(make([]byte, packIDSize), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, rest, err := decodeWholePacks(b, asked)
		if err != nil {
			return
		}
		n := len(rest)
		for _, ids := range packs {
			n += len(ids)
		}
		if n != len(asked) {
			t.Fatalf("%d packs and %d others account for %d IDs, %d were asked", len(packs), len(rest), n, len(asked))
		}
	})
}

// recordingWriter is a plainWriter that keeps what it was given.
type recordingWriter struct {
	mu     sync.Mutex
	writes int
	bytes  int64
	zeros  int64
}

func (w *recordingWriter) WriteAt(_ context.Context, _ int, data []byte, _ int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.bytes += int64(len(data))
	return nil
}

func (w *recordingWriter) Zero(_ context.Context, _ int, _, n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.zeros += n
	return nil
}

// FuzzImportFrames: an import's frames either end with their end frame
// or fail, and never hand on more data than the stream holds or a data
// frame larger than a chunk.
func FuzzImportFrames(f *testing.F) {
	frame := func(disk uint32, off uint64, n uint32, kind byte, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, disk)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint32(b, n)
		return append(append(b, kind), data...)
	}
	good := append(frame(0, 0, 4, importData, []byte("abcd")), frame(0, 4, 4, importZeros, nil)...)
	good = append(good, frame(importEnd, 0, 0, 0, nil)...)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(frame(0, 0, 1<<30, importData, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &recordingWriter{}
		err := readFrames(context.Background(), bufio.NewReader(bytes.NewReader(b)), 16, w)
		if err == nil && !bytes.Contains(b, binary.BigEndian.AppendUint32(nil, importEnd)) {
			t.Fatal("an import without an end frame was accepted")
		}
		if w.bytes > int64(len(b)) {
			t.Fatalf("%d bytes handed on from %d", w.bytes, len(b))
		}
		if w.writes > len(b)/importFrameHeader {
			t.Fatalf("%d frames from %d bytes", w.writes, len(b))
		}
	})
}
