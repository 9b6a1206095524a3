package auth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Require wraps a handler that performs action. A request passes when:
//
//   - it is authenticated, by "Authorization: Bearer TOKEN" (an API
//     token) or else by the session cookie; otherwise 401 with
//     WWW-Authenticate: Bearer. A request with an Authorization header is
//     judged by it alone, never by a cookie it also carries;
//   - the user still exists and, for a session, has not changed password
//     since the login (the users file is read again when it changes);
//     otherwise 401;
//   - for a session and a method other than GET, HEAD and OPTIONS, it
//     comes from the console's own origin and carries the session's
//     X-CSRF-Token; otherwise 403. Bearer requests need no CSRF token: a
//     browser never sends one on its own;
//   - the user's role allows action; otherwise 403.
//
// Every refusal is audited. The handler finds the user with UserFrom.
func (a *Authenticator) Require(action Action, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev := Event{Action: string(action), Target: r.Method + " " + r.URL.Path, Client: a.clientAddr(r)}
		via := "" // the API token the request came with
		deny := func(code int, detail string) {
			ev.Result, ev.Detail = ResultDenied, detail+via
			a.record(ev)
			msg := detail
			switch code {
			case http.StatusUnauthorized:
				if w.Header().Get("WWW-Authenticate") == "" {
					w.Header().Set("WWW-Authenticate", `Bearer realm="ahvfs"`)
				}
				msg = "authentication required: " + detail
			case http.StatusForbidden:
				msg = "forbidden: " + detail
			}
			writeError(w, code, msg)
		}
		users, err := a.users.get()
		if err != nil {
			a.log.Error("request refused: the users file cannot be used", "err", err)
			ev.Result, ev.Detail = ResultFailed, err.Error()
			a.record(ev)
			writeError(w, http.StatusServiceUnavailable, "the users file cannot be read: see the daemon's log")
			return
		}
		p := &principal{}
		if h := r.Header.Get("Authorization"); h != "" {
			scheme, text, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") {
				deny(http.StatusUnauthorized, fmt.Sprintf("unsupported authorization scheme %.20q: use Bearer with an API token", scheme))
				return
			}
			u, t, ok := users.VerifyToken(strings.TrimSpace(text))
			if !ok {
				if id, _, err := ParseToken(strings.TrimSpace(text)); err == nil {
					via = " (API token " + id + ")"
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="ahvfs", error="invalid_token"`)
				deny(http.StatusUnauthorized, "invalid, revoked or unknown API token")
				return
			}
			if t.Expired(a.now()) {
				ev.User, via = u.Name, " (API token "+t.ID+")"
				w.Header().Set("WWW-Authenticate", `Bearer realm="ahvfs", error="invalid_token"`)
				deny(http.StatusUnauthorized, "API token expired at "+t.Expires.Format(time.RFC3339)+": ask for a new one (ahvfs user token)")
				return
			}
			p.user, p.token = publicCopy(u), t.ID
		} else if ses, ok := a.sessions.Lookup(r); ok {
			ev.User = ses.User
			u := users.Lookup(ses.User)
			if u == nil || userStamp(u) != ses.Stamp {
				a.sessions.Destroy(ses.ID)
				http.SetCookie(w, a.sessions.ClearCookie())
				deny(http.StatusUnauthorized, "session ended: the user was removed or changed password")
				return
			}
			p.user, p.session = publicCopy(u), &ses
		} else {
			detail := "log in, or send an API token"
			if _, err := r.Cookie(SessionCookie); err == nil {
				detail = "the session expired or ended: log in again"
			}
			deny(http.StatusUnauthorized, detail)
			return
		}
		ev.User = p.user.Name
		if p.token != "" {
			via = " (API token " + p.token + ")"
		}
		if p.session != nil && !safeMethod(r.Method) {
			if detail := a.checkCSRF(r, *p.session); detail != "" {
				deny(http.StatusForbidden, detail)
				return
			}
		}
		if !Allowed(p.user.Role, action) {
			deny(http.StatusForbidden, fmt.Sprintf("role %s may not %s", p.user.Role, action))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// safeMethod reports a method that changes nothing, which needs no CSRF
// token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
