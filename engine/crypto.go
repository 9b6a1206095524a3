package engine

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// KDFParams tunes argon2id, the memory-hard function that turns the password
// into the key-encryption key. Zero fields take the defaults.
type KDFParams struct {
	Time    uint32 `json:"time"`     // passes (default 3)
	MemoryK uint32 `json:"memory_k"` // KiB of memory (default 64 MiB)
	Threads uint8  `json:"threads"`  // lanes (default 2)
}

func (p *KDFParams) setDefaults() {
	if p.Time == 0 {
		p.Time = 3
	}
	if p.MemoryK == 0 {
		p.MemoryK = 64 << 10
	}
	if p.Threads == 0 {
		p.Threads = 2
	}
}

// Encryption is the encryption section of config.json. The master key is
// random; it is stored wrapped (AES-256-GCM) under a key derived from the
// password with argon2id, so changing the password never rewrites data.
type Encryption struct {
	Cipher     string    `json:"cipher"` // "aes-256-gcm"
	KDF        string    `json:"kdf"`    // "argon2id"
	KDFParams  KDFParams `json:"kdf_params"`
	Salt       []byte    `json:"salt"`
	WrappedKey []byte    `json:"wrapped_key"`
}

// keys are the per-purpose keys derived from the master key.
type keys struct {
	idKey []byte      // keyed BLAKE3 for chunk IDs
	blob  cipher.AEAD // seals blobs
	meta  cipher.AEAD // seals records: restore points, VM records (record files and index values)
	name  []byte      // HMAC key that turns a VM name into its index key
	// master is the key the others derive from: what init
	// --copy-params-from gives a DR repository.
	master []byte
	// fingerprint names the master key without revealing it: two
	// repositories with the same one store blobs alike (TransferKey).
	fingerprint []byte
}

// newEncryption makes a master key, or takes master when it is given
// (a DR repository that shares its source's keys), and wraps it with a key
// derived from password.
func newEncryption(password, master []byte, p KDFParams) (*Encryption, []byte, error) {
	p.setDefaults()
	salt := make([]byte, 16)
	if master == nil {
		master = make([]byte, 32)
		if _, err := rand.Read(master); err != nil {
			return nil, nil, err
		}
	}
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, err
	}
	kek := argon2.IDKey(password, salt, p.Time, p.MemoryK, p.Threads, 32)
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, nil, err
	}
	e := &Encryption{Cipher: "aes-256-gcm", KDF: "argon2id", KDFParams: p, Salt: salt,
		WrappedKey: aead.Seal(nil, nil, master, []byte("ahvfs master key"))}
	return e, master, nil
}

// unwrap derives the key-encryption key from the password and opens the
// master key; a wrong password fails GCM's authentication.
func (e *Encryption) unwrap(password []byte) ([]byte, error) {
	if e.Cipher != "aes-256-gcm" || e.KDF != "argon2id" {
		return nil, fmt.Errorf("%w: unknown cipher %q or KDF %q", ErrCorrupt, e.Cipher, e.KDF)
	}
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: the repository is encrypted and no password was given", ErrWrongPassword)
	}
	p := e.KDFParams
	if p.MemoryK > 4<<20 || p.Time > 100 || p.Threads == 0 {
		return nil, fmt.Errorf("%w: implausible KDF parameters %+v", ErrCorrupt, p)
	}
	kek := argon2.IDKey(password, e.Salt, p.Time, p.MemoryK, p.Threads, 32)
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	master, err := aead.Open(nil, nil, e.WrappedKey, []byte("ahvfs master key"))
	if err != nil {
		return nil, ErrWrongPassword
	}
	return master, nil
}

func deriveKeys(master []byte) (*keys, error) {
	idKey, err := hkdf.Key(sha256.New, master, nil, "ahvfs chunk id", 32)
	if err != nil {
		return nil, err
	}
	blobKey, err := hkdf.Key(sha256.New, master, nil, "ahvfs blob", 32)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(blobKey)
	if err != nil {
		return nil, err
	}
	metaKey, err := hkdf.Key(sha256.New, master, nil, "ahvfs metadata", 32)
	if err != nil {
		return nil, err
	}
	meta, err := newAEAD(metaKey)
	if err != nil {
		return nil, err
	}
	nameKey, err := hkdf.Key(sha256.New, master, nil, "ahvfs vm name", 32)
	if err != nil {
		return nil, err
	}
	fp, err := hkdf.Key(sha256.New, master, nil, "ahvfs key fingerprint", 16)
	if err != nil {
		return nil, err
	}
	return &keys{idKey: idKey, blob: aead, meta: meta, name: nameKey, master: bytes.Clone(master), fingerprint: fp}, nil
}

// newAEAD is AES-256-GCM with a random 96-bit nonce prepended to every
// ciphertext (the nonce space is large enough for the number of blobs a
// repository holds under one key).
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}
