package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// API tokens are "ahvfs_<id>_<secret>": id is 8 random bytes in hex (16
// characters), the secret 32 random bytes in unpadded base64url (43
// characters). The users file keeps the id, to find the token, and the
// SHA-256 of the secret's text, to check it: a copy of the file lets no one
// use a token. The secret has 256 bits of entropy, so a fast hash is
// enough.
const (
	tokenPrefix    = "ahvfs_"
	tokenIDLen     = 8
	tokenSecretLen = 32
)

var (
	tokenIDTextLen     = hex.EncodedLen(tokenIDLen)
	tokenSecretTextLen = base64.RawURLEncoding.EncodedLen(tokenSecretLen)
	tokenTextLen       = len(tokenPrefix) + tokenIDTextLen + 1 + tokenSecretTextLen
)

// ErrBadToken is returned for a string that is not an API token.
var ErrBadToken = errors.New("not an ahvfs API token")

// Token is an API token as the users file keeps it.
type Token struct {
	ID      string    `json:"id"`              // 16 hex digits, unique in the file
	SHA256  string    `json:"sha256"`          // hex SHA-256 of the secret's text
	Created time.Time `json:"created"`         //
	Label   string    `json:"label,omitempty"` // what it is for, free text
	// Expires is when the token stops working; zero: never (until
	// revoked).
	Expires time.Time `json:"expires,omitzero"`
}

// Expired reports whether the token no longer works at now.
func (t *Token) Expired(now time.Time) bool { return !t.Expires.IsZero() && !now.Before(t.Expires) }

// NewToken makes a token: the text to hand out once, and the record to
// keep.
func NewToken(label string, now time.Time) (text string, t Token) {
	b := randomBytes(tokenIDLen + tokenSecretLen)
	id := hex.EncodeToString(b[:tokenIDLen])
	secret := base64.RawURLEncoding.EncodeToString(b[tokenIDLen:])
	sum := sha256.Sum256([]byte(secret))
	t = Token{ID: id, SHA256: hex.EncodeToString(sum[:]), Created: now.UTC(), Label: label}
	return tokenPrefix + id + "_" + secret, t
}

// ParseToken splits a token's text into its id and secret, checking its
// shape only.
func ParseToken(text string) (id, secret string, err error) {
	if len(text) != tokenTextLen || !strings.HasPrefix(text, tokenPrefix) {
		return "", "", ErrBadToken
	}
	rest := text[len(tokenPrefix):]
	id, secret = rest[:tokenIDTextLen], rest[tokenIDTextLen+1:]
	if rest[tokenIDTextLen] != '_' || !isLowerHex(id) {
		return "", "", ErrBadToken
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil || len(b) != tokenSecretLen {
		return "", "", ErrBadToken
	}
	return id, secret, nil
}

func isLowerHex(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') })
}

// validate checks the shape of a stored token.
func (t Token) validate() error {
	if len(t.ID) != tokenIDTextLen || !isLowerHex(t.ID) {
		return fmt.Errorf("token id %q: want %d lower-case hex digits", t.ID, tokenIDTextLen)
	}
	if len(t.SHA256) != 2*sha256.Size || !isLowerHex(t.SHA256) {
		return fmt.Errorf("token %s: sha256 is not %d lower-case hex digits", t.ID, 2*sha256.Size)
	}
	return nil
}

// matches reports whether secret is this token's, in constant time.
func (t Token) matches(secret string) bool {
	want, err := hex.DecodeString(t.SHA256)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], want) == 1
}

// VerifyToken returns the user that owns the API token text and the
// token's record, or ok false when the token is malformed, unknown or its
// secret wrong.
func (us *Users) VerifyToken(text string) (u *User, t *Token, ok bool) {
	id, secret, err := ParseToken(text)
	if err != nil {
		return nil, nil, false
	}
	for i := range us.Users {
		u := &us.Users[i]
		for j := range u.Tokens {
			if t := &u.Tokens[j]; t.ID == id {
				if !t.matches(secret) {
					return nil, nil, false
				}
				return u, t, true
			}
		}
	}
	return nil, nil, false
}

// AddToken gives the user name a new API token that never expires and
// returns its text, to show once.
func (us *Users) AddToken(name, label string, now time.Time) (string, error) {
	return us.AddTokenUntil(name, label, now, time.Time{})
}

// AddTokenUntil is AddToken for a token that stops working at expires
// (zero: never), which must be after now.
func (us *Users) AddTokenUntil(name, label string, now, expires time.Time) (string, error) {
	if !expires.IsZero() && !expires.After(now) {
		return "", fmt.Errorf("token expiry %s: not after now", expires.UTC().Format(time.RFC3339))
	}
	u := us.Lookup(name)
	if u == nil {
		return "", fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	if strings.ContainsFunc(label, isControl) || len(label) > 200 {
		return "", fmt.Errorf("token label: at most 200 bytes, no control characters")
	}
	text, t := NewToken(label, now)
	if !expires.IsZero() {
		t.Expires = expires.UTC().Truncate(time.Second)
	}
	u.Tokens = append(u.Tokens, t)
	u.Changed = now.UTC()
	return text, nil
}

// RevokeToken removes the user's API token id (as `ahvfs user list
// --json` shows it): the token stops working at the next request.
func (us *Users) RevokeToken(name, id string, now time.Time) error {
	u := us.Lookup(name)
	if u == nil {
		return fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	i := slices.IndexFunc(u.Tokens, func(t Token) bool { return t.ID == id })
	if i < 0 {
		return fmt.Errorf("user %q has no API token %q: %w", name, id, ErrBadToken)
	}
	u.Tokens = slices.Delete(u.Tokens, i, i+1)
	u.Changed = now.UTC()
	return nil
}
