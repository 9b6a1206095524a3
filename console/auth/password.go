package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password hashing parameters for new hashes: RFC 9106's second
// recommended option (argon2id, t=3 passes over m=64 MiB, 128-bit salt,
// 256-bit tag), which the RFC gives for hosts that cannot spare the first
// option's 2 GiB: a backup host keeps its memory for backups. We run it on
// p=2 lanes instead of the RFC's 4, so a login occupies two cores, not the
// four a running backup is compressing on; the cost to an attacker is set
// by m and t, not by p. A check takes 0.1 to 0.3 s of two cores.
const (
	hashMemoryKiB = 64 * 1024
	hashTime      = 3
	hashThreads   = 2
	hashSaltLen   = 16
	hashKeyLen    = 32
)

// Limits on what a stored hash may ask for. The users file is trusted, but
// not enough to let one edited line make every login allocate gigabytes
// or run for minutes.
const (
	maxHashMemoryKiB = 256 * 1024 // 256 MiB, four times what HashPassword uses
	maxHashTime      = 16
	maxHashThreads   = 16
	minHashSaltLen   = 8
	maxHashSaltLen   = 64
	minHashKeyLen    = 16
	maxHashKeyLen    = 64
)

// MinPasswordLength is the fewest characters a console password may have.
const MinPasswordLength = 12

// maxPasswordLength bounds what a login hashes (bytes).
const maxPasswordLength = 1024

// ErrWeakPassword is returned by HashPassword for a password that is too
// short (or too long).
var ErrWeakPassword = errors.New("weak password")

// ErrMalformedHash is returned for a stored password hash that is not a
// PHC string this package reads, or that asks for more than its limits.
var ErrMalformedHash = errors.New("malformed password hash")

// phcB64 is the PHC string format's base64: standard alphabet, no padding.
// Strict, so that a hash has one spelling and decoding then encoding gives
// back the input.
var phcB64 = base64.RawStdEncoding.Strict()

// PasswordHash is a decoded PHC string of argon2id.
type PasswordHash struct {
	MemoryKiB uint32 // m
	Time      uint32 // t
	Threads   uint8  // p
	Salt      []byte
	Key       []byte
}

// String encodes h as a PHC string:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<key>.
func (h PasswordHash) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.MemoryKiB, h.Time, h.Threads,
		phcB64.EncodeToString(h.Salt), phcB64.EncodeToString(h.Key))
}

// ParsePasswordHash decodes a PHC string of argon2id (version 19, the
// parameters in the order m, t, p, in decimal without leading zeros). It
// refuses anything else, and parameters beyond this package's limits.
func ParsePasswordHash(s string) (PasswordHash, error) {
	bad := func(why string) (PasswordHash, error) {
		return PasswordHash{}, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return bad("want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	if f[1] != "argon2id" {
		return bad(fmt.Sprintf("algorithm %.20q, want argon2id", f[1]))
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad(fmt.Sprintf("version %.20q, want v=%d", f[2], argon2.Version))
	}
	var h PasswordHash
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return bad("want the parameters m=M,t=T,p=P")
	}
	m, err := phcParam(params[0], "m", maxHashMemoryKiB)
	if err != nil {
		return bad(err.Error())
	}
	t, err := phcParam(params[1], "t", maxHashTime)
	if err != nil {
		return bad(err.Error())
	}
	p, err := phcParam(params[2], "p", maxHashThreads)
	if err != nil {
		return bad(err.Error())
	}
	h.MemoryKiB, h.Time, h.Threads = uint32(m), uint32(t), uint8(p)
	if h.MemoryKiB < 8*uint32(h.Threads) {
		return bad(fmt.Sprintf("m=%d is less than 8 KiB per lane (p=%d)", m, p))
	}
	if h.Salt, err = phcB64.DecodeString(f[4]); err != nil {
		return bad("salt is not base64")
	}
	if n := len(h.Salt); n < minHashSaltLen || n > maxHashSaltLen {
		return bad(fmt.Sprintf("salt of %d bytes, want %d to %d", n, minHashSaltLen, maxHashSaltLen))
	}
	if h.Key, err = phcB64.DecodeString(f[5]); err != nil {
		return bad("hash is not base64")
	}
	if n := len(h.Key); n < minHashKeyLen || n > maxHashKeyLen {
		return bad(fmt.Sprintf("hash of %d bytes, want %d to %d", n, minHashKeyLen, maxHashKeyLen))
	}
	return h, nil
}

// phcParam parses "name=N" with 1 <= N <= max.
func phcParam(s, name string, max uint64) (uint64, error) {
	v, ok := strings.CutPrefix(s, name+"=")
	if !ok {
		return 0, fmt.Errorf("parameter %.20q, want %s=N", s, name)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, fmt.Errorf("parameter %s=%.20q is not a decimal number", name, v)
	}
	if n < 1 || n > max {
		return 0, fmt.Errorf("parameter %s=%d out of range 1 to %d", name, n, max)
	}
	return n, nil
}

// CheckPasswordStrength reports a password HashPassword would refuse.
func CheckPasswordStrength(pw []byte) error {
	if n := utf8.RuneCount(pw); n < MinPasswordLength {
		return fmt.Errorf("%w: the password has %d characters; a console password needs at least %d", ErrWeakPassword, n, MinPasswordLength)
	}
	if len(pw) > maxPasswordLength {
		return fmt.Errorf("%w: the password has %d bytes; a console password has at most %d", ErrWeakPassword, len(pw), maxPasswordLength)
	}
	return nil
}

// HashPassword hashes a new password with argon2id and a random salt, and
// returns the PHC string to store. It refuses a password shorter than
// MinPasswordLength characters.
func HashPassword(pw []byte) (string, error) {
	if err := CheckPasswordStrength(pw); err != nil {
		return "", err
	}
	salt := randomBytes(hashSaltLen)
	h := PasswordHash{MemoryKiB: hashMemoryKiB, Time: hashTime, Threads: hashThreads, Salt: salt}
	h.Key = argon2.IDKey(pw, salt, h.Time, h.MemoryKiB, h.Threads, hashKeyLen)
	return h.String(), nil
}

// CheckPassword reports whether pw is the password hashed in encoded (a
// PHC string from HashPassword). The comparison takes the same time
// wherever the keys differ. A malformed encoded is an error
// (ErrMalformedHash), never a match.
func CheckPassword(encoded string, pw []byte) (bool, error) {
	h, err := ParsePasswordHash(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > maxPasswordLength {
		return false, nil
	}
	key := argon2.IDKey(pw, h.Salt, h.Time, h.MemoryKiB, h.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(key, h.Key) == 1, nil
}
