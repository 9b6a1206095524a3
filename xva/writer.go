package xva

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Writer writes an XVA in one pass: ova.xml first (NewWriter), then each
// disk's blocks (WriteDisk), then the end of the archive (Close).
//
// What XAPI's importer expects, and the Writer therefore does: block 0 and
// the last block of every disk are always written (the importer learns the
// block size from the first block it reads and the disk's end from the
// last); other all-zero blocks are left out; every block is followed by its
// ".checksum" member, the lower-case hex SHA-1 of the block; disks come in
// the string order of their ids ("Ref:10" before "Ref:2"), the order in
// which the importer reads them.
type Writer struct {
	tw       *tar.Writer
	h        *Header
	disks    []Disk
	written  map[string]bool
	lastDisk string
	buf      []byte
	err      error // sticky
	closed   bool
}

// zeros is compared against to find all-zero blocks.
var zeros [64 << 10]byte

// NewWriter checks h (one VM, its disks all present: Header.Disks) and
// writes it as the archive's first member, ova.xml.
func NewWriter(w io.Writer, h *Header) (*Writer, error) {
	disks, err := h.Disks()
	if err != nil {
		return nil, err
	}
	b, err := EncodeHeader(h)
	if err != nil {
		return nil, err
	}
	xw := &Writer{tw: tar.NewWriter(w), h: h, disks: disks, written: map[string]bool{}}
	if err := xw.member("ova.xml", b); err != nil {
		return nil, err
	}
	return xw, nil
}

// member writes one regular file. The fixed mode and time keep the
// output reproducible.
func (w *Writer) member(name string, data []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(data)),
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("xva: write member %s: %w", name, err)
	}
	if _, err := w.tw.Write(data); err != nil {
		return fmt.Errorf("xva: write member %s: %w", name, err)
	}
	return nil
}

// WriteDisk writes the blocks of the VDI with the given id, reading size
// bytes from r. The id must be a VDI object of the header whose
// virtual_size (when it has one) is size, not written before, and sort
// after the previous disk's id.
func (w *Writer) WriteDisk(id string, size int64, r io.ReaderAt) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("xva: WriteDisk after Close")
	}
	if err := w.checkDisk(id, size); err != nil {
		return err
	}
	w.written[id] = true
	w.lastDisk = id
	if w.buf == nil {
		w.buf = make([]byte, BlockSize)
	}
	last := (size+BlockSize-1)/BlockSize - 1
	for i := int64(0); i <= last; i++ {
		off := i * BlockSize
		data := w.buf[:min(int64(BlockSize), size-off)]
		if n, err := r.ReadAt(data, off); n < len(data) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			w.err = fmt.Errorf("xva: read disk %s at %d: %w", id, off, err)
			return w.err
		}
		if i != 0 && i != last && isZero(data) {
			continue
		}
		name := fmt.Sprintf("%s/%08d", id, i)
		sum := sha1.Sum(data)
		if err := w.member(name, data); err != nil {
			w.err = err
			return err
		}
		if err := w.member(name+extSHA1, []byte(hex.EncodeToString(sum[:]))); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

func (w *Writer) checkDisk(id string, size int64) error {
	if size < 0 {
		return fmt.Errorf("xva: WriteDisk %s: negative size %d", id, size)
	}
	o := w.h.Object(id)
	if o == nil || !strings.EqualFold(o.Class, "VDI") {
		return fmt.Errorf("xva: WriteDisk %s: not a VDI of the header", id)
	}
	if _, ok := o.Fields["virtual_size"]; ok {
		vs, err := virtualSize(o)
		if err != nil {
			return fmt.Errorf("xva: WriteDisk %s: %w", id, err)
		}
		if vs != size {
			return fmt.Errorf("xva: WriteDisk %s: size %d differs from the header's virtual_size %d", id, size, vs)
		}
	}
	if w.written[id] {
		return fmt.Errorf("xva: WriteDisk %s: written twice", id)
	}
	if w.lastDisk != "" && id < w.lastDisk {
		return fmt.Errorf("xva: WriteDisk %s after %s: XAPI imports disks in the string order of their ids", id, w.lastDisk)
	}
	return nil
}

// Close checks that every disk of the VM was written and ends the archive.
// It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	for _, d := range w.disks {
		if !w.written[d.ID] {
			w.err = fmt.Errorf("xva: Close: disk %s (userdevice %s) was not written", d.ID, d.Userdevice)
			return w.err
		}
	}
	if err := w.tw.Close(); err != nil {
		w.err = fmt.Errorf("xva: finish the archive: %w", err)
	}
	return w.err
}

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
