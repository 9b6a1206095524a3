package nutanix

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors. Test with errors.Is; an *APIError matches the one its
// HTTP status or Prism reason implies.
var (
	// ErrNotFound: the entity does not exist (HTTP 404, or reason
	// ENTITY_NOT_FOUND in a v3 envelope). Deletes treat it as success once
	// they have made sure the object is gone (see deletes.go).
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the credentials were refused (HTTP 401).
	ErrUnauthorized = errors.New("credentials refused")
	// ErrForbidden: authenticated, but the user may not do this (HTTP 403).
	ErrForbidden = errors.New("permission denied")
	// ErrConflict: an ETag/If-Match or spec_version mismatch (HTTP 409/412).
	ErrConflict = errors.New("conflicting update")
	// ErrUnsupported: the selected API (or the cluster) does not offer the
	// operation, e.g. changed regions through Prism Central v3.
	ErrUnsupported = errors.New("not supported by this API")
	// ErrTaskTimeout: a task did not reach a terminal state before the
	// deadline (Options.TaskTimeout or the context's).
	ErrTaskTimeout = errors.New("task did not finish in time")
)

// APIError is an error answered by Prism: the HTTP status plus what the
// body said, decoded from whichever envelope the API version uses (v3
// "state: ERROR" + message_list, v2 {"message": ...}, v4 data.error[]).
type APIError struct {
	Op        string // what the client was doing, e.g. "GET /api/nutanix/v3/vms/…"
	Status    int    // HTTP status code
	Code      string // v4 AppMessage code ("VMM-20005"), v2 error_code, or v3 code
	Message   string // the human message Prism gave, if any
	Reason    string // v3 message_list[0].reason (ENTITY_NOT_FOUND, …) or v4 errorGroup
	RequestID string // NTNX-Request-Id sent, when there was one
	// Attempts is how many times the request was sent (0: unknown, e.g. an
	// error decoded from a recording): at most Options.MaxAttempts, 1 for a
	// request the retry policy does not repeat (see transport.go).
	Attempts int
	// RetryStop says why a failure that is worth retrying was not retried
	// (again): the request is not repeatable, the retry budget is spent, or
	// the context's deadline comes first. Empty when the attempts were
	// spent or the answer is not worth retrying.
	RetryStop string
}

func (e *APIError) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Code != "" && e.Code != e.Reason {
		fmt.Fprintf(&b, " [%s]", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	switch {
	case e.Attempts > 1 && e.RetryStop != "":
		fmt.Fprintf(&b, " (gave up after %d attempts: %s)", e.Attempts, e.RetryStop)
	case e.Attempts > 1:
		fmt.Fprintf(&b, " (gave up after %d attempts)", e.Attempts)
	case e.RetryStop != "":
		fmt.Fprintf(&b, " (sent once: %s)", e.RetryStop)
	}
	return b.String()
}

// Is maps the error onto the package sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound || e.Reason == "ENTITY_NOT_FOUND"
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden || e.Reason == "ACCESS_DENIED"
	case ErrConflict:
		return e.Status == http.StatusConflict || e.Status == http.StatusPreconditionFailed
	}
	return false
}

// Temporary reports whether the same request may succeed later. The client
// has already retried it as far as its retry policy allows (Attempts):
// callers must not send it again at once.
func (e *APIError) Temporary() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return e.Reason == "TOO_MANY_REQUESTS" || e.Reason == "SERVICE_UNAVAILABLE"
}

// wire shapes of the three error envelopes; one struct decodes them all.
type errorEnvelope struct {
	// v3
	State       string          `json:"state"`
	Code        json.RawMessage `json:"code"`
	MessageList []v3Message     `json:"message_list"`
	Status      *v3ErrStatus    `json:"status"`
	// v2
	Message   string          `json:"message"`
	ErrorCode json.RawMessage `json:"error_code"`
	Detail    string          `json:"detail"`
	// v4 (and plain {"error": "..."} bodies)
	Data  json.RawMessage `json:"data"`
	Error json.RawMessage `json:"error"`
}

