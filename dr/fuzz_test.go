package dr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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
