package simkit

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers with status code and v as JSON; a v that does not
// marshal is a 500 with the error as plain text.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// RecoverPanics serves h and turns a panic of its into a line "panic
// serving METHOD PATH: value" to logf and the answer fail writes (in the
// simulator's own error shape). http.ErrAbortHandler, which aborts a
// response on purpose, goes on up to the server.
func RecoverPanics(h http.Handler, logf func(format string, args ...any), fail func(w http.ResponseWriter, r *http.Request, v any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logf("panic serving %s %s: %v", r.Method, r.URL.Path, v)
				fail(w, r, v)
			}
		}()
		h.ServeHTTP(w, r)
	})
}
