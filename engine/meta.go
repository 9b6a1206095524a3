package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

// Encrypted reports whether the repository is encrypted.
func (r *Repository) Encrypted() bool { return r.keys != nil }

// SealMeta encrypts plain with the repository's metadata key, bound to
// "ahvfs journal " + aad, for files that live beside the repository and name
// VMs (the journal of temporary cluster objects). Without encryption it
// returns plain.
func (r *Repository) SealMeta(aad string, plain []byte) []byte {
	return r.fileMeta().seal([]byte("ahvfs journal "+aad), plain)
}

// OpenMeta reverses SealMeta; a value that does not authenticate is
// ErrCorrupt.
func (r *Repository) OpenMeta(aad string, sealed []byte) ([]byte, error) {
	return r.fileMeta().open([]byte("ahvfs journal "+aad), sealed)
}

// HideName returns a keyed hash of name (32 hex digits) in an encrypted
// repository, for file names that must not reveal it; without encryption,
// the SHA-256 of name.
func (r *Repository) HideName(name string) string {
	if r.keys == nil {
		h := sha256.Sum256([]byte(name))
		return hex.EncodeToString(h[:16])
	}
	return hex.EncodeToString(r.fileMeta().vmPart(name))
}
