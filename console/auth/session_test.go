package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

func requestWith(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "https://console/", nil)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

// TestSessionCookie: the cookie is ahvfs_session, Secure, HttpOnly,
// SameSite=Strict, Path=/, and lives no longer than the session; each
// session has its own random ID and CSRF token.
func TestSessionCookie(t *testing.T) {
	s := auth.NewSessions(auth.SessionOptions{Now: newClock().Now})
	u := testUser(t, "alice", auth.RoleAdmin)
	ses, c := s.Create(&u)
	if c.Name != "ahvfs_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" ||
		c.MaxAge != 12*3600 || c.Value != ses.ID {
		t.Fatalf("cookie %+v", c)
	}
	if len(ses.ID) != 43 || len(ses.CSRF) != 43 || ses.ID == ses.CSRF || ses.User != "alice" {
		t.Fatalf("session %+v: want 32-byte base64url ID and CSRF token", ses)
	}
	ses2, _ := s.Create(&u)
	if ses2.ID == ses.ID || ses2.CSRF == ses.CSRF {
		t.Fatal("two sessions share an ID or a CSRF token")
	}
	got, ok := s.Lookup(requestWith(c))
	if !ok || got.ID != ses.ID || got.CSRF != ses.CSRF {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}
	for _, bad := range []*http.Cookie{nil, {Name: "ahvfs_session", Value: ses.ID + "x"}, {Name: "other", Value: ses.ID}} {
		if _, ok := s.Lookup(requestWith(bad)); ok {
			t.Errorf("Lookup with cookie %v found a session", bad)
		}
	}
	s.Destroy(ses.ID)
	if _, ok := s.Lookup(requestWith(c)); ok {
		t.Fatal("a destroyed session is found")
	}
	if clr := s.ClearCookie(); clr.Name != "ahvfs_session" || clr.MaxAge >= 0 || !clr.Secure {
		t.Fatalf("ClearCookie = %+v", clr)
	}
}

// TestSessionIdleTimeout: a session used within 30 minutes lives on; one
// left alone for 30 minutes is gone.
func TestSessionIdleTimeout(t *testing.T) {
	clk := newClock()
	s := auth.NewSessions(auth.SessionOptions{Now: clk.Now})
	u := testUser(t, "alice", auth.RoleAdmin)
	ses, _ := s.Create(&u)
	for range 5 {
		clk.Advance(29 * time.Minute)
		if _, ok := s.Get(ses.ID); !ok {
			t.Fatal("a session used every 29 minutes expired")
		}
	}
	clk.Advance(30 * time.Minute)
	if _, ok := s.Get(ses.ID); ok {
		t.Fatal("a session idle for 30 minutes is alive")
	}
	if s.Len() != 0 {
		t.Fatalf("the expired session is still held (%d)", s.Len())
	}
}

// TestSessionLifetime: however busy, a session ends 12 hours after its
// login; the limits are options.
func TestSessionLifetime(t *testing.T) {
	clk := newClock()
	s := auth.NewSessions(auth.SessionOptions{Now: clk.Now})
	u := testUser(t, "alice", auth.RoleAdmin)
	ses, _ := s.Create(&u)
	for elapsed := time.Duration(0); elapsed < 12*time.Hour-10*time.Minute; elapsed += 10 * time.Minute {
		clk.Advance(10 * time.Minute)
		if _, ok := s.Get(ses.ID); !ok {
			t.Fatalf("the session ended after %s", elapsed+10*time.Minute)
		}
	}
	clk.Advance(10 * time.Minute)
	if _, ok := s.Get(ses.ID); ok {
		t.Fatal("a session is alive 12 hours after its login")
	}

	short := auth.NewSessions(auth.SessionOptions{Now: clk.Now, IdleTimeout: time.Minute, MaxLifetime: time.Hour})
	ses, c := short.Create(&u)
	if c.MaxAge != 3600 {
		t.Fatalf("cookie MaxAge %d, want the lifetime 3600", c.MaxAge)
	}
	clk.Advance(time.Minute)
	if _, ok := short.Get(ses.ID); ok {
		t.Fatal("IdleTimeout is not applied")
	}
}

// TestSessionsBounded: sessions beyond MaxSessions push out the one idle
// the longest, and expired ones are swept at the next login.
func TestSessionsBounded(t *testing.T) {
	clk := newClock()
	s := auth.NewSessions(auth.SessionOptions{Now: clk.Now, MaxSessions: 3})
	u := testUser(t, "alice", auth.RoleAdmin)
	var ids []string
	for range 3 {
		ses, _ := s.Create(&u)
		ids = append(ids, ses.ID)
		clk.Advance(time.Second)
	}
	s.Get(ids[0]) // ids[1] is now the idlest
	s.Create(&u)
	if s.Len() != 3 {
		t.Fatalf("%d sessions held, want 3", s.Len())
	}
	if _, ok := s.Get(ids[1]); ok {
		t.Fatal("the session idle the longest was kept")
	}
	if _, ok := s.Get(ids[0]); !ok {
		t.Fatal("a recently used session was dropped")
	}
	clk.Advance(time.Hour)
	s.Create(&u)
	if s.Len() != 1 {
		t.Fatalf("%d sessions held after the others expired, want 1", s.Len())
	}
}
