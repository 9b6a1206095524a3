package prismsim

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

type obj = map[string]any

const (
	v3Prefix    = "/api/nutanix/v3"
	v2Prefix    = "/PrismGateway/services/rest/v2.0"
	v2AltPrefix = "/api/nutanix/v2.0"
	sessionName = "NTNX_IGW_SESSION"
)

// api families, for error envelopes.
type family int

const (
	famOther family = iota
	famV3
	famV2
	famV4
	famSim
)

func familyOf(path string) family {
	switch {
	case strings.HasPrefix(path, v3Prefix+"/"):
		return famV3
	case strings.HasPrefix(path, v2Prefix+"/"), strings.HasPrefix(path, v2AltPrefix+"/"):
		return famV2
	case strings.HasPrefix(path, "/api/"):
		return famV4
	case strings.HasPrefix(path, "/sim/"):
		return famSim
	}
	return famOther
}

// v4Namespace returns the namespace of a v4 path (/api/<ns>/...).
func v4Namespace(path string) string {
	p := strings.TrimPrefix(path, "/api/")
	if i := strings.IndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return p
}

func (s *Sim) handler() http.Handler {
	mux := http.NewServeMux()
	s.routesV3(mux)
	s.routesV2(mux)
	s.routesV4(mux)
	s.routesSim(mux)
	mux.HandleFunc("GET /sim/inventory", s.simInventory)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.notFound(w, r, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fam := familyOf(r.URL.Path)
		if fam != famSim {
			s.busy.Add(1)
			s.lastBusy.Store(time.Now().UnixNano())
			defer func() {
				s.lastBusy.Store(time.Now().UnixNano())
				s.busy.Add(-1)
			}()
		}
		if fam != famSim && fam != famOther {
			if s.injectFault(w, r) {
				return
			}
		}
		if !s.authenticate(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
	return simkit.RecoverPanics(serve, s.logf, func(w http.ResponseWriter, r *http.Request, v any) {
		s.apiError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", fmt.Sprint(v))
	})
}

// ---------- auth ----------

type authState struct {
	mu       sync.Mutex
	sessions map[string]time.Time
	jwtKey   []byte
}

func (a *authState) init() {
	a.sessions = map[string]time.Time{}
	a.jwtKey = make([]byte, 32)
	if _, err := rand.Read(a.jwtKey); err != nil {
		panic(err)
	}
}

func randToken() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// isComputePath reports whether path is a PE-side v4 content action that is
// authorised by the discover-cluster JWT only.
func isComputePath(path string) bool {
	return strings.HasPrefix(path, "/api/dataprotection/") && strings.Contains(path, "/content/") &&
		(strings.HasSuffix(path, "/$actions/compute-changed-regions") || strings.HasSuffix(path, "/vss-metadata"))
}

func (s *Sim) authenticate(w http.ResponseWriter, r *http.Request) bool {
	if isComputePath(r.URL.Path) {
		c, err := r.Cookie(sessionName)
		if err != nil {
			s.unauthorized(w, r, "the NTNX_IGW_SESSION cookie with the discover-cluster token is required")
			return false
		}
		if msg := s.checkJWT(strings.Trim(c.Value, `"'`), r.URL.Path); msg != "" {
			s.unauthorized(w, r, msg)
			return false
		}
		return true
	}
	now := time.Now()
	if c, err := r.Cookie(sessionName); err == nil {
		s.auth.mu.Lock()
		exp, ok := s.auth.sessions[c.Value]
		s.auth.mu.Unlock()
		if ok && now.Before(exp) {
			return true
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		s.unauthorized(w, r, "Authentication required")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(user), []byte("admin")) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.password)) != 1 {
		s.unauthorized(w, r, "invalid Nutanix credentials")
		return false
	}
	tok := randToken()
	s.auth.mu.Lock()
	for k, exp := range s.auth.sessions {
		if now.After(exp) {
			delete(s.auth.sessions, k)
		}
	}
	s.auth.sessions[tok] = now.Add(s.opts.SessionTTL)
	s.auth.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionName, Value: tok, Path: "/", Secure: true, HttpOnly: true,
		MaxAge: int(s.opts.SessionTTL / time.Second), SameSite: http.SameSiteLaxMode})
	return true
}

// unauthorized answers 401 with a non-JSON body, as Prism does.
func (s *Sim) unauthorized(w http.ResponseWriter, _ *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="Intent Gateway Login Required"`)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, msg+"\n")
}

// ExpireSessions forgets every session cookie, as a 15-minute expiry would.
func (s *Sim) ExpireSessions() {
	s.auth.mu.Lock()
	s.auth.sessions = map[string]time.Time{}
	s.auth.mu.Unlock()
}

const jwtScope = "/api/dataprotection/v4.0/content"

func (s *Sim) makeJWT(rpExtID string) string {
	enc := base64.RawURLEncoding
	hdr := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	now := time.Now()
	claims, _ := json.Marshal(obj{"iss": "prismsim", "sub": "admin", "aud": "dataprotection",
		"scope": jwtScope, "rp": rpExtID, "iat": now.Unix(), "exp": now.Add(s.opts.SessionTTL).Unix()})
	body := hdr + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, s.auth.jwtKey)
	mac.Write([]byte(body))
	return body + "." + enc.EncodeToString(mac.Sum(nil))
}

// checkJWT returns "" when tok is a valid token for path, else the reason.
func (s *Sim) checkJWT(tok, path string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "Invalid token"
	}
	enc := base64.RawURLEncoding
	mac := hmac.New(sha256.New, s.auth.jwtKey)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := enc.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return "Invalid token signature"
	}
	raw, err := enc.DecodeString(parts[1])
	if err != nil {
		return "Invalid token"
	}
	var c struct {
		Scope string `json:"scope"`
		Exp   int64  `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return "Invalid token"
	}
	if time.Now().Unix() > c.Exp {
		return "Token expired"
	}
	if !strings.HasPrefix(path, c.Scope+"/") {
		return "Scope claim value does not match API base path"
	}
	return ""
}

