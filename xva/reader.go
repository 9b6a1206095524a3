package xva

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// BlockSize is the size of an XVA block: every block member holds 1 MiB of
// its disk, except the last block of a disk whose size is not a multiple
// of 1 MiB, which holds the rest.
const BlockSize = 1 << 20

// Checksum member suffixes.
const (
	extSHA1 = ".checksum" // hex SHA-1 (XAPI writes lower case)
	extXXH  = ".xxhash"   // hex XXH64 (XAPI writes %016X)
)

// maxChecksumSize bounds a checksum member (40 hex digits, or 16).
const maxChecksumSize = 256

// Block is one block of a disk, after its checksum was verified.
type Block struct {
	// Disk is the VDI id ("Ref:N") the block belongs to.
	Disk string
	// Index is the block's place in the disk: the block covers
	// [Index*BlockSize, Index*BlockSize+len(Data)). Missing indices are
	// holes (zeros) that the caller fills.
	Index int64
	// Name is the tar member the block came from ("Ref:N/00000007"). Its
	// counter equals Index unless the stream has zero-length dummy
	// members, which advance the counter but not the disk.
	Name string
	// Data is BlockSize bytes, or fewer for the last block of a disk whose
	// size is not a multiple of BlockSize. It is valid until the next call
	// of Next.
	Data []byte
}

// Options tunes a Reader. The zero value is the default.
type Options struct {
	// AllowMissingChecksums returns blocks that have no checksum member
	// (exports with export_vsn 0 have none) instead of failing. A checksum
	// member that is present is always verified.
	AllowMissingChecksums bool
	// MaxHeaderSize bounds ova.xml; 0 means MaxHeaderSize (64 MiB).
	MaxHeaderSize int64
}

// Reader reads an XVA in one pass, holding at most ova.xml and one block.
type Reader struct {
	br   *bufio.Reader
	tr   *tar.Reader
	opts Options

	header    *Header
	headerErr error
	disks     []Disk
	state     map[string]*diskState // by VDI id

	buf      []byte
	pending  *pendingBlock // a block read whose checksum member has not come yet
	peeked   *tar.Header   // a member header read but not yet handled
	lastName string        // the last member read, for error messages
	eof      bool          // the tar has ended
	err      error         // sticky
}

// diskState tracks the blocks seen for one VDI.
type diskState struct {
	id       string
	size     int64
	last     int64 // index of the last block; -1 for an empty disk
	counter  int64 // counter of the last block member; -1 before any
	shift    int64 // dummy members seen: counter - shift = index
	seenLast bool
}

type pendingBlock struct {
	name  string // member name without extension
	block Block
	dummy bool // a zero-length member: verified, then skipped
}

// NewReader returns a Reader of the XVA in r with default Options.
func NewReader(r io.Reader) *Reader { return NewReaderOptions(r, Options{}) }

// NewReaderOptions returns a Reader of the XVA in r.
func NewReaderOptions(r io.Reader, o Options) *Reader {
	if o.MaxHeaderSize <= 0 {
		o.MaxHeaderSize = MaxHeaderSize
	}
	br := bufio.NewReaderSize(r, 64<<10)
	return &Reader{br: br, tr: tar.NewReader(br), opts: o}
}

// Header reads ova.xml, which must be the archive's first member, and
// checks that it names one VM whose disks are all in it (Header.Disks). It
// is called by the first Next if the caller did not; later calls return
// the same result.
func (r *Reader) Header() (*Header, error) {
	if r.header == nil && r.headerErr == nil {
		r.header, r.headerErr = r.readHeader()
		if r.headerErr != nil {
			r.err = r.headerErr
		}
	}
	return r.header, r.headerErr
}

// Disks returns the VM's disks (Header.Disks) once Header succeeded.
func (r *Reader) Disks() []Disk { return r.disks }

func (r *Reader) readHeader() (*Header, error) {
	if magic, _ := r.br.Peek(4); len(magic) >= 2 {
		switch {
		case magic[0] == 0x1f && magic[1] == 0x8b:
			return nil, corruptf("the stream is gzip-compressed, not a tar (export with use_compression=false, or decompress it first)")
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			return nil, corruptf("the stream is zstd-compressed, not a tar (export with use_compression=false, or decompress it first)")
		}
	}
	hdr, err := r.tr.Next()
	switch {
	case err == io.EOF:
		return nil, corruptf("not a tar archive: the stream has no members")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("xva: not a tar archive (or truncated in its first header): %w: %w", io.ErrUnexpectedEOF, ErrCorrupt)
	case err != nil && isTarFormatError(err):
		return nil, fmt.Errorf("xva: not a tar archive: %v: %w", err, ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("xva: read the first tar header: %w", err)
	}
	name := memberName(hdr.Name)
	r.lastName = name
	if name != "ova.xml" {
		return nil, corruptf("the first member is %q, want ova.xml (not an XVA, or ova.xml is not first)", hdr.Name)
	}
	if !isRegular(hdr) {
		return nil, corruptf("ova.xml is not a regular file (tar type %q)", hdr.Typeflag)
	}
	if hdr.Size > r.opts.MaxHeaderSize {
		return nil, corruptf("ova.xml is %d bytes, more than the %d allowed", hdr.Size, r.opts.MaxHeaderSize)
	}
	b := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.tr, b); err != nil {
		return nil, truncated("ova.xml", err)
	}
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	disks, err := h.Disks()
	if err != nil {
		return nil, err
	}
	r.disks = disks
	r.state = map[string]*diskState{}
	for i := range h.Objects {
		o := &h.Objects[i]
		if !strings.EqualFold(o.Class, "VDI") {
			continue
		}
		size, err := virtualSize(o)
		if err != nil {
			// A VDI that no disk uses (an ISO, say) may lack a size; its
			// blocks, if any, are refused in Next.
			continue
		}
		r.state[o.ID] = &diskState{id: o.ID, size: size, last: (size+BlockSize-1)/BlockSize - 1, counter: -1}
	}
	return h, nil
}

