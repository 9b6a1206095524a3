package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// console is an Authenticator behind a real TLS server, over a users file,
// with the tests' clock and an audit log in memory.
type console struct {
	t     *testing.T
	srv   *httptest.Server
	clk   *clock
	audit *auth.MemAudit
	users string // the users file
}

// tokens of the users newConsole makes, by name.
type consoleTokens map[string]string

func newConsole(t *testing.T) (*console, consoleTokens) {
	t.Helper()
	c := &console{t: t, clk: newClock(), audit: &auth.MemAudit{}, users: filepath.Join(t.TempDir(), "users.json")}
	tokens := consoleTokens{}
	err := auth.Update(context.Background(), c.users, func(us *auth.Users) error {
		for _, u := range []auth.User{
			testUser(t, "alice", auth.RoleAdmin),
			testUser(t, "olga", auth.RoleOperator),
			testUser(t, "rita", auth.RoleRestoreFiles, "web*"),
		} {
			if err := us.Add(u); err != nil {
				return err
			}
			tok, err := us.AddToken(u.Name, "test", c.clk.Now())
			if err != nil {
				return err
			}
			tokens[u.Name] = tok
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{UsersFile: c.users, Audit: c.audit, Now: c.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/login", a.Login)
	mux.HandleFunc("/api/v1/logout", a.Logout)
	mux.HandleFunc("/api/v1/me", a.Me)
	for path, act := range map[string]auth.Action{"/api/v1/vms": auth.ActionView, "/api/v1/backup": auth.ActionBackup, "/api/v1/restore": auth.ActionRestore} {
		mux.Handle(path, a.Require(act, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, ok := auth.UserFrom(r.Context())
			if !ok || u.Password != "" || u.Tokens != nil {
				http.Error(w, "no user in the context, or one with secrets", 500)
				return
			}
			fmt.Fprintf(w, "%s did %s", u.Name, act)
		})))
	}
	c.srv = httptest.NewTLSServer(mux)
	t.Cleanup(c.srv.Close)
	return c, tokens
}

// reply is a response read whole.
type reply struct {
	code int
	h    http.Header
	body string
	resp *http.Response
}

// do sends a request with the given cookie, Bearer token and headers.
func (c *console) do(method, path string, cookie *http.Cookie, bearer string, hdr map[string]string) reply {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.send(req)
}

func (c *console) send(req *http.Request) reply {
	c.t.Helper()
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, h: resp.Header, body: string(b), resp: resp}
}

// login posts a JSON login and returns the reply, the session cookie and
// the decoded answer (when 200).
func (c *console) login(user, password string) (reply, *http.Cookie, auth.LoginResponse) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"user": user, "password": password})
	req, _ := http.NewRequest("POST", c.srv.URL+"/api/v1/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	rep := c.send(req)
	var lr auth.LoginResponse
	var cookie *http.Cookie
	if rep.code == 200 {
		if err := json.Unmarshal([]byte(rep.body), &lr); err != nil {
			c.t.Fatalf("login answer %q: %v", rep.body, err)
		}
		for _, ck := range rep.resp.Cookies() {
			if ck.Name == auth.SessionCookie {
				cookie = ck
			}
		}
	}
	return rep, cookie, lr
}

func (c *console) mustLogin(user string) (*http.Cookie, string) {
	c.t.Helper()
	rep, cookie, lr := c.login(user, testPassword)
	if rep.code != 200 || cookie == nil || lr.CSRF == "" {
		c.t.Fatalf("login of %s: %d %s (cookie %v)", user, rep.code, rep.body, cookie)
	}
	return &http.Cookie{Name: cookie.Name, Value: cookie.Value}, lr.CSRF
}

// lastEvent returns the last audit event, failing when there is none.
func (c *console) lastEvent() auth.Event {
	c.t.Helper()
	ev := c.audit.Events()
	if len(ev) == 0 {
		c.t.Fatal("nothing was audited")
	}
	return ev[len(ev)-1]
}

// wantEvent checks the last audit event.
func (c *console) wantEvent(user, action string, res auth.Result, detail string) {
	c.t.Helper()
	e := c.lastEvent()
	if e.User != user || e.Action != action || e.Result != res || !strings.Contains(e.Detail, detail) || e.Client != "127.0.0.1" || e.Time.IsZero() {
		c.t.Fatalf("audited %+v, want user %q action %q result %q detail ~%q from 127.0.0.1", e, user, action, res, detail)
	}
}

