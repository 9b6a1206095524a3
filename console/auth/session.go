package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// SessionCookie is the name of the browser session's cookie.
const SessionCookie = "ahvfs_session"

// SessionOptions tunes Sessions. Zero values mean the defaults.
type SessionOptions struct {
	// IdleTimeout ends a session not used for this long. Default 30
	// minutes.
	IdleTimeout time.Duration
	// MaxLifetime ends a session this long after its login, however
	// busy. Default 12 hours.
	MaxLifetime time.Duration
	// MaxSessions bounds the sessions held at once; a login beyond it
	// ends the session idle the longest. Default 10000.
	MaxSessions int
	// Now is the clock. Default time.Now; tests pass their own.
	Now func() time.Time
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 12 * time.Hour
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Session is a browser login.
type Session struct {
	// ID is the cookie's value: 32 random bytes, base64url.
	ID string
	// User is the user's name.
	User string
	// CSRF is the token a state-changing request must repeat in the
	// X-CSRF-Token header: 32 random bytes, base64url.
	CSRF string
	// Stamp identifies the user's account and password when the session
	// began; the Authenticator ends the session when the user's no longer
	// matches (the user was removed, or changed password).
	Stamp    string
	Created  time.Time
	LastSeen time.Time
}

// sessionKey is what Sessions index by: a hash of the ID, so that the
// table holds nothing a cookie could be made from.
type sessionKey [sha256.Size]byte

func keyOf(id string) sessionKey { return sha256.Sum256([]byte(id)) }

// Sessions holds the browser sessions in memory. It is safe for
// concurrent use.
type Sessions struct {
	opts      SessionOptions
	mu        sync.Mutex
	m         map[sessionKey]*Session
	lastSweep time.Time
}

// NewSessions returns an empty table.
func NewSessions(opts SessionOptions) *Sessions {
	return &Sessions{opts: opts.withDefaults(), m: map[sessionKey]*Session{}}
}

// Create starts a session for u and returns it with the cookie that
// carries it: Secure, HttpOnly, SameSite=Strict, Path=/, expiring with the
// session's lifetime.
func (s *Sessions) Create(u *User) (Session, *http.Cookie) {
	b := randomBytes(64)
	now := s.opts.Now()
	ses := &Session{
		ID:       base64.RawURLEncoding.EncodeToString(b[:32]),
		CSRF:     base64.RawURLEncoding.EncodeToString(b[32:]),
		User:     u.Name,
		Stamp:    userStamp(u),
		Created:  now,
		LastSeen: now,
	}
	s.mu.Lock()
	s.sweepLocked(now)
	s.m[keyOf(ses.ID)] = ses
	s.mu.Unlock()
	return *ses, s.cookie(ses.ID)
}

// userStamp identifies a user's account and password: it changes when the
// user is removed and added again, or changes password, and so ends the
// sessions begun before.
func userStamp(u *User) string {
	sum := sha256.Sum256([]byte(u.Name + "\x00" + u.Created.UTC().Format(time.RFC3339Nano) + "\x00" + u.Password))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// randomBytes returns n bytes from crypto/rand, which does not fail (Go
// 1.24 and later crash the program rather than return an error).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return b
}

func (s *Sessions) cookie(value string) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   int(s.opts.MaxLifetime / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	}
}

// ClearCookie is the cookie that makes a browser forget its session.
func (s *Sessions) ClearCookie() *http.Cookie {
	c := s.cookie("")
	c.MaxAge = -1
	return c
}

// Lookup returns the live session whose cookie r carries, and marks it
// used now. An expired session is removed.
func (s *Sessions) Lookup(r *http.Request) (Session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Session{}, false
	}
	return s.Get(c.Value)
}

// Get returns the live session with the given ID, and marks it used now.
func (s *Sessions) Get(id string) (Session, bool) {
	now := s.opts.Now()
	k := keyOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	ses, ok := s.m[k]
	if !ok {
		return Session{}, false
	}
	if s.expired(ses, now) {
		delete(s.m, k)
		return Session{}, false
	}
	ses.LastSeen = now
	return *ses, true
}

// Destroy ends the session with the given ID (none: nothing happens).
func (s *Sessions) Destroy(id string) {
	s.mu.Lock()
	delete(s.m, keyOf(id))
	s.mu.Unlock()
}

// Len is the number of sessions held, expired ones not yet swept
// included.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Sessions) expired(ses *Session, now time.Time) bool {
	return now.Sub(ses.LastSeen) >= s.opts.IdleTimeout || now.Sub(ses.Created) >= s.opts.MaxLifetime
}

// sweepLocked drops expired sessions (at most once a minute) and, when the
// table is full, the session idle the longest.
func (s *Sessions) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) >= time.Minute || len(s.m) >= s.opts.MaxSessions {
		s.lastSweep = now
		for k, ses := range s.m {
			if s.expired(ses, now) {
				delete(s.m, k)
			}
		}
	}
	for len(s.m) >= s.opts.MaxSessions {
		var oldest sessionKey
		var at time.Time
		first := true
		for k, ses := range s.m {
			if first || ses.LastSeen.Before(at) {
				oldest, at, first = k, ses.LastSeen, false
			}
		}
		delete(s.m, oldest)
	}
}
