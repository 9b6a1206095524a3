package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// liveUsers is the users file as the Authenticator sees it: read again
// whenever it changes, so that `ahvfs user del` or `passwd` takes effect
// at the next request. A change is a new file at the path (Update renames
// one into place) or a new modification time or size (an editor that
// writes in place). The file last read is kept open: its inode cannot be
// reused by a later file while we hold it, so "same inode" means "same
// file". When the file cannot be read or is invalid, every request fails
// (closed) until it is fixed; a missing file is a set without users.
type liveUsers struct {
	path  string
	fixed *Users // instead of a file

	mu  sync.Mutex
	cur *Users
	f   *os.File    // the file cur was read from
	fi  fs.FileInfo // f's when read
	err error       // why the file at errFI cannot be used
	eFI fs.FileInfo
}

var noUsers = &Users{Version: UsersVersion}

// get returns the current users.
func (l *liveUsers) get() (*Users, error) {
	if l.fixed != nil {
		return l.fixed, nil
	}
	st, err := os.Stat(l.path)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.forget()
		return noUsers, nil
	case err != nil:
		return nil, fmt.Errorf("users file: %w", err)
	case l.cur != nil && unchanged(l.fi, st):
		return l.cur, nil
	case l.err != nil && unchanged(l.eFI, st):
		return nil, l.err
	}
	l.forget()
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	fi, err := f.Stat()
	var us *Users
	if err == nil {
		var b []byte
		if b, err = io.ReadAll(io.LimitReader(f, 64<<20)); err == nil {
			us, err = ParseUsers(b)
		}
	}
	if err != nil {
		f.Close()
		l.err, l.eFI = fmt.Errorf("users file %s: %w", l.path, err), fi
		if fi == nil {
			l.eFI = st
		}
		return nil, l.err
	}
	l.cur, l.f, l.fi = us, f, fi
	return us, nil
}

// forget drops what was read; the caller holds mu.
func (l *liveUsers) forget() {
	if l.f != nil {
		l.f.Close()
	}
	l.cur, l.f, l.fi, l.err, l.eFI = nil, nil, nil, nil, nil
}

// close releases the file held open.
func (l *liveUsers) close() {
	l.mu.Lock()
	l.forget()
	l.mu.Unlock()
}

func unchanged(was, now fs.FileInfo) bool {
	return was != nil && os.SameFile(was, now) && was.ModTime().Equal(now.ModTime()) && was.Size() == now.Size()
}
