package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CHAP with MD5 (RFC 1994, algorithm 5) as used by RFC 7143 section 12.1.3:
// response = MD5(identifier || secret || challenge).

const chapMD5 = "5"

func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeBinary decodes an iSCSI binary value: "0x" hex or "0b" base64
// (RFC 7143 section 6.1).
func decodeBinary(v string) ([]byte, error) {
	switch {
	case len(v) > 2 && (strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X")):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		return hex.DecodeString(s)
	case len(v) > 2 && (strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B")):
		b, err := base64.StdEncoding.DecodeString(v[2:])
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(v[2:])
		}
		return b, err
	}
	return nil, errors.New("binary value needs a 0x or 0b prefix")
}

func encodeHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

// chapAnswer computes CHAP_N and CHAP_R for the target's CHAP_I and CHAP_C.
func chapAnswer(c *CHAP, keys map[string]string) ([]keyValue, error) {
	if a := keys["CHAP_A"]; a != chapMD5 {
		return nil, fmt.Errorf("target chose CHAP_A=%q; only MD5 (5) is supported", a)
	}
	id, err := strconv.ParseUint(keys["CHAP_I"], 0, 8)
	if err != nil {
		return nil, fmt.Errorf("%w: bad CHAP_I %q", ErrProtocol, keys["CHAP_I"])
	}
	challenge, err := decodeBinary(keys["CHAP_C"])
	if err != nil || len(challenge) == 0 {
		return nil, fmt.Errorf("%w: bad CHAP_C %q", ErrProtocol, truncate([]byte(keys["CHAP_C"])))
	}
	return []keyValue{
		{"CHAP_N", c.User},
		{"CHAP_R", encodeHex(chapResponse(byte(id), c.Secret, challenge))},
	}, nil
}

// mutualChallenge is the initiator's challenge to the target.
type mutualChallenge struct {
	id        byte
	challenge []byte
}

func newMutualChallenge() (*mutualChallenge, error) {
	b := make([]byte, 17)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &mutualChallenge{id: b[0], challenge: b[1:]}, nil
}

func (m *mutualChallenge) keys() []keyValue {
	return []keyValue{
		{"CHAP_I", strconv.Itoa(int(m.id))},
		{"CHAP_C", encodeHex(m.challenge)},
	}
}

// verify checks the target's CHAP_N and CHAP_R.
func (m *mutualChallenge) verify(c *CHAP, keys map[string]string) error {
	name, resp := keys["CHAP_N"], keys["CHAP_R"]
	if resp == "" {
		return fmt.Errorf("%w: target did not answer the mutual CHAP challenge", ErrAuth)
	}
	if c.TargetUser != "" && name != c.TargetUser {
		return fmt.Errorf("%w: target authenticated as %q, want %q", ErrAuth, name, c.TargetUser)
	}
	got, err := decodeBinary(resp)
	if err != nil {
		return fmt.Errorf("%w: bad CHAP_R from target: %v", ErrAuth, err)
	}
	want := chapResponse(m.id, c.TargetSecret, m.challenge)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return fmt.Errorf("%w: target's CHAP response does not match TargetSecret", ErrAuth)
	}
	return nil
}
