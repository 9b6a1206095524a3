package clusterjob

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// Sealer encrypts the journal's files in an encrypted repository
// (engine.Repository implements it with the repository's metadata key).
type Sealer interface {
	// SealMeta encrypts plain, bound to aad.
	SealMeta(aad string, plain []byte) []byte
	// OpenMeta reverses SealMeta; damage or another aad is an error.
	OpenMeta(aad string, sealed []byte) ([]byte, error)
	// HideName is a keyed hash of name, usable in a file name.
	HideName(name string) string
}

// sealedMagic starts a sealed journal file; a file in the clear is JSON
// and starts with '{', so both kinds read back (a journal written before
// the repository's upgrade stays readable).
const sealedMagic = "AHVFSJ1\n"

// writeSealed writes the journal file path durably, sealed when s is set
// (bound to the file's base name).
func writeSealed(s Sealer, path string, plain []byte) error {
	b := plain
	if s != nil {
		b = append([]byte(sealedMagic), s.SealMeta(filepath.Base(path), plain)...)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// readSealed reads a journal file written by writeSealed.
func readSealed(s Sealer, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, sealed := bytes.CutPrefix(b, []byte(sealedMagic))
	if !sealed {
		return b, nil
	}
	if s == nil {
		return nil, fmt.Errorf("%s is sealed with the repository key: open the repository with its password", filepath.Base(path))
	}
	plain, err := s.OpenMeta(filepath.Base(path), rest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return plain, nil
}