// TestLoginAndCSRF: a login sets the session cookie (Secure, HttpOnly,
// SameSite=Strict) and gives the CSRF token; a GET with the cookie passes,
// a POST passes only with the token, from the console's own origin; each
// refusal is audited.
func TestLoginAndCSRF(t *testing.T) {
	c, _ := newConsole(t)
	rep, cookie, lr := c.login("olga", testPassword)
	if rep.code != 200 || cookie == nil {
		t.Fatalf("login: %d %s", rep.code, rep.body)
	}
	if !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("session cookie %+v", cookie)
	}
	if lr.User != "olga" || lr.Role != auth.RoleOperator || len(lr.CSRF) != 43 || strings.Join(actionNames(lr.Actions), ",") != "view,browse,download,backup,restore" {
		t.Fatalf("login answer %+v", lr)
	}
	if rep.h.Get("Cache-Control") != "no-store" {
		t.Error("the login answer may be cached")
	}
	c.wantEvent("olga", "login", auth.ResultOK, "")
	ck := &http.Cookie{Name: cookie.Name, Value: cookie.Value}

	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 200 || rep.body != "olga did view" {
		t.Fatalf("GET with the cookie: %d %s", rep.code, rep.body)
	}
	n := len(c.audit.Events())
	if rep := c.do("POST", "/api/v1/backup", ck, "", nil); rep.code != 403 || !strings.Contains(rep.body, "X-CSRF-Token") {
		t.Fatalf("POST without X-CSRF-Token: %d %s", rep.code, rep.body)
	}
	if len(c.audit.Events()) != n+1 {
		t.Fatal("the refusal was not audited")
	}
	c.wantEvent("olga", "backup", auth.ResultDenied, "missing X-CSRF-Token")
	if e := c.lastEvent(); e.Target != "POST /api/v1/backup" {
		t.Fatalf("audited target %q", e.Target)
	}
	if rep := c.do("POST", "/api/v1/backup", ck, "", map[string]string{"X-CSRF-Token": lr.CSRF + "x"}); rep.code != 403 {
		t.Fatalf("POST with a wrong X-CSRF-Token: %d %s", rep.code, rep.body)
	}
	c.wantEvent("olga", "backup", auth.ResultDenied, "wrong X-CSRF-Token")
	if rep := c.do("POST", "/api/v1/backup", ck, "", map[string]string{"X-CSRF-Token": lr.CSRF, "Sec-Fetch-Site": "cross-site"}); rep.code != 403 {
		t.Fatalf("cross-site POST with the token: %d %s", rep.code, rep.body)
	}
	c.wantEvent("olga", "backup", auth.ResultDenied, "cross-origin")
	if rep := c.do("POST", "/api/v1/backup", ck, "", map[string]string{"X-CSRF-Token": lr.CSRF}); rep.code != 200 || rep.body != "olga did backup" {
		t.Fatalf("POST with X-CSRF-Token: %d %s", rep.code, rep.body)
	}
	// Me gives the page its user and CSRF token back after a reload.
	rep = c.do("GET", "/api/v1/me", ck, "", nil)
	var me auth.LoginResponse
	if json.Unmarshal([]byte(rep.body), &me); rep.code != 200 || me.User != "olga" || me.CSRF != lr.CSRF {
		t.Fatalf("me: %d %s", rep.code, rep.body)
	}
	// Logout needs the token too, then the cookie is dead.
	if rep := c.do("POST", "/api/v1/logout", ck, "", nil); rep.code != 403 {
		t.Fatalf("logout without X-CSRF-Token: %d %s", rep.code, rep.body)
	}
	if rep := c.do("POST", "/api/v1/logout", ck, "", map[string]string{"X-CSRF-Token": lr.CSRF}); rep.code != 204 {
		t.Fatalf("logout: %d %s", rep.code, rep.body)
	}
	c.wantEvent("olga", "logout", auth.ResultOK, "")
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 401 {
		t.Fatalf("GET after logout: %d %s", rep.code, rep.body)
	}
}

func actionNames(acts []auth.Action) []string {
	var out []string
	for _, a := range acts {
		out = append(out, string(a))
	}
	return out
}

