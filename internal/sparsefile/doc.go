// Package sparsefile finds the data and holes of an open file with
// lseek(SEEK_DATA) and lseek(SEEK_HOLE), retrying a seek that a signal
// interrupted.
//
// Go's runtime signals its threads (SIGURG, for preemption), and a FUSE
// or NFS file answers a seek interrupted by a signal with EINTR, which
// the kernel does not restart. os.File retries EINTR for reads, not for
// seeks; these calls do.
package sparsefile