// Next returns the next block in archive order once its checksum member
// verified it. It returns io.EOF at the end of the archive, after checking
// that every disk that has blocks (and every disk of the VM) ended with its
// last block, which XAPI always writes. Errors are sticky.
func (r *Reader) Next() (Block, error) {
	if r.err != nil {
		return Block{}, r.err
	}
	if _, err := r.Header(); err != nil {
		return Block{}, err
	}
	b, err := r.next()
	if err != nil {
		r.err = err
	}
	return b, err
}

func (r *Reader) next() (Block, error) {
	for {
		var hdr *tar.Header
		switch {
		case r.peeked != nil:
			hdr, r.peeked = r.peeked, nil
		case r.eof:
			return r.finish()
		default:
			h, err := r.tr.Next()
			if err == io.EOF {
				r.eof = true
				return r.finish()
			}
			if err != nil {
				return Block{}, tarError(err, "after member "+r.lastName)
			}
			hdr = h
		}
		name := memberName(hdr.Name)
		r.lastName = name
		disk, counter, ext, err := parseMemberName(name)
		if err != nil {
			return Block{}, err
		}
		if ext == "" {
			if r.pending != nil {
				if !r.opts.AllowMissingChecksums {
					return Block{}, corruptf("block %s has no checksum member (the next member is %s)", r.pending.name, name)
				}
				r.peeked = hdr
				if p := r.release(); p != nil {
					return *p, nil
				}
				continue
			}
			if err := r.readBlock(hdr, name, disk, counter); err != nil {
				return Block{}, err
			}
			continue
		}
		base := strings.TrimSuffix(name, ext)
		if r.pending == nil || r.pending.name != base {
			return Block{}, corruptf("checksum member %s without its block %s before it", name, base)
		}
		if err := r.verify(hdr, name, ext); err != nil {
			return Block{}, err
		}
		if p := r.release(); p != nil {
			return *p, nil
		}
	}
}

// release hands out the pending block, or nil for a dummy member.
func (r *Reader) release() *Block {
	p := r.pending
	r.pending = nil
	if p.dummy {
		return nil
	}
	return &p.block
}

// finish runs at the end of the archive.
func (r *Reader) finish() (Block, error) {
	if r.pending != nil {
		if !r.opts.AllowMissingChecksums {
			return Block{}, corruptf("block %s has no checksum member (the archive ends)", r.pending.name)
		}
		if p := r.release(); p != nil {
			return *p, nil
		}
	}
	for _, d := range r.disks {
		if st := r.state[d.ID]; st != nil && st.last >= 0 && !st.seenLast {
			return Block{}, missingLast(fmt.Sprintf("disk %s (userdevice %s)", d.ID, d.Userdevice), st)
		}
	}
	ids := sortedKeys(r.state)
	for _, id := range ids {
		if st := r.state[id]; st.counter >= 0 && st.last >= 0 && !st.seenLast {
			return Block{}, missingLast("VDI "+id, st)
		}
	}
	return Block{}, io.EOF
}

func missingLast(what string, st *diskState) error {
	return fmt.Errorf("xva: %s: the archive ends before its last block, index %d (XAPI always writes it): truncated XVA, or an export without disk data: %w: %w",
		what, st.last, io.ErrUnexpectedEOF, ErrCorrupt)
}

// readBlock reads a block member into the buffer and makes it pending.
func (r *Reader) readBlock(hdr *tar.Header, name, disk string, counter int64) error {
	if !isRegular(hdr) {
		return corruptf("block member %s is not a regular file (tar type %q)", name, hdr.Typeflag)
	}
	st := r.state[disk]
	if st == nil {
		if r.header.Object(disk) != nil {
			return corruptf("block member %s: %s is not a VDI with a virtual_size in ova.xml", name, disk)
		}
		return corruptf("block member %s: %s is not in ova.xml", name, disk)
	}
	switch {
	case counter == st.counter:
		return corruptf("duplicate block %s", name)
	case counter < st.counter:
		return corruptf("block %s comes after block %s/%08d: blocks out of order", name, disk, st.counter)
	}
	index := counter - st.shift
	if index > st.last {
		return corruptf("block %s: index %d is beyond virtual_size %d of %s (last block %d)", name, index, st.size, disk, st.last)
	}
	want := int64(BlockSize)
	if index == st.last {
		want = st.size - index*BlockSize
	}
	dummy := hdr.Size == 0 && index < st.last
	if hdr.Size != want && !dummy {
		return corruptf("block %s is %d bytes, want %d (blocks are %d bytes, the last one holds the rest of virtual_size %d)", name, hdr.Size, want, BlockSize, st.size)
	}
	if int64(cap(r.buf)) < hdr.Size {
		r.buf = make([]byte, hdr.Size) // at most BlockSize, checked above
	}
	data := r.buf[:hdr.Size]
	if _, err := io.ReadFull(r.tr, data); err != nil {
		return truncated(name, err)
	}
	st.counter = counter
	if dummy {
		st.shift++
	} else if index == st.last {
		st.seenLast = true
	}
	r.pending = &pendingBlock{name: name, dummy: dummy, block: Block{Disk: disk, Index: index, Name: name, Data: data}}
	return nil
}

