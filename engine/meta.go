package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// metaCrypt seals what describes the repository's content rather than
// holding it: restore-point records, VM records and the VM names in index
// keys. In an encrypted repository they are sealed with the metadata key
// (AES-256-GCM) and a VM name becomes, in an index key, a 16-byte HMAC of
// it; in a plain one every method is the identity (docs/FORMAT.md,
// "Encryption of metadata").
type metaCrypt struct {
	k *keys // nil: not encrypted
}

// vmNameLen is the length of a VM name's index form in an encrypted repository.
const vmNameLen = 16

// vmPart is the form of a VM name in index keys.
func (m metaCrypt) vmPart(name string) []byte {
	if m.k == nil {
		return []byte(name)
	}
	h := hmac.New(sha256.New, m.k.name)
	h.Write([]byte(name))
	return h.Sum(nil)[:vmNameLen]
}

// seal encrypts plain, bound to aad (the key or file it is stored under),
// so that a sealed value moved elsewhere does not open.
func (m metaCrypt) seal(aad, plain []byte) []byte {
	if m.k == nil {
		return plain
	}
	return m.k.meta.Seal(nil, nil, plain, aad)
}

// open reverses seal; a value that does not authenticate is ErrCorrupt.
func (m metaCrypt) open(aad, sealed []byte) ([]byte, error) {
	if m.k == nil {
		return sealed, nil
	}
	plain, err := m.k.meta.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: a sealed record does not authenticate", ErrCorrupt)
	}
	return plain, nil
}

// encrypted reports whether metadata is sealed.
func (m metaCrypt) encrypted() bool { return m.k != nil }
