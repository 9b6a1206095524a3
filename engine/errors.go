package engine

import "errors"

// Sentinel errors. Callers test them with errors.Is; every error the engine
// returns wraps one of these or an I/O error, with the operation and object.
var (
	// ErrNotFound: a restore point, VM, disk or chunk does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored data failed a checksum, a hash or a decoder.
	ErrCorrupt = errors.New("corrupt data")
	// ErrLocked: another process holds the repository's writer lock.
	ErrLocked = errors.New("repository is locked by another writer")
	// ErrWrongPassword: the password does not open the repository's key.
	ErrWrongPassword = errors.New("wrong password")
	// ErrNewerFormat: the repository was written by a newer ahvfs.
	ErrNewerFormat = errors.New("repository format is newer than this ahvfs supports")
	// ErrReadOnly: a write was attempted on a repository opened for reading.
	ErrReadOnly = errors.New("repository is open read-only")
	// ErrNotRepository: the directory holds no ahvfs repository.
	ErrNotRepository = errors.New("not an ahvfs repository")
	// ErrExists: init found a repository (or other files) already there.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a name or time given to the engine breaks the rules of
	// docs/FORMAT.md ("Names").
	ErrInvalid = errors.New("invalid")
)
