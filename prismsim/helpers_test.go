package prismsim_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// api is a raw HTTP client for the simulator (no dependency on the Prism
// client package, which is written in parallel).
type api struct {
	t    testing.TB
	sim  *prismsim.Sim
	c    *http.Client
	user string
	pass string
	hdr  map[string]string
}

func newAPI(t testing.TB, s *prismsim.Sim) *api {
	return &api{t: t, sim: s, c: simtest.HTTPClient(t, s), user: "admin", pass: s.Password()}
}

type resp struct {
	code   int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (a *api) do(method, path string, body any, hdr ...string) resp {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.sim.URL()+strings.ReplaceAll(path, " ", "%20"), rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range a.hdr {
		req.Header.Set(k, v)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{code: res.StatusCode, header: res.Header, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			a.t.Fatalf("%s %s: decode: %v: %s", method, path, err, raw)
		}
	}
	return r
}

// must fails the test unless the status is want.
func (r resp) must(t testing.TB, want int) resp {
	t.Helper()
	if r.code != want {
		t.Fatalf("status %d, want %d: %s", r.code, want, r.raw)
	}
	return r
}

// get walks a decoded JSON value by dotted path with [i] indexes.
func get(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if name != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[name]
		}
		if idx >= 0 {
			a, ok := v.([]any)
			if !ok || idx >= len(a) {
				return nil
			}
			v = a[idx]
		}
	}
	return v
}

func str(v any, path string) string {
	s, _ := get(v, path).(string)
	return s
}

func num(v any, path string) int64 {
	f, _ := get(v, path).(float64)
	return int64(f)
}

func list(v any, path string) []any {
	a, _ := get(v, path).([]any)
	return a
}

// waitTask polls a task at path until the value at field is one of done
// and returns the object at data ("" for the whole answer).
func (a *api) waitTask(path, field, data string, done ...string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := a.do("GET", path, nil).must(a.t, 200)
		if slices.Contains(done, str(r.body, field)) {
			if data == "" {
				return r.body
			}
			return r.body[data].(map[string]any)
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("task %s did not finish: %s", path, r.raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitV3Task polls a v3 task until it ends and returns it.
func (a *api) waitV3Task(id string) map[string]any {
	a.t.Helper()
	return a.waitTask("/api/nutanix/v3/tasks/"+id, "status", "", "SUCCEEDED", "FAILED", "ABORTED")
}

// waitV4Task polls a v4 task until it ends and returns its data.
func (a *api) waitV4Task(extID string) map[string]any {
	a.t.Helper()
	return a.waitTask("/api/prism/v4.0/config/tasks/"+extID, "data.status", "data", "SUCCEEDED", "FAILED", "CANCELED")
}

// waitV2Task polls a v2 task until it ends and returns it.
func (a *api) waitV2Task(id string) map[string]any {
	a.t.Helper()
	return a.waitTask("/PrismGateway/services/rest/v2.0/tasks/"+id, "progress_status", "", "Succeeded", "Failed", "Aborted")
}

var reqSeq int

// v4 sends a mutating v4 request with a fresh NTNX-Request-Id.
func (a *api) v4(method, path string, body any, hdr ...string) resp {
	a.t.Helper()
	reqSeq++
	return a.do(method, path, body, append([]string{"NTNX-Request-Id", fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), reqSeq)}, hdr...)...)
}

// makeDisk writes a disk file of size bytes with random data in the given
// 64 KiB blocks and holes elsewhere.
func makeDisk(t testing.TB, dir string, size int64, blocks ...int64) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("img-%d.raw", time.Now().UnixNano()))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		writeBlock(t, f, b, true)
	}
	return p
}

const blk = 64 << 10

// writeBlock fills 64 KiB block b with random bytes, or zeros.
func writeBlock(t testing.TB, f *os.File, b int64, random bool) {
	t.Helper()
	buf := make([]byte, blk)
	if random {
		rand.Read(buf)
	}
	if _, err := f.WriteAt(buf, b*blk); err != nil {
		t.Fatal(err)
	}
}

func readAll(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// regionsOf converts a decoded region list to comparable strings.
func regionsOf(a []any, typeKey string) []string {
	var out []string
	for _, x := range a {
		out = append(out, fmt.Sprintf("%d+%d:%s", num(x, "offset"), num(x, "length"), str(x, typeKey)))
	}
	return out
}
