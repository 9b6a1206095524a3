package xapisim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// xenError is a XenAPI failure: an error code and its parameters, sent as
// {"code": 1, "message": Code, "data": Params} in a JSON-RPC error.
type xenError struct {
	Code   string
	Params []string
}

func (e *xenError) Error() string {
	if len(e.Params) == 0 {
		return e.Code
	}
	return e.Code + ": " + strings.Join(e.Params, ", ")
}

func xerr(code string, params ...string) *xenError {
	return &xenError{Code: code, Params: append([]string{}, params...)}
}

// asXenError turns any error into a XenAPI failure (INTERNAL_ERROR for
// those that are not one).
func asXenError(err error) *xenError {
	if xe, ok := err.(*xenError); ok {
		return xe
	}
	return xerr("INTERNAL_ERROR", err.Error())
}

func handleInvalid(class, ref string) *xenError { return xerr("HANDLE_INVALID", class, ref) }

// session is a login; sessions live in memory only.
type session struct {
	Ref, UUID  string
	User       string
	Originator string
	Created    time.Time
}

type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
	ID      json.RawMessage   `json:"id"`
}

type rpcError struct {
	Code    int      `json:"code"`
	Message string   `json:"message"`
	Data    []string `json:"data"`
}

// serveJSONRPC answers POST /jsonrpc.
func (s *Sim) serveJSONRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Method == "" {
		writeRPC(w, json.RawMessage("null"), nil, &rpcError{Code: -32700, Message: "Parse error", Data: []string{fmt.Sprint(err)}})
		return
	}
	if req.ID == nil {
		req.ID = json.RawMessage("null")
	}
	res, xe := s.dispatch(r, req.Method, req.Params)
	if xe != nil {
		data := xe.Params
		if data == nil {
			data = []string{}
		}
		writeRPC(w, req.ID, nil, &rpcError{Code: 1, Message: xe.Code, Data: data})
		return
	}
	writeRPC(w, req.ID, res, nil)
}

