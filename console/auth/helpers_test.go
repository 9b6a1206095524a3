package auth_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// clock is the tests' clock: it moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testPassword is every test user's password; its hash is computed once
// (argon2id takes a good fraction of a second).
const testPassword = "correct horse battery staple"

var (
	hashOnce sync.Once
	hash     string
	hashErr  error
)

func testHash(t testing.TB) string {
	t.Helper()
	hashOnce.Do(func() { hash, hashErr = auth.HashPassword([]byte(testPassword)) })
	if hashErr != nil {
		t.Fatal(hashErr)
	}
	return hash
}

// testUser is a user with testPassword.
func testUser(t testing.TB, name string, role auth.Role, scopes ...string) auth.User {
	t.Helper()
	u := auth.User{Name: name, Role: role, Password: testHash(t), Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	u.Changed = u.Created
	for _, s := range scopes {
		sel, err := auth.ParseScope(s)
		if err != nil {
			t.Fatal(err)
		}
		u.Scopes = append(u.Scopes, sel)
	}
	return u
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeAtomic replaces path with s through a rename, as an editor or
// Update would.
func writeAtomic(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
