package rofile_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ahvfs/ahvfs/internal/rofile"
)

// short returns at most n bytes per ReadAt, without an error: a source
// that breaks io.ReaderAt's contract.
type short struct {
	b []byte
	n int
}

func (s short) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	return copy(p[:min(len(p), s.n)], s.b[off:]), nil
}

func TestReaderContract(t *testing.T) {
	content := []byte(strings.Repeat("0123456789", 1000))
	// The source holds more than the size: reads stop at the size.
	src := bytes.NewReader(append(append([]byte{}, content...), "trailing junk"...))
	r := rofile.NewContent("f", int64(len(content)), rofile.WithoutContext(src))
	if err := iotest.TestReader(r, content); err != nil {
		t.Fatal(err)
	}
}

func TestReaderErrors(t *testing.T) {
	content := []byte("hello, world")
	for _, c := range []struct {
		name   string
		src    io.ReaderAt
		size   int64
		off    int64
		buf    int
		wantN  int
		wantIs error
	}{
		{"exact", bytes.NewReader(content), 12, 0, 12, 12, nil},
		{"past the size", bytes.NewReader(content), 12, 5, 20, 7, io.EOF},
		{"at the size", bytes.NewReader(content), 12, 12, 4, 0, io.EOF},
		{"negative offset", bytes.NewReader(content), 12, -1, 4, 0, fs.ErrInvalid},
		{"source shorter than the size", bytes.NewReader(content), 20, 8, 10, 4, io.ErrUnexpectedEOF},
		{"source short without an error", short{content, 3}, 12, 0, 12, 3, io.ErrUnexpectedEOF},
		{"no source", nil, 0, 0, 4, 0, rofile.ErrNotRegular},
	} {
		t.Run(c.name, func(t *testing.T) {
			var src rofile.ReaderAtContext
			if c.src != nil {
				src = rofile.WithoutContext(c.src)
			}
			r := rofile.NewContent("dir/f", c.size, src)
			n, err := r.ReadAt(make([]byte, c.buf), c.off)
			if n != c.wantN {
				t.Errorf("n = %d, want %d", n, c.wantN)
			}
			if !errors.Is(err, c.wantIs) || (c.wantIs == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, c.wantIs)
			}
			if c.wantIs != nil && c.wantIs != io.EOF && !strings.Contains(err.Error(), "dir/f") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestSeek(t *testing.T) {
	r := rofile.NewContent("f", 10, rofile.WithoutContext(strings.NewReader("0123456789")))
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
		bad    bool
	}{
		{3, io.SeekStart, 3, false},
		{2, io.SeekCurrent, 5, false},
		{-1, io.SeekEnd, 9, false},
		{5, io.SeekEnd, 15, false},
		{-20, io.SeekCurrent, 0, true},
		{0, 7, 0, true},
	} {
		got, err := r.Seek(c.off, c.whence)
		if c.bad != (err != nil) || (!c.bad && got != c.want) {
			t.Errorf("Seek(%d, %d) = %d, %v; want %d (error %v)", c.off, c.whence, got, err, c.want, c.bad)
		}
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read past the end: %d, %v", n, err)
	}
}
