//go:build linux && (amd64 || arm64)

package backend

import (
	"os"
	"syscall"
)

const (
	syncFileRangeWrite = 2 // SYNC_FILE_RANGE_WRITE
	fadvWillNeed       = 3 // POSIX_FADV_WILLNEED
)

// startWriteback asks the kernel to start writing [off, off+n) of f to
// disk now, without waiting, so that a later fsync has little left to do.
// Filesystems without it (tmpfs) ignore the hint.
func startWriteback(f *os.File, off, n int64) {
	control(f, func(fd uintptr) { _ = syscall.SyncFileRange(int(fd), off, n, syncFileRangeWrite) })
}

// adviseWillNeed asks the kernel to start reading [off, off+n) of f into
// the page cache, without waiting.
func adviseWillNeed(f *os.File, off, n int64) {
	control(f, func(fd uintptr) {
		_, _, _ = syscall.Syscall6(syscall.SYS_FADVISE64, fd, uintptr(off), uintptr(n), fadvWillNeed, 0, 0)
	})
}

// control runs fn on f's descriptor, which a concurrent Close cannot
// release meanwhile.
func control(f *os.File, fn func(fd uintptr)) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(fn)
	}
}
