package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

func usersPath(t *testing.T) string { return filepath.Join(t.TempDir(), "etc", "users.json") }

// TestUsersFileRoundTrip: what Update writes, Load reads back: names,
// roles, scopes, hashes, tokens and times; the file is mode 0600, sorted by
// name and versioned.
func TestUsersFileRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := usersPath(t)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var token string
	err := auth.Update(ctx, path, func(us *auth.Users) error {
		if err := us.Add(testUser(t, "zoe", auth.RoleOperator, "web*", "uuid:0A1B2C3D-0000-4000-8000-000000000001", "category:Env:prod")); err != nil {
			return err
		}
		if err := us.Add(testUser(t, "alice", auth.RoleAdmin)); err != nil {
			return err
		}
		var err error
		token, err = us.AddToken("zoe", "grafana", now)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".lock"} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", p, st.Mode(), err)
		}
	}
	us, err := auth.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if us.Version != 1 || len(us.Users) != 2 || us.Users[0].Name != "alice" || us.Users[1].Name != "zoe" {
		t.Fatalf("loaded %+v", us)
	}
	z := us.Lookup("zoe")
	var scopes []string
	for _, s := range z.Scopes {
		scopes = append(scopes, s.String())
	}
	if z.Role != auth.RoleOperator || strings.Join(scopes, " ") != "name:web* uuid:0a1b2c3d-0000-4000-8000-000000000001 category:Env:prod" ||
		z.Password != testHash(t) || len(z.Tokens) != 1 || z.Tokens[0].Label != "grafana" || !z.Tokens[0].Created.Equal(now) || !z.Changed.Equal(now) {
		t.Fatalf("zoe = %+v (scopes %v)", z, scopes)
	}
	if u, _, ok := us.VerifyToken(token); !ok || u.Name != "zoe" {
		t.Fatalf("the token does not verify after a reload: %v %v", u, ok)
	}
	b, _ := os.ReadFile(path)
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || raw["version"] != 1.0 {
		t.Fatalf("file: %s (%v)", b, err)
	}
	if strings.Contains(string(b), token[len("ahvfs_")+17:]) {
		t.Fatal("the file holds the token's secret")
	}
	// Update without a change does not rewrite the file.
	st, _ := os.Stat(path)
	if err := auth.Update(ctx, path, func(*auth.Users) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(path); !os.SameFile(st, st2) {
		t.Error("an Update that changes nothing rewrote the file")
	}
}