type v3Message struct {
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

type v3ErrStatus struct {
	State       string      `json:"state"`
	MessageList []v3Message `json:"message_list"`
}

type v4AppMessage struct {
	Message    string `json:"message"`
	Code       string `json:"code"`
	Severity   string `json:"severity"`
	ErrorGroup string `json:"errorGroup"`
}

type v4SchemaError struct {
	StatusCode              int    `json:"statusCode"`
	Error                   string `json:"error"`
	Path                    string `json:"path"`
	ValidationErrorMessages []struct {
		AttributePath string `json:"attributePath"`
		Message       string `json:"message"`
	} `json:"validationErrorMessages"`
}

// DecodeError builds the *APIError for a non-2xx response from its status and
// body. It never fails: an undecodable body becomes the message (trimmed).
func DecodeError(op string, status int, body []byte) *APIError {
	e := &APIError{Op: op, Status: status}
	var env errorEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		e.Message = plainMessage(body)
		return e
	}
	msgs := env.MessageList
	if len(msgs) == 0 && env.Status != nil {
		msgs = env.Status.MessageList
	}
	if len(msgs) > 0 { // v3
		e.Message, e.Reason = msgs[0].Message, msgs[0].Reason
		for _, m := range msgs[1:] {
			if m.Message != "" {
				e.Message += "; " + m.Message
			}
		}
		if c := rawCode(env.Code); c != "" && c != fmt.Sprint(status) {
			e.Code = c
		}
		return e
	}
	if v4 := decodeV4Error(env.Data); v4 != nil {
		e.Code, e.Message, e.Reason = v4.Code, v4.Message, v4.Reason
		return e
	}
	if v4 := decodeV4ErrorList(env.Error); v4 != nil {
		e.Code, e.Message, e.Reason = v4.Code, v4.Message, v4.Reason
		return e
	}
	if env.Message != "" { // v2
		e.Message = env.Message
		if env.Detail != "" && env.Detail != env.Message {
			e.Message += ": " + env.Detail
		}
		e.Code = rawCode(env.ErrorCode)
		return e
	}
	if len(env.Error) > 0 {
		var s string
		if json.Unmarshal(env.Error, &s) == nil {
			e.Message = s
			return e
		}
	}
	e.Message = plainMessage(body)
	return e
}

// decodeV4Error decodes data = {"error": [...AppMessage] | SchemaValidationError}.
func decodeV4Error(data json.RawMessage) *APIError {
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	var d struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	return decodeV4ErrorList(d.Error)
}

func decodeV4ErrorList(raw json.RawMessage) *APIError {
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '[':
		var msgs []v4AppMessage
		if json.Unmarshal(raw, &msgs) != nil || len(msgs) == 0 {
			return nil
		}
		e := &APIError{Code: msgs[0].Code, Message: msgs[0].Message, Reason: msgs[0].ErrorGroup}
		for _, m := range msgs[1:] {
			if m.Message != "" {
				e.Message += "; " + m.Message
			}
		}
		return e
	case '{':
		var s v4SchemaError
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		var am v4AppMessage
		if json.Unmarshal(raw, &am) == nil && am.Message != "" {
			return &APIError{Code: am.Code, Message: am.Message, Reason: am.ErrorGroup}
		}
		e := &APIError{Message: s.Error, Reason: "SCHEMA_VALIDATION"}
		for _, v := range s.ValidationErrorMessages {
			part := v.Message
			if v.AttributePath != "" {
				part = v.AttributePath + ": " + part
			}
			if e.Message != "" {
				e.Message += "; "
			}
			e.Message += part
		}
		if e.Message == "" {
			return nil
		}
		return e
	}
	return nil
}

// plainMessage turns a non-JSON body (a 401 from Prism is plain text or HTML)
// into a one-line message.
func plainMessage(body []byte) string {
	s := strings.TrimSpace(string(body))
	if strings.HasPrefix(s, "<") { // HTML error page: not useful
		return ""
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// TaskError is returned when a Prism task ends FAILED, ABORTED or CANCELED.
type TaskError struct {
	Op   string
	Task Task
}

func (e *TaskError) Error() string {
	msg := e.Task.Error
	if msg == "" {
		msg = "no error message"
	}
	op := e.Op
	if op == "" {
		op = "task"
	}
	return fmt.Sprintf("%s: task %s %s: %s", op, e.Task.ID, e.Task.Status, msg)
}

// rawCode renders a code that may be a number, a string or {"code": …}.
func rawCode(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprintf("%.0f", x)
	case map[string]any:
		if c, ok := x["code"]; ok {
			return fmt.Sprint(c)
		}
	}
	return ""
}
