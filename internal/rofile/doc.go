// Package rofile holds what the read-only files of guestfs and rptree
// share: the content of a file of known size read from a random-access
// source (Content), and a directory's entries read in pages (Dir).
//
// Content's ReadAt and ReadAtContext clamp reads to the size and follow
// io.ReaderAt's contract (io.EOF when fewer bytes remain, never a short
// read without an error); they take no lock and are safe for concurrent
// callers. Read and Seek share one position, guarded by a mutex, for
// callers that want an io.ReadSeeker. Errors are *fs.PathError naming the
// file's path.
package rofile