// TestUpdateFailsCleanly: when fn fails or leaves an invalid set, the
// file is unchanged.
func TestUpdateFailsCleanly(t *testing.T) {
	ctx := context.Background()
	path := usersPath(t)
	if err := auth.Update(ctx, path, func(us *auth.Users) error { return us.Add(testUser(t, "alice", auth.RoleAdmin)) }); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	boom := errors.New("boom")
	if err := auth.Update(ctx, path, func(us *auth.Users) error {
		us.Users = nil
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if err := auth.Update(ctx, path, func(us *auth.Users) error {
		us.Users = append(us.Users, us.Users[0]) // the same name twice
		return nil
	}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("Update leaving a duplicate: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("the file changed:\n%s", after)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	err := auth.Update(ctx, path, func(us *auth.Users) error { return us.Add(testUser(t, "alice", auth.RoleOperator)) })
	if !errors.Is(err, auth.ErrUserExists) {
		t.Fatalf("adding alice twice: %v", err)
	}
	if _, err := (&auth.Users{Version: 1}).Remove("bob"); !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("removing an unknown user: %v", err)
	}
}

// TestConcurrentUpdates: Updates from many goroutines at once lose no
// change (each takes the flock, reads, changes, renames in turn).
func TestConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	path := usersPath(t)
	const workers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- auth.Update(ctx, path, func(us *auth.Users) error {
					return us.Add(testUser(t, fmt.Sprintf("u%d-%d", w, i), auth.RoleRestoreFiles))
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	us, err := auth.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(us.Users) != workers*each {
		t.Fatalf("%d users after %d concurrent adds: updates were lost", len(us.Users), workers*each)
	}
}

// TestUpdateWaitsForTheLock: an Update waits while another holds the
// lock, and gives up when its context ends.
func TestUpdateWaitsForTheLock(t *testing.T) {
	path := usersPath(t)
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- auth.Update(context.Background(), path, func(*auth.Users) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- auth.Update(ctx, path, func(*auth.Users) error { return nil }) }()
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with a cancelled context while the lock is held: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNewerVersionRefused: a users file of a newer version is neither read
// nor overwritten.
func TestNewerVersionRefused(t *testing.T) {
	ctx := context.Background()
	path := usersPath(t)
	os.MkdirAll(filepath.Dir(path), 0o700)
	newer := `{"version": 2, "users": [], "groups": []}`
	os.WriteFile(path, []byte(newer), 0o600)
	_, err := auth.Load(ctx, path)
	if !errors.Is(err, auth.ErrNewerVersion) || !strings.Contains(err.Error(), "upgrade ahvfs") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of version 2: %v", err)
	}
	if err := auth.Update(ctx, path, func(*auth.Users) error { return nil }); !errors.Is(err, auth.ErrNewerVersion) {
		t.Fatalf("Update of version 2: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != newer {
		t.Fatalf("the newer file was rewritten: %s", b)
	}
}

// TestLoadErrors: a missing file says how to create one; a file that is
// not a users file says so.
func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	path := usersPath(t)
	_, err := auth.Load(ctx, path)
	if !errors.Is(err, auth.ErrNoUsersFile) || !strings.Contains(err.Error(), "ahvfs user add") {
		t.Fatalf("Load of a missing file: %v", err)
	}
	os.MkdirAll(filepath.Dir(path), 0o700)
	for _, content := range []string{"", "[]", "{}", `{"version": 0}`, `{"version": "1"}`,
		`{"version": 1, "users": [{"name": "a b", "role": "admin", "password": "` + testHash(t) + `"}]}`,
		`{"version": 1, "users": [{"name": "ab", "role": "root", "password": "` + testHash(t) + `"}]}`,
		`{"version": 1, "users": [{"name": "ab", "role": "admin", "password": "hunter2"}]}`,
		`{"version": 1, "users": [{"name": "ab", "role": "admin", "scopes": ["weird:x"], "password": "` + testHash(t) + `"}]}`,
		`{"version": 1, "users": [{"name": "ab", "role": "admin", "password": "` + testHash(t) + `", "tokens": [{"id": "xyz", "sha256": ""}]}]}`,
	} {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := auth.Load(ctx, path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load of %s: %v, want an error naming the file", content, err)
		}
	}
}

// TestValidateName: names are non-empty, at most 64 bytes, without spaces
// or control characters.
func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"ops.team-1@example.com", true},
		{"Zoë", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\u200bb", false}, // zero-width space
		{"a\u00a0b", false}, // no-break space
		{"\xff", false},
	} {
		if err := auth.ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// FuzzParseUsers: the users-file decoder never panics, and a file it
// accepts encodes to a file it accepts again, identically.
func FuzzParseUsers(f *testing.F) {
	h := "$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32
	us := &auth.Users{Version: 1}
	u := auth.User{Name: "alice", Role: auth.RoleOperator, Password: h, Created: time.Unix(1e9, 0).UTC(), Changed: time.Unix(2e9, 5).UTC()}
	for _, s := range []string{"web*", "uuid:0a1b2c3d-0000-4000-8000-000000000001", "category:Env:prod"} {
		sel, _ := auth.ParseScope(s)
		u.Scopes = append(u.Scopes, sel)
	}
	_, tok := auth.NewToken("ci", time.Unix(1.5e9, 0))
	u.Tokens = append(u.Tokens, tok)
	us.Users = append(us.Users, u, auth.User{Name: "bob", Role: auth.RoleRestoreFiles, Password: h})
	good, err := us.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(good),
		`{"version":1,"users":[]}`,
		`{"version":1}`,
		`{"version":2,"users":[]}`,
		`{"version":1,"users":[{"name":"a","role":"admin","password":"` + h + `","created":"2026-01-01T00:00:00+02:00"}]}`,
		`{"version":1,"users":[{"name":"a","role":"admin","password":"` + h + `"},{"name":"a","role":"admin","password":"` + h + `"}]}`,
		`{"version":1,"users":[{"name":"a","role":"nobody","password":"` + h + `"}]}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := auth.ParseUsers(b)
		if err != nil {
			return
		}
		out, err := us.Marshal()
		if err != nil {
			t.Fatalf("an accepted file does not encode: %v", err)
		}
		again, err := auth.ParseUsers(out)
		if err != nil {
			t.Fatalf("the encoding of an accepted file is refused: %v\n%s", err, out)
		}
		out2, err := again.Marshal()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("encoding is not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}