// ---------- responses ----------

// apiError answers in the envelope of the request's API family.
func (s *Sim) apiError(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	switch familyOf(r.URL.Path) {
	case famV3:
		v3Error(w, code, v3KindOf(r.URL.Path), reason, msg)
	case famV2:
		v2Error(w, code, msg)
	case famV4:
		v4Error(w, r, code, msg)
	default:
		simkit.WriteJSON(w, code, obj{"code": code, "reason": reason, "message": msg})
	}
}

func (s *Sim) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	s.apiError(w, r, http.StatusNotFound, "ENTITY_NOT_FOUND", msg)
}

// v3KindOf guesses the entity kind of a v3 path for error envelopes.
func v3KindOf(path string) string {
	p := strings.TrimPrefix(path, v3Prefix+"/")
	seg := p
	if i := strings.IndexByte(p, '/'); i >= 0 {
		seg = p[:i]
	}
	switch seg {
	case "vms":
		return "vm"
	case "vm_snapshots":
		return "vm_snapshot"
	case "clusters":
		return "cluster"
	case "subnets":
		return "subnet"
	case "images":
		return "image"
	case "tasks":
		return "task"
	case "data":
		return "changed_regions"
	case "users":
		return "user"
	}
	return strings.TrimSuffix(seg, "s")
}

func v3Error(w http.ResponseWriter, code int, kind, reason, msg string) {
	simkit.WriteJSON(w, code, obj{
		"api_version": "3.1",
		"code":        code,
		"kind":        kind,
		"state":       "ERROR",
		"message_list": []obj{{
			"message": msg,
			"reason":  reason,
			"details": obj{},
		}},
	})
}

func v2Error(w http.ResponseWriter, code int, msg string) {
	ec := 1202
	if code == http.StatusNotFound {
		ec = 1201
	}
	simkit.WriteJSON(w, code, obj{"message": msg, "error_code": obj{"code": ec, "help_url": "http://portal.nutanix.com"}})
}

// decodeJSON decodes the request body into v. Type mismatches give 422 as on
// Prism ("is not of type 'integer'"); malformed JSON gives 400.
func (s *Sim) decodeJSON(w http.ResponseWriter, r *http.Request, v any, required bool) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		s.apiError(w, r, http.StatusBadRequest, "INVALID_REQUEST", "read body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			s.apiError(w, r, http.StatusUnprocessableEntity, "VALIDATION_ERROR", "request body is required")
			return false
		}
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			s.apiError(w, r, http.StatusUnprocessableEntity, "VALIDATION_ERROR",
				fmt.Sprintf("%s: is not of type '%s'", te.Field, jsonTypeName(te.Type.Kind().String())))
			return false
		}
		s.apiError(w, r, http.StatusBadRequest, "INVALID_DATA_FORMAT", "invalid JSON: "+err.Error())
		return false
	}
	return true
}

func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "integer"
	case strings.HasPrefix(kind, "float"):
		return "number"
	case kind == "bool":
		return "boolean"
	case kind == "slice":
		return "array"
	case kind == "map", kind == "struct":
		return "object"
	}
	return kind
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// apiErr is a failure with the HTTP status and v3 reason to answer.
type apiErr struct {
	code   int
	reason string
	msg    string
}

func (e *apiErr) Error() string { return e.msg }

func errNotFound(format string, args ...any) *apiErr {
	return &apiErr{http.StatusNotFound, "ENTITY_NOT_FOUND", fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *apiErr {
	return &apiErr{http.StatusUnprocessableEntity, "INVALID_ARGUMENT", fmt.Sprintf(format, args...)}
}

func (s *Sim) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if ae, ok := err.(*apiErr); ok {
		s.apiError(w, r, ae.code, ae.reason, ae.msg)
		return
	}
	s.apiError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
}

// withPath runs fn under s.mu with the entity find returns for the
// request's path value key. When there is none it answers 404 in the
// envelope of the request's API family, with msg (its %s, if any, standing
// for the id) as the message.
func withPath[T any](s *Sim, w http.ResponseWriter, r *http.Request, key, msg string, find func(id string) *T, fn func(*T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue(key)
	x := find(id)
	if x == nil {
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, id)
		}
		s.notFound(w, r, msg)
		return
	}
	fn(x)
}

// byID is the lookup of one of the model's maps, for withPath. (The maps are
// made once, before the listener serves; only their contents need s.mu.)
func byID[T any](m map[string]*T) func(string) *T {
	return func(id string) *T { return m[id] }
}
