package dr

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ahvfs/ahvfs/engine"
)

// The wire format of blob streams (POST /v1/read replies, POST /v1/store
// bodies) is a sequence of frames:
//
//	kind u8 | flags u8 | raw u32 | length u32 | crc u32 | id [32] | data [length]
//
// kind 'b' is a blob (flags, raw, data and id as engine.StoredBlob; crc
// the CRC-32C of data, checked on receipt); 'e' ends the stream (raw holds
// the number of blobs sent, so a stream cut short is told from a complete
// one); 'x' is an error the sender hit mid-stream (data is its message).
// ID lists (have, pages, read requests) are IDs back to back; a have reply
// is one byte per ID (1 held); a pages reply is, per page, u32 count and
// count IDs. Integers are little-endian.
const (
	frameBlob  = 'b'
	frameEnd   = 'e'
	frameError = 'x'

	frameHeader = 1 + 1 + 4 + 4 + 4 + engine.IDSize
	// maxFrameData bounds a blob on the wire (chunks are at most 8 MiB).
	maxFrameData = 9 << 20
	// maxIDs bounds the IDs of one request.
	maxIDs = 1 << 16
)

var errCut = errors.New("the stream ended before its end mark (connection cut?)")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// frameWriter writes frames to a buffered stream.
type frameWriter struct {
	w   *bufio.Writer
	n   uint32
	hdr [frameHeader]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

func (f *frameWriter) frame(kind, flags byte, raw uint32, id engine.ID, data []byte) error {
	f.hdr[0], f.hdr[1] = kind, flags
	binary.LittleEndian.PutUint32(f.hdr[2:], raw)
	binary.LittleEndian.PutUint32(f.hdr[6:], uint32(len(data)))
	binary.LittleEndian.PutUint32(f.hdr[10:], crc32.Checksum(data, crcTable))
	copy(f.hdr[14:], id[:])
	if _, err := f.w.Write(f.hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(data)
	return err
}

func (f *frameWriter) blob(b *engine.StoredBlob) error {
	f.n++
	return f.frame(frameBlob, b.Flags, b.Raw, b.ID, b.Data)
}

// end writes the end mark and flushes.
func (f *frameWriter) end() error {
	if err := f.frame(frameEnd, 0, f.n, engine.ID{}, nil); err != nil {
		return err
	}
	return f.w.Flush()
}

// fail writes an error frame and flushes.
func (f *frameWriter) fail(err error) error {
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	if err := f.frame(frameError, 0, 0, engine.ID{}, []byte(msg)); err != nil {
		return err
	}
	return f.w.Flush()
}

// frameReader reads frames.
type frameReader struct {
	r   *bufio.Reader
	n   uint32
	hdr [frameHeader]byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next blob, or io.EOF after a complete stream; a cut or
// malformed stream is an error. The blob's data is freshly allocated.
func (f *frameReader) next() (*engine.StoredBlob, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errCut
		}
		return nil, err
	}
	kind, flags := f.hdr[0], f.hdr[1]
	raw := binary.LittleEndian.Uint32(f.hdr[2:])
	n := binary.LittleEndian.Uint32(f.hdr[6:])
	crc := binary.LittleEndian.Uint32(f.hdr[10:])
	if n > maxFrameData {
		return nil, fmt.Errorf("malformed stream: a frame of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(f.r, data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errCut
		}
		return nil, err
	}
	if crc32.Checksum(data, crcTable) != crc {
		return nil, fmt.Errorf("malformed stream: frame CRC-32C mismatch")
	}
	switch kind {
	case frameBlob:
		b := &engine.StoredBlob{Flags: flags, Raw: raw, Data: data}
		copy(b.ID[:], f.hdr[14:])
		f.n++
		return b, nil
	case frameEnd:
		if raw != f.n {
			return nil, fmt.Errorf("malformed stream: the end mark counts %d blobs, %d arrived", raw, f.n)
		}
		return nil, io.EOF
	case frameError:
		return nil, fmt.Errorf("the other side failed: %s", data)
	default:
		return nil, fmt.Errorf("malformed stream: frame kind %#x", kind)
	}
}

// encodeIDs puts IDs back to back.
func encodeIDs(ids []engine.ID) []byte {
	b := make([]byte, 0, len(ids)*engine.IDSize)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// decodeIDs reads an ID list of at most maxIDs.
func decodeIDs(b []byte) ([]engine.ID, error) {
	if len(b)%engine.IDSize != 0 || len(b)/engine.IDSize > maxIDs {
		return nil, fmt.Errorf("malformed ID list of %d bytes", len(b))
	}
	ids := make([]engine.ID, len(b)/engine.IDSize)
	for i := range ids {
		copy(ids[i][:], b[i*engine.IDSize:])
	}
	return ids, nil
}

// encodePages writes page ID lists: per page, u32 count and the IDs.
func encodePages(lists [][]engine.ID) []byte {
	var b []byte
	for _, ids := range lists {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ids)))
		b = append(b, encodeIDs(ids)...)
	}
	return b
}

// decodePages reads want page ID lists.
func decodePages(b []byte, want int) ([][]engine.ID, error) {
	out := make([][]engine.ID, 0, want)
	for len(b) > 0 {
		if len(b) < 4 || len(out) == want {
			return nil, errors.New("malformed page lists")
		}
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if n > maxIDs || n*engine.IDSize > len(b) {
			return nil, errors.New("malformed page lists: a list runs past the end")
		}
		ids, err := decodeIDs(b[:n*engine.IDSize])
		if err != nil {
			return nil, err
		}
		out = append(out, ids)
		b = b[n*engine.IDSize:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("malformed page lists: %d lists, want %d", len(out), want)
	}
	return out, nil
}

// packIDSize is the bytes of a pack ID on the wire.
const packIDSize = len(engine.PackID{})

// encodeWholePacks writes whole packs: per pack, its ID, u32 count and
// the IDs of its blobs.
func encodeWholePacks(packs map[engine.PackID][]engine.ID) []byte {
	var b []byte
	for p, ids := range packs {
		b = append(b, p[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ids)))
		b = append(b, encodeIDs(ids)...)
	}
	return b
}

// decodeWholePacks reads whole packs, which may name only IDs of asked,
// each once; rest are the asked IDs no pack named.
func decodeWholePacks(b []byte, asked []engine.ID) (packs map[engine.PackID][]engine.ID, rest []engine.ID, _ error) {
	open := make(map[engine.ID]bool, len(asked))
	for _, id := range asked {
		open[id] = true
	}
	packs = map[engine.PackID][]engine.ID{}
	for len(b) > 0 {
		if len(b) < packIDSize+4 {
			return nil, nil, errors.New("malformed pack list")
		}
		var p engine.PackID
		copy(p[:], b)
		n := int(binary.LittleEndian.Uint32(b[packIDSize:]))
		b = b[packIDSize+4:]
		if _, dup := packs[p]; dup || n == 0 || n > maxIDs || n*engine.IDSize > len(b) {
			return nil, nil, errors.New("malformed pack list: a pack twice, empty, or running past the end")
		}
		ids, err := decodeIDs(b[:n*engine.IDSize])
		if err != nil {
			return nil, nil, err
		}
		for _, id := range ids {
			if !open[id] {
				return nil, nil, fmt.Errorf("malformed pack list: blob %s was not asked for, or is in two packs", id.Short())
			}
			delete(open, id)
		}
		packs[p] = ids
		b = b[n*engine.IDSize:]
	}
	for _, id := range asked {
		if open[id] {
			rest = append(rest, id)
			delete(open, id)
		}
	}
	return packs, rest, nil
}
