package backend

import (
	"context"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mem keeps objects in memory: for tests, and as the model the other
// backends are held to. A Put reads all its data before the object
// appears, in one step; stored bytes are never modified (an overwrite
// replaces them), so an open Object keeps reading the version it opened.
type Mem struct {
	mu     sync.RWMutex
	objs   map[string]memObject
	closed bool
}

type memObject struct {
	data []byte
	mod  time.Time
}

var _ Backend = (*Mem)(nil)

// NewMem returns an empty in-memory backend.
func NewMem() *Mem { return &Mem{objs: map[string]memObject{}} }

// Clone returns an independent backend holding the same objects, as a
// fixture several tests start from.
func (m *Mem) Clone() *Mem {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &Mem{objs: maps.Clone(m.objs)}
}

// String implements Backend.
func (m *Mem) String() string { return "memory" }

// Close implements Backend.
func (m *Mem) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

func (m *Mem) begin(ctx context.Context, op, name string) error {
	if err := checkCall(ctx.Err(), op, name); err != nil {
		return err
	}
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return errClosed(op, name)
	}
	return nil
}

// Put implements Backend.
func (m *Mem) Put(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	if err := m.begin(ctx, "put", name); err != nil {
		return err
	}
	if err := checkSize("put", name, size); err != nil {
		return err
	}
	buf := make([]byte, size)
	if n, err := io.ReadFull(io.NewSectionReader(data, 0, size), buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = shortData(int64(n), size)
		}
		return fmt.Errorf("put %s: read data: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed("put", name)
	}
	m.objs[name] = memObject{data: buf, mod: time.Now()}
	return nil
}

func (m *Mem) get(op, name string) (memObject, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	o, ok := m.objs[name]
	if !ok {
		return memObject{}, fmt.Errorf("%s %s: %w", op, name, ErrNotExist)
	}
	return o, nil
}

// Open implements Backend.
func (m *Mem) Open(ctx context.Context, name string) (Object, error) {
	if err := m.begin(ctx, "open", name); err != nil {
		return nil, err
	}
	o, err := m.get("open", name)
	if err != nil {
		return nil, err
	}
	return &memReader{name: name, data: o.data}, nil
}

// memReader reads a stored version of an object.
type memReader struct {
	name   string
	data   []byte
	closed atomic.Bool
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	switch {
	case r.closed.Load():
		return 0, errClosed("read", r.name)
	case off < 0:
		return 0, fmt.Errorf("read %s: negative offset %d", r.name, off)
	case len(p) == 0:
		return 0, nil
	case off >= int64(len(r.data)):
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *memReader) Size() int64 { return int64(len(r.data)) }

func (r *memReader) Close() error {
	r.closed.Store(true)
	return nil
}

// Stat implements Backend.
func (m *Mem) Stat(ctx context.Context, name string) (Info, error) {
	if err := m.begin(ctx, "stat", name); err != nil {
		return Info{}, err
	}
	o, err := m.get("stat", name)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: name, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

// List implements Backend. It lists the objects as they were when it
// started.
func (m *Mem) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := checkPrefix(prefix); err != nil {
			yield(Info{}, fmt.Errorf("list: %w", err))
			return
		}
		if err := ctx.Err(); err != nil {
			yield(Info{}, fmt.Errorf("list %s: %w", prefix, err))
			return
		}
		m.mu.RLock()
		if m.closed {
			m.mu.RUnlock()
			yield(Info{}, errClosed("list", prefix))
			return
		}
		var out []Info
		for name, o := range m.objs {
			if strings.HasPrefix(name, prefix) {
				out = append(out, Info{Name: name, Size: int64(len(o.data)), ModTime: o.mod})
			}
		}
		m.mu.RUnlock()
		slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
		for _, info := range out {
			if err := ctx.Err(); err != nil {
				yield(Info{}, fmt.Errorf("list %s: %w", prefix, err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Delete implements Backend.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := m.begin(ctx, "delete", name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed("delete", name)
	}
	delete(m.objs, name)
	return nil
}