func writeRPC(w http.ResponseWriter, id json.RawMessage, result any, e *rpcError) {
	out := map[string]any{"jsonrpc": "2.0", "id": id}
	if e != nil {
		out["error"] = e
	} else {
		out["result"] = result
	}
	b, err := json.Marshal(out)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id,
			"error": rpcError{Code: 1, Message: "INTERNAL_ERROR", Data: []string{err.Error()}}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// call is one API call being served.
type call struct {
	s      *Sim
	name   string            // method name without "Async."
	params []json.RawMessage // after the session
	sess   *session
	task   *task // the task of an Async call, else nil
	req    *http.Request
}

// dispatch runs one call: session check, parameter count, faults, gates,
// then the method (or, for Async.*, a task that runs it).
func (s *Sim) dispatch(r *http.Request, method string, params []json.RawMessage) (any, *xenError) {
	name, async := strings.CutPrefix(method, "Async.")
	m, ok := s.lookupMethod(name)
	if !ok || (async && m.noAsync) {
		return nil, xerr("MESSAGE_METHOD_UNKNOWN", method)
	}
	c := &call{s: s, name: name, req: r}
	lo, hi := m.minArgs, m.nargs
	if !m.noSession {
		lo, hi = lo+1, hi+1
	}
	if len(params) < lo || len(params) > hi {
		return nil, xerr("MESSAGE_PARAMETER_COUNT_MISMATCH", method, strconv.Itoa(hi), strconv.Itoa(len(params)))
	}
	if m.noSession {
		c.params = params
	} else {
		var ref string
		if json.Unmarshal(params[0], &ref) != nil {
			return nil, xerr("SESSION_INVALID", string(params[0]))
		}
		sess := s.session(ref)
		if sess == nil {
			return nil, xerr("SESSION_INVALID", ref)
		}
		c.sess, c.params = sess, params[1:]
	}
	if async {
		return s.startTask(c, m), nil
	}
	res, err := s.run(c, m)
	if err != nil {
		return nil, asXenError(err)
	}
	return res, nil
}

// run applies faults and gates to a call, then runs it, holding s.mu and
// saving the state afterwards unless the method does its own locking.
func (s *Sim) run(c *call, m method) (any, error) {
	if xe := s.faults.take(c.name); xe != nil {
		return nil, xe
	}
	if err := s.gates.pass(s.ctx, c.name); err != nil {
		return nil, err
	}
	if m.selfLock {
		return m.fn(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := m.fn(c)
	if err == nil && m.mutates {
		s.save()
	}
	return res, err
}

func (s *Sim) session(ref string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[ref]
}

// ExpireSessions forgets every session, as a xapi restart does: the next
// call of each client answers SESSION_INVALID.
func (s *Sim) ExpireSessions() {
	s.mu.Lock()
	s.sessions = map[string]*session{}
	s.mu.Unlock()
}

// ---------- parameters ----------

func (c *call) typeError(i int, want string) error {
	return xerr("FIELD_TYPE_ERROR", fmt.Sprintf("parameter %d of %s: want %s, have %s", i+1, c.name, want, string(c.params[i])))
}

func (c *call) str(i int) (string, error) {
	var v string
	if json.Unmarshal(c.params[i], &v) != nil {
		return "", c.typeError(i, "a string")
	}
	return v, nil
}

func (c *call) boolean(i int) (bool, error) {
	var v bool
	if json.Unmarshal(c.params[i], &v) != nil {
		return false, c.typeError(i, "a boolean")
	}
	return v, nil
}

func (c *call) record(i int) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(c.params[i]))
	d.UseNumber()
	var v map[string]any
	if d.Decode(&v) != nil || v == nil {
		return nil, c.typeError(i, "a record (object)")
	}
	return v, nil
}

func (c *call) stringMap(i int) (map[string]string, error) {
	var v map[string]string
	if json.Unmarshal(c.params[i], &v) != nil {
		return nil, c.typeError(i, "a map of strings")
	}
	if v == nil {
		v = map[string]string{}
	}
	return v, nil
}

// Record fields of a create call. Missing fields take their default;
// a field of the wrong type is an error.

func fieldStr(rec map[string]any, k, def string) (string, error) {
	v, ok := rec[k]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", xerr("FIELD_TYPE_ERROR", k)
	}
	return s, nil
}

func fieldInt(rec map[string]any, k string, def int64) (int64, error) {
	v, ok := rec[k]
	if !ok || v == nil {
		return def, nil
	}
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
	case string: // XML-RPC style
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, nil
		}
	case int64:
		return x, nil
	}
	return 0, xerr("FIELD_TYPE_ERROR", k)
}

func fieldBool(rec map[string]any, k string, def bool) (bool, error) {
	v, ok := rec[k]
	if !ok || v == nil {
		return def, nil
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b, nil
		}
	}
	return false, xerr("FIELD_TYPE_ERROR", k)
}

func fieldMap(rec map[string]any, k string) (map[string]string, error) {
	out := map[string]string{}
	v, ok := rec[k]
	if !ok || v == nil {
		return out, nil
	}
	mp, ok := v.(map[string]any)
	if !ok {
		return nil, xerr("FIELD_TYPE_ERROR", k)
	}
	for kk, vv := range mp {
		sv, ok := vv.(string)
		if !ok {
			return nil, xerr("FIELD_TYPE_ERROR", k+"."+kk)
		}
		out[kk] = sv
	}
	return out, nil
}

func fieldStrings(rec map[string]any, k string) ([]string, error) {
	out := []string{}
	v, ok := rec[k]
	if !ok || v == nil {
		return out, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, xerr("FIELD_TYPE_ERROR", k)
	}
	for _, x := range arr {
		sv, ok := x.(string)
		if !ok {
			return nil, xerr("FIELD_TYPE_ERROR", k)
		}
		out = append(out, sv)
	}
	return out, nil
}

// ---------- wire values ----------

// xenTime is XenAPI's datetime on the wire.
func xenTime(t time.Time) string {
	if t.IsZero() {
		return "19700101T00:00:00Z"
	}
	return t.UTC().Format("20060102T15:04:05Z")
}

func refOr(ref string) string {
	if ref == "" {
		return nullRef
	}
	return ref
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