// verify reads a checksum member and compares it with the pending block.
func (r *Reader) verify(hdr *tar.Header, name, ext string) error {
	if !isRegular(hdr) {
		return corruptf("checksum member %s is not a regular file (tar type %q)", name, hdr.Typeflag)
	}
	if hdr.Size > maxChecksumSize {
		return corruptf("checksum member %s is %d bytes, too large for a checksum", name, hdr.Size)
	}
	b := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.tr, b); err != nil {
		return truncated(name, err)
	}
	said := trimSpace(string(b))
	data := r.pending.block.Data
	var got string
	match := false
	switch ext {
	case extSHA1:
		sum := sha1.Sum(data)
		got = hex.EncodeToString(sum[:])
		match = strings.EqualFold(said, got)
	case extXXH:
		got = fmt.Sprintf("%016X", xxh64(data))
		n, err := strconv.ParseUint(said, 16, 64)
		if err != nil || len(said) > 16 {
			return corruptf("checksum member %s holds %q, not a hex XXH64", name, said)
		}
		match = n == xxh64(data)
	}
	if !match {
		return fmt.Errorf("xva: block %s: %w: %s says %q, the data hashes to %s: %w",
			r.pending.name, ErrChecksum, name, said, got, ErrCorrupt)
	}
	return nil
}

// parseMemberName splits "Ref:N/00000007[.checksum|.xxhash]" into the disk
// id, the counter and the extension. The counter has at least 8 decimal
// digits (XAPI's %08d).
func parseMemberName(name string) (disk string, counter int64, ext string, err error) {
	bad := func(why string) error {
		return corruptf("unexpected member %q: %s (want ova.xml first, then Ref:N/NNNNNNNN block members each followed by .checksum or .xxhash)", name, why)
	}
	if name == "ova.xml" {
		return "", 0, "", bad("ova.xml appears twice")
	}
	slash := strings.LastIndexByte(name, '/')
	if slash <= 0 {
		return "", 0, "", bad("not a block member")
	}
	disk, rest := name[:slash], name[slash+1:]
	for _, e := range []string{extSHA1, extXXH} {
		if strings.HasSuffix(rest, e) {
			ext, rest = e, strings.TrimSuffix(rest, e)
			break
		}
	}
	if len(rest) < 8 {
		return "", 0, "", bad("the block counter has fewer than 8 digits")
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return "", 0, "", bad("the block counter is not decimal")
		}
	}
	counter, perr := strconv.ParseInt(rest, 10, 64)
	if perr != nil {
		return "", 0, "", bad("the block counter is out of range")
	}
	return disk, counter, ext, nil
}

// memberName drops a leading "./", which some tar writers add.
func memberName(n string) string { return strings.TrimPrefix(n, "./") }

func isRegular(h *tar.Header) bool {
	// '\x00' is the pre-POSIX regular file type (tar.TypeRegA).
	return h.Typeflag == tar.TypeReg || h.Typeflag == '\x00'
}

func truncated(member string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("xva: truncated archive inside member %s: %w: %w", member, io.ErrUnexpectedEOF, ErrCorrupt)
	}
	if isTarFormatError(err) {
		return fmt.Errorf("xva: bad tar member %s: %v: %w", member, err, ErrCorrupt)
	}
	return fmt.Errorf("xva: read member %s: %w", member, err)
}

// isTarFormatError reports errors of archive/tar about the archive itself
// (ErrHeader and its unexported sparse-file errors), as opposed to errors
// of the underlying reader.
func isTarFormatError(err error) bool {
	return errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) ||
		errors.Is(err, tar.ErrInsecurePath) || strings.HasPrefix(err.Error(), "archive/tar:")
}

// tarError classifies an error of tar.Reader.Next: a truncated stream, a
// malformed header, or an I/O error of the underlying reader (returned
// wrapped, not as corruption).
func tarError(err error, where string) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("xva: truncated archive %s: %w: %w", where, io.ErrUnexpectedEOF, ErrCorrupt)
	case isTarFormatError(err):
		return fmt.Errorf("xva: bad tar header %s: %v: %w", where, err, ErrCorrupt)
	}
	return fmt.Errorf("xva: read tar %s: %w", where, err)
}
