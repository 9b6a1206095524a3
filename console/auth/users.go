package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// UsersVersion is the version of the users file this package writes and
// the newest it reads.
const UsersVersion = 1

// DefaultUsersFile is where `ahvfs user` and the daemon look for the users
// file unless told otherwise.
const DefaultUsersFile = "/etc/ahvfs/users.json"

// MaxNameLength is the longest user name, in bytes.
const MaxNameLength = 64

// Sentinel errors of the users file.
var (
	// ErrNoUsersFile: Load found no users file.
	ErrNoUsersFile = errors.New("no users file")
	// ErrNewerVersion: the users file was written by a newer ahvfs.
	ErrNewerVersion = errors.New("users file of a newer version")
	// ErrNoUser: no user of that name.
	ErrNoUser = errors.New("no such user")
	// ErrUserExists: a user of that name exists already.
	ErrUserExists = errors.New("user exists")
)

// User is one console account.
type User struct {
	Name     string     `json:"name"`
	Role     Role       `json:"role"`
	Scopes   []Selector `json:"scopes,omitempty"` // none: every VM
	Password string     `json:"password"`         // PHC string (HashPassword)
	Tokens   []Token    `json:"tokens,omitempty"`
	Created  time.Time  `json:"created"`
	Changed  time.Time  `json:"changed"` // password, role, scopes or tokens
}

// Users is the content of the users file.
type Users struct {
	Version int    `json:"version"`
	Users   []User `json:"users"`
}

// ValidateName reports a user name that is empty, longer than
// MaxNameLength bytes, not UTF-8, or holds spaces or control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("user name %.20q...: longer than %d bytes", name, MaxNameLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("user name %q is not UTF-8", name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || isControl(r) }):
		return fmt.Errorf("user name %q holds spaces or control characters", name)
	}
	return nil
}

func isControl(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

// NewUser makes a user with a freshly hashed password: the name and role
// are checked, the password must pass CheckPasswordStrength.
func NewUser(name string, role Role, scopes []Selector, password []byte, now time.Time) (User, error) {
	if err := ValidateName(name); err != nil {
		return User{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return User{}, fmt.Errorf("user %s: %w", name, err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", name, err)
	}
	now = now.UTC()
	return User{Name: name, Role: role, Scopes: scopes, Password: hash, Created: now, Changed: now}, nil
}

// Lookup returns the user called name, or nil.
func (us *Users) Lookup(name string) *User {
	for i := range us.Users {
		if us.Users[i].Name == name {
			return &us.Users[i]
		}
	}
	return nil
}

// Add adds u, refusing a name that exists (ErrUserExists) and an invalid
// user.
func (us *Users) Add(u User) error {
	if us.Lookup(u.Name) != nil {
		return fmt.Errorf("user %q: %w", u.Name, ErrUserExists)
	}
	if err := u.validate(); err != nil {
		return err
	}
	us.Users = append(us.Users, u)
	return nil
}

// Remove removes the user called name and its API tokens.
func (us *Users) Remove(name string) (User, error) {
	i := slices.IndexFunc(us.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	u := us.Users[i]
	us.Users = slices.Delete(us.Users, i, i+1)
	return u, nil
}

// SetPassword hashes password as the new password of the user called
// name. The user's browser sessions end (Authenticator); its API tokens
// stay.
func (us *Users) SetPassword(name string, password []byte, now time.Time) error {
	u := us.Lookup(name)
	if u == nil {
		return fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	u.Password, u.Changed = hash, now.UTC()
	return nil
}

// validate checks one user as stored.
func (u *User) validate() error {
	if err := ValidateName(u.Name); err != nil {
		return err
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	for _, s := range u.Scopes {
		if s.kind == 0 {
			return fmt.Errorf("user %s: an empty scope selector", u.Name)
		}
	}
	if _, err := ParsePasswordHash(u.Password); err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	for _, t := range u.Tokens {
		if err := t.validate(); err != nil {
			return fmt.Errorf("user %s: %w", u.Name, err)
		}
	}
	return nil
}

// Validate reports the first problem of a users set: a bad user, a name
// used twice, a token id used twice.
func (us *Users) Validate() error {
	if us.Version != UsersVersion {
		return fmt.Errorf("users version %d, want %d", us.Version, UsersVersion)
	}
	names, tokens := map[string]bool{}, map[string]bool{}
	for i := range us.Users {
		u := &us.Users[i]
		if err := u.validate(); err != nil {
			return err
		}
		if names[u.Name] {
			return fmt.Errorf("user %s appears twice", u.Name)
		}
		names[u.Name] = true
		for _, t := range u.Tokens {
			if tokens[t.ID] {
				return fmt.Errorf("token id %s appears twice", t.ID)
			}
			tokens[t.ID] = true
		}
	}
	return nil
}

// ParseUsers decodes and validates the content of a users file. A file of
// a newer version is refused (ErrNewerVersion).
func ParseUsers(b []byte) (*Users, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case head.Version == nil || *head.Version < 1:
		return nil, errors.New(`not an ahvfs users file (no "version")`)
	case *head.Version > UsersVersion:
		return nil, fmt.Errorf("%w: version %d, and this ahvfs reads version %d: upgrade ahvfs", ErrNewerVersion, *head.Version, UsersVersion)
	}
	us := &Users{}
	if err := json.Unmarshal(b, us); err != nil {
		return nil, err
	}
	if err := us.Validate(); err != nil {
		return nil, err
	}
	return us, nil
}

// Marshal encodes the users as the file holds them: indented JSON, users
// sorted by name.
func (us *Users) Marshal() ([]byte, error) {
	out := Users{Version: us.Version, Users: slices.Clone(us.Users)}
	if out.Users == nil {
		out.Users = []User{}
	}
	slices.SortFunc(out.Users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Load reads and validates the users file at path. Readers take no lock:
// Update replaces the file in one rename. A missing file is ErrNoUsersFile.
func Load(ctx context.Context, path string) (*Users, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %s: add the first user with 'ahvfs user add NAME --role admin --password-file FILE'", ErrNoUsersFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	us, err := ParseUsers(b)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return us, nil
}

// Update changes the users file at path: under an exclusive flock on
// path+".lock" it reads the file (none is an empty set), calls fn, checks
// the result and replaces the file atomically (a temporary file in the
// same directory, fsync, rename, fsync of the directory), mode 0600 and
// the previous file's owner. When fn returns an error nothing is written.
// Concurrent Updates, from goroutines or processes, apply one after the
// other. Waiting for the lock ends with ctx.
func Update(ctx context.Context, path string, fn func(*Users) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	unlock, err := lockFile(ctx, path+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	us := &Users{Version: UsersVersion}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if us, err = ParseUsers(b); err != nil {
			return fmt.Errorf("users file %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read users file: %w", err)
	}
	if err := fn(us); err != nil {
		return err
	}
	us.Version = UsersVersion
	if err := us.Validate(); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	out, err := us.Marshal()
	if err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	if bytes.Equal(out, b) {
		return nil
	}
	if err := atomicfile.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, created 0600 if missing,
// polling so that ctx can end the wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock users file: %w", err)
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock users file %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock users file %s: %w", path, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
