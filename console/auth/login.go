package auth

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// dummyHash is checked instead of a password hash when a login names no
// user, so that the answer takes as long as for a user that exists.
var dummyHash = PasswordHash{MemoryKiB: hashMemoryKiB, Time: hashTime, Threads: hashThreads,
	Salt: make([]byte, hashSaltLen), Key: make([]byte, hashKeyLen)}.String()

// maxLoginBody bounds a login request's body.
const maxLoginBody = 64 << 10

// LoginResponse is what Login and Me answer.
type LoginResponse struct {
	User    string   `json:"user"`
	Role    Role     `json:"role"`
	Scopes  []string `json:"scopes"`  // empty: every VM
	Actions []Action `json:"actions"` // what the role may do, for the page to offer
	// CSRF is the session's token, to send as X-CSRF-Token with every
	// state-changing request (absent for a Bearer token).
	CSRF string `json:"csrf_token,omitempty"`
	// Expires is when the session ends at the latest.
	Expires time.Time `json:"expires,omitzero"`
}

func (a *Authenticator) response(u *User, s *Session) LoginResponse {
	resp := LoginResponse{User: u.Name, Role: u.Role, Scopes: []string{}, Actions: []Action{}}
	for _, sel := range u.Scopes {
		resp.Scopes = append(resp.Scopes, sel.String())
	}
	for _, act := range Actions() {
		if Allowed(u.Role, act) {
			resp.Actions = append(resp.Actions, act)
		}
	}
	if s != nil {
		resp.CSRF = s.CSRF
		resp.Expires = s.Created.Add(a.sessions.opts.MaxLifetime).UTC()
	}
	return resp
}

// Login is the login handler: POST with {"user": ..., "password": ...} as
// JSON, or the fields user and password as a form. On success it sets the
// session cookie and answers a LoginResponse (with the CSRF token); a
// wrong name or password is 401, too many recent failures 429 with
// Retry-After. Every attempt is audited.
func (a *Authenticator) Login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "log in with POST")
		return
	}
	ev := Event{Action: "login", Target: r.Method + " " + r.URL.Path, Client: a.clientAddr(r)}
	fail := func(code int, res Result, detail, msg string) {
		ev.Result, ev.Detail = res, detail
		a.record(ev)
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ahvfs"`)
		}
		writeError(w, code, msg)
	}
	if err := a.origin.Check(r); err != nil {
		fail(http.StatusForbidden, ResultDenied, "cross-origin request", "cross-origin login refused")
		return
	}
	name, password, err := readCredentials(w, r)
	ev.User = auditName(name)
	if err != nil {
		fail(http.StatusBadRequest, ResultFailed, err.Error(), err.Error())
		return
	}
	limited := func() bool {
		wait, ok := a.limiter.Allow(name, ev.Client)
		if !ok {
			secs := int64(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			fail(http.StatusTooManyRequests, ResultDenied, fmt.Sprintf("too many failed logins: retry after %d s", secs),
				fmt.Sprintf("too many failed logins: retry in %d seconds", secs))
		}
		return !ok
	}
	if limited() {
		return
	}
	select {
	case a.checks <- struct{}{}:
		defer func() { <-a.checks }()
	case <-r.Context().Done():
		return
	}
	// Again: attempts sent together all passed the first check, and the
	// failures of those that went first count now.
	if limited() {
		return
	}
	users, err := a.users.get()
	if err != nil {
		a.log.Error("login refused: the users file cannot be used", "err", err)
		fail(http.StatusServiceUnavailable, ResultFailed, err.Error(), "the users file cannot be read: see the daemon's log")
		return
	}
	u := users.Lookup(name)
	hash := dummyHash
	if u != nil {
		hash = u.Password
	}
	ok, err := CheckPassword(hash, []byte(password))
	if err != nil {
		a.log.Error("login: stored password hash", "user", name, "err", err)
	}
	if u == nil || !ok {
		a.limiter.Failure(name, ev.Client)
		detail := "wrong password"
		if u == nil {
			detail = "no such user"
		}
		fail(http.StatusUnauthorized, ResultFailed, detail, "wrong user name or password")
		return
	}
	a.limiter.Success(name, ev.Client)
	if old, ok := a.sessions.Lookup(r); ok {
		a.sessions.Destroy(old.ID) // a login always starts a new session
	}
	ses, cookie := a.sessions.Create(u)
	http.SetCookie(w, cookie)
	ev.Result = ResultOK
	a.record(ev)
	writeJSON(w, http.StatusOK, a.response(u, &ses))
}

// auditName is a name a login gave, as the audit log records it: whole
// when it could be a user's, else cut (it may be anything).
func auditName(name string) string {
	if len(name) <= MaxNameLength {
		return name
	}
	return strings.ToValidUTF8(name[:MaxNameLength], "") + "..."
}

// readCredentials reads the user name and password of a login request.
func readCredentials(w http.ResponseWriter, r *http.Request) (name, password string, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var c struct {
			User     string `json:"user"`
			Password string `json:"password"`
		}
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			return "", "", errors.New("login: the body is not JSON {\"user\": ..., \"password\": ...}")
		}
		name, password = c.User, c.Password
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return "", "", errors.New("login: the form cannot be read")
		}
		name, password = r.PostForm.Get("user"), r.PostForm.Get("password")
	default:
		return "", "", errors.New("login: send JSON (application/json) or a form (application/x-www-form-urlencoded)")
	}
	if name == "" || password == "" {
		return name, "", errors.New("login: give a user name and a password")
	}
	return name, password, nil
}

// Logout ends the session of the request's cookie (POST, with the
// session's X-CSRF-Token) and tells the browser to drop the cookie. Without
// a live session it only does the latter.
func (a *Authenticator) Logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "log out with POST")
		return
	}
	if ses, ok := a.sessions.Lookup(r); ok {
		ev := Event{User: ses.User, Action: "logout", Target: r.Method + " " + r.URL.Path, Client: a.clientAddr(r)}
		if detail := a.checkCSRF(r, ses); detail != "" {
			ev.Result, ev.Detail = ResultDenied, detail
			a.record(ev)
			writeError(w, http.StatusForbidden, detail)
			return
		}
		a.sessions.Destroy(ses.ID)
		ev.Result = ResultOK
		a.record(ev)
	}
	http.SetCookie(w, a.sessions.ClearCookie())
	w.WriteHeader(http.StatusNoContent)
}

// checkCSRF returns why a cookie-authenticated state-changing request is
// refused, or "": it must come from the console's own origin and repeat
// the session's CSRF token in X-CSRF-Token.
func (a *Authenticator) checkCSRF(r *http.Request, ses Session) string {
	if err := a.origin.Check(r); err != nil {
		return "cross-origin request"
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		return "missing X-CSRF-Token"
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(ses.CSRF)) != 1 {
		return "wrong X-CSRF-Token"
	}
	return ""
}

// Me answers who the request is authenticated as (a LoginResponse; with
// the CSRF token for a browser session, which a page reloads from here).
// Any role may ask.
func (a *Authenticator) Me(w http.ResponseWriter, r *http.Request) {
	a.Require(ActionView, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.Context().Value(principalKey{}).(*principal)
		writeJSON(w, http.StatusOK, a.response(p.user, p.session))
	})).ServeHTTP(w, r)
}
