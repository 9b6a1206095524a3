package auth_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ahvfs/ahvfs/console/auth"
)

// TestAuditFile: events are JSON lines, appended (a reopened log keeps its
// lines), whole under concurrent writers, in a file of mode 0600.
func TestAuditFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := auth.OpenAuditFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	if err := a.Record(auth.Event{Time: at, User: "alice", Action: "login", Target: "POST /api/v1/login", Result: auth.ResultOK, Client: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := a.Record(auth.Event{}); err == nil {
		t.Fatal("Record after Close succeeded")
	}
	a, err = auth.OpenAuditFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a.Record(auth.Event{Time: at, User: fmt.Sprintf("u%d", w), Action: "restore", Target: fmt.Sprintf("vm%d@latest", i),
					Result: auth.ResultDenied, Client: "192.0.2.2", Detail: "role restore-files may not restore"})
			}
		}()
	}
	wg.Wait()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode %v, %v; want 0600", st.Mode(), err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d is not JSON: %s", n+1, sc.Text())
		}
		for _, k := range []string{"time", "user", "action", "target", "result", "client"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("line %d lacks %q: %s", n+1, k, sc.Text())
			}
		}
		if n == 0 && (e["user"] != "alice" || e["result"] != "ok" || e["time"] != "2026-11-22T08:00:00Z" || e["detail"] != nil) {
			t.Fatalf("first line: %s", sc.Text())
		}
		n++
	}
	if n != 1+writers*each {
		t.Fatalf("%d lines, want %d", n, 1+writers*each)
	}
}

// TestAuditClipsLongFields: a refusal of a request with a huge path writes
// a short line: an unauthenticated client cannot fill the log's disk.
func TestAuditClipsLongFields(t *testing.T) {
	audit := &auth.MemAudit{}
	a, err := auth.New(auth.Options{Users: &auth.Users{Version: auth.UsersVersion}, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Require(auth.ActionView, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/api/v1/vms/"+strings.Repeat("é", 100000), nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	evs := audit.Events()
	if w.Code != http.StatusUnauthorized || len(evs) != 1 || len(evs[0].Target) > 300 || !utf8.ValidString(evs[0].Target) ||
		!strings.HasSuffix(evs[0].Target, "…") {
		t.Fatalf("refusal: %d, events %d, target of %d bytes", w.Code, len(evs), len(evs[0].Target))
	}
}