// TestUnauthenticated: no credentials, a bad token, another scheme: 401
// with a Bearer challenge, audited.
func TestUnauthenticated(t *testing.T) {
	c, tokens := newConsole(t)
	rep := c.do("GET", "/api/v1/vms", nil, "", nil)
	if rep.code != 401 || !strings.HasPrefix(rep.h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no credentials: %d %v %s", rep.code, rep.h, rep.body)
	}
	c.wantEvent("", "view", auth.ResultDenied, "log in")
	for _, bad := range tamper(tokens["alice"])[:30] {
		if rep := c.do("GET", "/api/v1/vms", nil, bad, nil); rep.code != 401 {
			t.Fatalf("tampered token %q: %d %s", bad, rep.code, rep.body)
		}
	}
	if rep := c.do("GET", "/api/v1/vms", nil, "ahvfs_", nil); rep.code != 401 || !strings.Contains(rep.h.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("bad token: %d %v", rep.code, rep.h)
	}
	c.wantEvent("", "view", auth.ResultDenied, "API token")
	rep = c.do("GET", "/api/v1/vms", nil, "", map[string]string{"Authorization": "Basic YWxpY2U6eA=="})
	if rep.code != 401 {
		t.Fatalf("Basic: %d %s", rep.code, rep.body)
	}
	// An Authorization header is judged alone: a good cookie does not
	// rescue a bad token.
	ck, _ := c.mustLogin("alice")
	if rep := c.do("GET", "/api/v1/vms", ck, "ahvfs_nope", nil); rep.code != 401 {
		t.Fatalf("bad token with a good cookie: %d %s", rep.code, rep.body)
	}
	if rep := c.do("GET", "/api/v1/vms", &http.Cookie{Name: auth.SessionCookie, Value: "forged"}, "", nil); rep.code != 401 {
		t.Fatalf("forged cookie: %d %s", rep.code, rep.body)
	}
	c.wantEvent("", "view", auth.ResultDenied, "session expired")
	if rep := c.do("GET", "/api/v1/login", nil, "", nil); rep.code != 405 {
		t.Fatalf("GET /login: %d", rep.code)
	}
}

// TestBearerToken: an API token authenticates without a session or a CSRF
// token, also for POST, within its user's role.
func TestBearerToken(t *testing.T) {
	c, tokens := newConsole(t)
	if rep := c.do("POST", "/api/v1/backup", nil, tokens["olga"], nil); rep.code != 200 || rep.body != "olga did backup" {
		t.Fatalf("POST with a token: %d %s", rep.code, rep.body)
	}
	rep := c.do("GET", "/api/v1/me", nil, tokens["alice"], nil)
	var me auth.LoginResponse
	if json.Unmarshal([]byte(rep.body), &me); rep.code != 200 || me.User != "alice" || me.CSRF != "" || len(me.Actions) != 8 {
		t.Fatalf("me with a token: %d %s", rep.code, rep.body)
	}
	if rep := c.do("POST", "/api/v1/restore", nil, tokens["rita"], nil); rep.code != 403 {
		t.Fatalf("restore with a restore-files token: %d %s", rep.code, rep.body)
	}
	c.wantEvent("rita", "restore", auth.ResultDenied, "role restore-files may not restore")
	if e := c.lastEvent(); !strings.Contains(e.Detail, "API token") {
		t.Fatalf("the refusal does not name the token: %+v", e)
	}
}

