package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
	"unicode/utf8"
)

// Options configures an Authenticator. Zero values mean the defaults.
type Options struct {
	// UsersFile is the users file, read again whenever it changes. Give
	// it or Users.
	UsersFile string
	// Users is a fixed set of users, instead of a file (tests, or a
	// caller that manages users itself). It must not change after New.
	Users *Users
	// Audit receives every login, logout and refusal. Required.
	Audit Audit
	// Sessions tunes the browser sessions (30 minutes idle, 12 hours in
	// all by default).
	Sessions SessionOptions
	// Limiter tunes the login limiter (5 free failures, then 1 s
	// doubling to 15 min, by default).
	Limiter LimiterOptions
	// ConcurrentLogins bounds the password checks running at once: each
	// takes 64 MiB and two cores for up to a third of a second, and a
	// flood of logins must not exhaust the host. Default 2.
	ConcurrentLogins int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed: a request from one of them comes from the last address
	// its header names that is not a trusted proxy (ClientAddrVia).
	// Default none: the peer's address.
	TrustedProxies []netip.Prefix
	// Now is the clock, also of Sessions and Limiter unless they have
	// their own. Default time.Now.
	Now func() time.Time
	// Log receives what cannot go elsewhere: a users file that cannot be
	// read, an audit event that could not be written. Default
	// slog.Default().
	Log *slog.Logger
}

// Validate reports every problem of o at once.
func (o Options) Validate() error {
	var errs []error
	switch {
	case o.UsersFile == "" && o.Users == nil:
		errs = append(errs, errors.New("auth: give a users file or a set of users"))
	case o.UsersFile != "" && o.Users != nil:
		errs = append(errs, errors.New("auth: give a users file or a set of users, not both"))
	case o.Users != nil:
		if err := o.Users.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Audit == nil {
		errs = append(errs, errors.New("auth: an audit log is required"))
	}
	if o.ConcurrentLogins < 0 {
		errs = append(errs, errors.New("auth: ConcurrentLogins is negative"))
	}
	return errors.Join(errs...)
}

// Authenticator guards the console: it logs users in and out (Login,
// Logout), tells a page who it serves (Me), and wraps every other handler
// with the action it performs (Require). It is safe for concurrent use.
type Authenticator struct {
	users    *liveUsers
	sessions *Sessions
	limiter  *Limiter
	audit    Audit
	log      *slog.Logger
	now      func() time.Time
	checks   chan struct{} // a slot per password check running
	origin   *http.CrossOriginProtection
	proxies  []netip.Prefix
}

// New returns an Authenticator, after Options.Validate.
func New(o Options) (*Authenticator, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sessions.Now == nil {
		o.Sessions.Now = o.Now
	}
	if o.Limiter.Now == nil {
		o.Limiter.Now = o.Now
	}
	if o.ConcurrentLogins == 0 {
		o.ConcurrentLogins = 2
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Authenticator{
		users:    &liveUsers{path: o.UsersFile, fixed: o.Users},
		sessions: NewSessions(o.Sessions),
		limiter:  NewLimiter(o.Limiter),
		audit:    o.Audit,
		log:      o.Log,
		now:      o.Now,
		proxies:  o.TrustedProxies,
		checks:   make(chan struct{}, o.ConcurrentLogins),
		origin:   http.NewCrossOriginProtection(),
	}, nil
}

// Close releases the users file held open. The audit log is the caller's.
func (a *Authenticator) Close() error {
	a.users.close()
	return nil
}

// principal is who a request was authenticated as.
type principal struct {
	user    *User    // a copy without password and tokens
	session *Session // nil for a Bearer token
	token   string   // the token's id, for a Bearer token
}

type principalKey struct{}

// UserFrom returns the user a request guarded by Require was
// authenticated as. The copy carries no password hash and no tokens.
func UserFrom(ctx context.Context) (*User, bool) {
	p, ok := ctx.Value(principalKey{}).(*principal)
	if !ok {
		return nil, false
	}
	return p.user, true
}

// publicCopy is u without its secrets.
func publicCopy(u *User) *User {
	c := *u
	c.Password, c.Tokens = "", nil
	return &c
}

// Record writes an event a handler performed for the request (a restore,
// a download), filling in the time, the client and, unless set, the
// authenticated user.
func (a *Authenticator) Record(r *http.Request, e Event) {
	if e.User == "" {
		if u, ok := UserFrom(r.Context()); ok {
			e.User = u.Name
		}
	}
	e.Client = a.clientAddr(r)
	a.record(e)
}

// clientAddr is the address the request comes from, through the trusted
// proxies.
func (a *Authenticator) clientAddr(r *http.Request) string {
	return ClientAddrVia(r, a.proxies)
}

func (a *Authenticator) record(e Event) {
	if e.Time.IsZero() {
		e.Time = a.now().UTC()
	}
	// What a client sends (a path, a user name) is cut short: an
	// unauthenticated client must not fill the log's disk.
	e.User, e.Target, e.Detail, e.Client = clip(e.User), clip(e.Target), clip(e.Detail), clip(e.Client)
	if err := a.audit.Record(e); err != nil {
		a.log.Error("audit event lost", "err", err, "user", e.User, "action", e.Action, "result", e.Result)
	}
}

// writeJSON answers with v as JSON; nothing of it may be cached.
func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// maxAuditField is the longest an audit event's text field gets.
const maxAuditField = 256

// clip cuts s to maxAuditField bytes on a rune boundary, marking the cut.
func clip(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	i := maxAuditField
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
