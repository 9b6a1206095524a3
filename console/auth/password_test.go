package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/console/auth"
)

// TestPasswordRoundTrip: a hash is a PHC string of argon2id with the
// documented parameters, checks its own password and no other, and two
// hashes of one password differ (random salt).
func TestPasswordRoundTrip(t *testing.T) {
	h := testHash(t)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q: not argon2id with m=64 MiB, t=3, p=2", h)
	}
	ph, err := auth.ParsePasswordHash(h)
	if err != nil || len(ph.Salt) != 16 || len(ph.Key) != 32 || ph.String() != h {
		t.Fatalf("ParsePasswordHash(%q) = %+v, %v", h, ph, err)
	}
	if ok, err := auth.CheckPassword(h, []byte(testPassword)); !ok || err != nil {
		t.Fatalf("the right password: %v, %v", ok, err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", testPassword + " ", strings.ToUpper(testPassword)} {
		if ok, err := auth.CheckPassword(h, []byte(wrong)); ok || err != nil {
			t.Errorf("wrong password %q: %v, %v", wrong, ok, err)
		}
	}
	h2, err := auth.HashPassword([]byte(testPassword))
	if err != nil || h2 == h {
		t.Fatalf("second hash of the same password: %q, %v (want a new salt)", h2, err)
	}
}

// TestPasswordTooShort: fewer than 12 characters (not bytes) is refused
// with a clear error, before any hashing.
func TestPasswordTooShort(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"", false},
		{"elevenchars", false},
		{"twelve chars", true},
		{"ééééééééééé", false}, // 11 characters, 22 bytes
		{"éééééééééééé", true},
		{strings.Repeat("x", 1025), false},
	} {
		err := auth.CheckPasswordStrength([]byte(tc.pw))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, auth.ErrWeakPassword)) {
			t.Errorf("CheckPasswordStrength(%q) = %v, want ok %v", tc.pw, err, tc.ok)
		}
	}
	_, err := auth.HashPassword([]byte("short"))
	if !errors.Is(err, auth.ErrWeakPassword) || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("HashPassword of a short password: %v", err)
	}
}

// A valid salt (16 bytes) and key (32 bytes), to build hashes from.
const (
	salt16 = "AAAAAAAAAAAAAAAAAAAAAA"
	key32  = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

// TestMalformedHashes: anything but a well-formed argon2id PHC string is
// an error, never a match.
func TestMalformedHashes(t *testing.T) {
	for _, s := range []string{
		"",
		"plain text password",
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16,
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32 + "$",
		"argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2i$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2d$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$bcrypt$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=16$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$t=3,m=65536,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2,k=1$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=065536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=+65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=-3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "==$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32 + "=",
		"$argon2id$v=19$m=65536,t=3,p=2$" + "AAAAAAAAAAAAAAAAAAAAAB" + "$" + key32, // non-canonical last character
		"$argon2id$v=19$m=65536,t=3,p=2$" + "AAAA!AAAAAAAAAAAAAAAAA" + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$" + "AAAAAAAA" + "$" + key32, // 6 bytes: salts have 8 at least
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + "AAAAAAAAAAAAAAAAAAAA",
	} {
		if _, err := auth.ParsePasswordHash(s); !errors.Is(err, auth.ErrMalformedHash) {
			t.Errorf("ParsePasswordHash(%q) = %v, want ErrMalformedHash", s, err)
		}
		if ok, err := auth.CheckPassword(s, []byte(testPassword)); ok || err == nil {
			t.Errorf("CheckPassword(%q) = %v, %v; want false and an error", s, ok, err)
		}
	}
}

// TestHashParameterCaps: a stored hash may not ask for more than 256 MiB,
// 16 passes or 16 lanes, nor for less than one pass, one lane and 8 KiB a
// lane: a hostile users file cannot make a login allocate gigabytes.
func TestHashParameterCaps(t *testing.T) {
	for _, tc := range []struct {
		params string
		ok     bool
	}{
		{"m=65536,t=3,p=2", true},
		{"m=262144,t=16,p=16", true},
		{"m=8,t=1,p=1", true},
		{"m=262145,t=3,p=2", false},
		{"m=4194304,t=3,p=2", false},
		{"m=4294967295,t=3,p=2", false},
		{"m=4294967296,t=3,p=2", false},
		{"m=65536,t=17,p=2", false},
		{"m=65536,t=0,p=2", false},
		{"m=65536,t=3,p=17", false},
		{"m=65536,t=3,p=255", false},
		{"m=65536,t=3,p=0", false},
		{"m=0,t=3,p=2", false},
		{"m=15,t=1,p=2", false},
	} {
		s := "$argon2id$v=19$" + tc.params + "$" + salt16 + "$" + key32
		_, err := auth.ParsePasswordHash(s)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.params, err, tc.ok)
		}
	}
	long := strings.Repeat("A", 88) // 66 bytes
	for _, s := range []string{
		"$argon2id$v=19$m=65536,t=3,p=2$" + long + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + long,
	} {
		if _, err := auth.ParsePasswordHash(s); err == nil {
			t.Errorf("a salt or hash of 66 bytes is accepted: %s", s)
		}
	}
}

// FuzzParsePasswordHash: the decoder never panics, keeps to its limits,
// and what it accepts encodes back to the same string.
func FuzzParsePasswordHash(f *testing.F) {
	for _, s := range []string{
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$hFT3wznXHujoL4XlVP6Y7Q$iRcbp91KD2Ab8ZKrX43y9qPHRgEbkeRbqduG0BB6fTg",
		"$argon2id$v=19$m=262144,t=16,p=16$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32 + "$",
		"$argon2i$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=065536,t=3,p=2$" + salt16 + "$" + key32,
		"$argon2id$v=19$m=4294967296,t=3,p=2$" + salt16 + "$" + key32,
		"$$$$$",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := auth.ParsePasswordHash(s)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformedHash) {
				t.Fatalf("error %v is not ErrMalformedHash", err)
			}
			return
		}
		if h.MemoryKiB > 256*1024 || h.Time < 1 || h.Time > 16 || h.Threads < 1 || h.Threads > 16 {
			t.Fatalf("%q: parameters beyond the limits: %+v", s, h)
		}
		if got := h.String(); got != s {
			t.Fatalf("%q encodes back as %q", s, got)
		}
	})
}