// TestTokenExpires: a token made to expire works until then, and is
// refused (401, audited) from then on; one made in the past is refused.
func TestTokenExpires(t *testing.T) {
	c, _ := newConsole(t)
	var tok string
	err := auth.Update(context.Background(), c.users, func(us *auth.Users) error {
		if _, err := us.AddTokenUntil("olga", "", c.clk.Now(), c.clk.Now()); err == nil {
			t.Error("a token that expires now was made")
		}
		var err error
		tok, err = us.AddTokenUntil("olga", "cron", c.clk.Now(), c.clk.Now().Add(24*time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.clk.Advance(24*time.Hour - time.Second)
	if rep := c.do("GET", "/api/v1/vms", nil, tok, nil); rep.code != 200 {
		t.Fatalf("the token a second before it expires: %d %s", rep.code, rep.body)
	}
	c.clk.Advance(time.Second)
	if rep := c.do("GET", "/api/v1/vms", nil, tok, nil); rep.code != 401 || !strings.Contains(rep.body, "expired") {
		t.Fatalf("the token once expired: %d %s", rep.code, rep.body)
	}
	c.wantEvent("olga", "view", auth.ResultDenied, "API token expired")
}

// TestRoleRefused: a restore-files user may view but not restore; the
// refusal is audited.
func TestRoleRefused(t *testing.T) {
	c, _ := newConsole(t)
	ck, csrf := c.mustLogin("rita")
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 200 {
		t.Fatalf("view: %d %s", rep.code, rep.body)
	}
	rep := c.do("POST", "/api/v1/restore", ck, "", map[string]string{"X-CSRF-Token": csrf})
	if rep.code != 403 || !strings.Contains(rep.body, "may not restore") {
		t.Fatalf("restore as restore-files: %d %s", rep.code, rep.body)
	}
	c.wantEvent("rita", "restore", auth.ResultDenied, "role restore-files may not restore")
	if e := c.lastEvent(); e.Target != "POST /api/v1/restore" {
		t.Fatalf("audited target %q", e.Target)
	}
}

// TestLoginRateLimit: five wrong passwords are 401; the sixth attempt,
// even with the right password, is 429 with Retry-After; once the clock
// has moved past it, the right password works. Every attempt is audited.
func TestLoginRateLimit(t *testing.T) {
	c, _ := newConsole(t)
	for i := range 5 {
		rep, _, _ := c.login("alice", fmt.Sprintf("wrong password %d", i))
		if rep.code != 401 {
			t.Fatalf("wrong password %d: %d %s", i+1, rep.code, rep.body)
		}
		c.wantEvent("alice", "login", auth.ResultFailed, "wrong password")
	}
	rep, cookie, _ := c.login("alice", testPassword)
	if rep.code != 429 || rep.h.Get("Retry-After") != "1" || cookie != nil {
		t.Fatalf("sixth attempt: %d Retry-After %q %s", rep.code, rep.h.Get("Retry-After"), rep.body)
	}
	c.wantEvent("alice", "login", auth.ResultDenied, "too many failed logins")
	if got := len(c.audit.Events()); got != 6 {
		t.Fatalf("%d audit events for 6 attempts", got)
	}
	c.clk.Advance(time.Second)
	if rep, cookie, _ := c.login("alice", testPassword); rep.code != 200 || cookie == nil {
		t.Fatalf("login after the wait: %d %s", rep.code, rep.body)
	}
	c.wantEvent("alice", "login", auth.ResultOK, "")
	// Unknown users are audited and limited alike.
	if rep, _, _ := c.login("mallory", testPassword); rep.code != 401 || !strings.Contains(rep.body, "wrong user name or password") {
		t.Fatalf("unknown user: %d %s", rep.code, rep.body)
	}
	c.wantEvent("mallory", "login", auth.ResultFailed, "no such user")
}

// TestLoginBurst: wrong passwords sent all at once are limited too: no
// more are checked than the free failures and the checks already running
// (two at a time by default).
func TestLoginBurst(t *testing.T) {
	c, _ := newConsole(t)
	const n = 16
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"user": "alice", "password": "wrong password %d"}`, i)
			req, _ := http.NewRequest("POST", c.srv.URL+"/api/v1/login", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for code := range codes {
		count[code]++
	}
	if count[401] < 5 || count[401] > 6 || count[401]+count[429] != n {
		t.Fatalf("%d concurrent wrong logins: %v; want 5 or 6 checked (401), the rest 429", n, count)
	}
}

// TestLoginForm: a form login works like JSON; a body of another type
// is refused.
func TestLoginForm(t *testing.T) {
	c, _ := newConsole(t)
	form := url.Values{"user": {"alice"}, "password": {testPassword}}
	req, _ := http.NewRequest("POST", c.srv.URL+"/api/v1/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rep := c.send(req); rep.code != 200 || !strings.Contains(rep.body, "csrf_token") {
		t.Fatalf("form login: %d %s", rep.code, rep.body)
	}
	req, _ = http.NewRequest("POST", c.srv.URL+"/api/v1/login", strings.NewReader("alice "+testPassword))
	req.Header.Set("Content-Type", "text/plain")
	if rep := c.send(req); rep.code != 400 {
		t.Fatalf("text login: %d %s", rep.code, rep.body)
	}
	req, _ = http.NewRequest("POST", c.srv.URL+"/api/v1/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if rep := c.send(req); rep.code != 403 {
		t.Fatalf("cross-site form login: %d %s", rep.code, rep.body)
	}
}

// TestSessionExpiresThroughMiddleware: the session cookie stops working
// 30 minutes after the last request.
func TestSessionExpiresThroughMiddleware(t *testing.T) {
	c, _ := newConsole(t)
	ck, _ := c.mustLogin("alice")
	c.clk.Advance(29 * time.Minute)
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 200 {
		t.Fatalf("after 29 minutes: %d", rep.code)
	}
	c.clk.Advance(30 * time.Minute)
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 401 {
		t.Fatalf("after 30 idle minutes: %d", rep.code)
	}
}

// TestUserDeletedTakesEffect: removing a user from the file (what `ahvfs
// user del` does) ends its session and its token at the next request;
// changing the password ends sessions but not tokens; a user added again
// under the same name does not inherit the old session.
func TestUserDeletedTakesEffect(t *testing.T) {
	c, tokens := newConsole(t)
	ctx := context.Background()
	ck, _ := c.mustLogin("olga")
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 200 {
		t.Fatalf("session: %d", rep.code)
	}
	if rep := c.do("GET", "/api/v1/vms", nil, tokens["olga"], nil); rep.code != 200 {
		t.Fatalf("token: %d", rep.code)
	}
	if err := auth.Update(ctx, c.users, func(us *auth.Users) error { _, err := us.Remove("olga"); return err }); err != nil {
		t.Fatal(err)
	}
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 401 {
		t.Fatalf("session of a removed user: %d %s", rep.code, rep.body)
	}
	c.wantEvent("olga", "view", auth.ResultDenied, "removed")
	if rep := c.do("GET", "/api/v1/vms", nil, tokens["olga"], nil); rep.code != 401 {
		t.Fatalf("token of a removed user: %d %s", rep.code, rep.body)
	}
	if rep, _, _ := c.login("olga", testPassword); rep.code != 401 {
		t.Fatalf("login of a removed user: %d", rep.code)
	}

	// Removed and added again: the old session stays dead.
	ck, _ = c.mustLogin("alice")
	if err := auth.Update(ctx, c.users, func(us *auth.Users) error {
		if _, err := us.Remove("alice"); err != nil {
			return err
		}
		u := testUser(t, "alice", auth.RoleAdmin)
		u.Created = u.Created.Add(time.Hour)
		return us.Add(u)
	}); err != nil {
		t.Fatal(err)
	}
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 401 {
		t.Fatalf("session of a user removed and added again: %d %s", rep.code, rep.body)
	}

	// A new password ends the sessions, not the tokens.
	ck, _ = c.mustLogin("rita")
	if err := auth.Update(ctx, c.users, func(us *auth.Users) error {
		us.Lookup("rita").Password = "$argon2id$v=19$m=65536,t=3,p=2$" + salt16 + "$" + key32
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rep := c.do("GET", "/api/v1/vms", ck, "", nil); rep.code != 401 {
		t.Fatalf("session after a password change: %d %s", rep.code, rep.body)
	}
	if rep := c.do("GET", "/api/v1/vms", nil, tokens["rita"], nil); rep.code != 200 {
		t.Fatalf("token after a password change: %d %s", rep.code, rep.body)
	}
}

// TestBrokenUsersFileFailsClosed: a users file that becomes invalid
// refuses every request (503) until it is fixed.
func TestBrokenUsersFileFailsClosed(t *testing.T) {
	c, tokens := newConsole(t)
	good := mustRead(t, c.users)
	writeAtomic(t, c.users, `{"version": 1, "users": [{"name": "x y"}]}`)
	if rep := c.do("GET", "/api/v1/vms", nil, tokens["alice"], nil); rep.code != 503 {
		t.Fatalf("broken users file: %d %s", rep.code, rep.body)
	}
	writeAtomic(t, c.users, good)
	if rep := c.do("GET", "/api/v1/vms", nil, tokens["alice"], nil); rep.code != 200 {
		t.Fatalf("fixed users file: %d %s", rep.code, rep.body)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := auth.Options{ConcurrentLogins: -1}.Validate()
	for _, want := range []string{"users file", "audit", "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of empty options: %v, want it to mention %q", err, want)
		}
	}
	if err := (auth.Options{UsersFile: "x", Users: &auth.Users{Version: 1}, Audit: &auth.MemAudit{}}).Validate(); err == nil {
		t.Error("a file and a set at once is accepted")
	}
}
