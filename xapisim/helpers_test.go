package xapisim_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// client is a hand-rolled XenAPI JSON-RPC client, independent of package
// xapi, so the simulator is checked against the reference rather than
// against ahvfs's own client.
type client struct {
	t       testing.TB
	sim     *xapisim.Sim
	hc      *http.Client
	url     string
	session string
	id      int
}

type xenErr struct {
	Code   string
	Params []string
}

func (e *xenErr) Error() string { return e.Code + " " + strings.Join(e.Params, ", ") }

func newClient(t testing.TB, sim *xapisim.Sim) *client {
	return &client{t: t, sim: sim, hc: xapisimtest.HTTPClient(t, sim), url: sim.URL()}
}

// login returns a client logged in as root.
func login(t testing.TB, sim *xapisim.Sim) *client {
	t.Helper()
	c := newClient(t, sim)
	var ref string
	c.mustInto(&ref, "session.login_with_password", "root", sim.Password(), "1.0", "xapisim-test")
	if !strings.HasPrefix(ref, "OpaqueRef:") {
		t.Fatalf("login returned %q", ref)
	}
	c.session = ref
	return c
}

// raw sends one call exactly as given (no session added).
func (c *client) raw(method string, params ...any) (json.RawMessage, *xenErr) {
	c.t.Helper()
	c.id++
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": c.id})
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := c.hc.Post(c.url+"/jsonrpc", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		c.t.Fatalf("%s: HTTP %s: %v %s", method, res.Status, err, b)
	}
	var out struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      int             `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Data    []string `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("%s: decode %s: %v", method, b, err)
	}
	if out.JSONRPC != "2.0" || out.ID != c.id {
		c.t.Fatalf("%s: answer %s does not match the request (id %d)", method, b, c.id)
	}
	if out.Error != nil {
		if out.Error.Code != 1 || out.Result != nil {
			c.t.Fatalf("%s: malformed error %s", method, b)
		}
		return nil, &xenErr{out.Error.Message, out.Error.Data}
	}
	return out.Result, nil
}

// call sends a call with the session prepended.
func (c *client) call(method string, params ...any) (json.RawMessage, *xenErr) {
	c.t.Helper()
	return c.raw(method, append([]any{c.session}, params...)...)
}

func (c *client) mustInto(v any, method string, params ...any) {
	c.t.Helper()
	var res json.RawMessage
	var xe *xenErr
	if method == "session.login_with_password" {
		res, xe = c.raw(method, params...)
	} else {
		res, xe = c.call(method, params...)
	}
	if xe != nil {
		c.t.Fatalf("%s: %v", method, xe)
	}
	if v != nil {
		if err := json.Unmarshal(res, v); err != nil {
			c.t.Fatalf("%s: decode %s: %v", method, res, err)
		}
	}
}

func (c *client) str(method string, params ...any) string {
	c.t.Helper()
	var s string
	c.mustInto(&s, method, params...)
	return s
}

func (c *client) record(method string, params ...any) map[string]any {
	c.t.Helper()
	var m map[string]any
	c.mustInto(&m, method, params...)
	return m
}

// wantErr calls and requires the XenAPI error code (and params, when
// given).
func (c *client) wantErr(code string, params []string, method string, args ...any) *xenErr {
	c.t.Helper()
	res, xe := c.call(method, args...)
	if xe == nil {
		c.t.Fatalf("%s: got %s, want %s", method, res, code)
	}
	if xe.Code != code || (params != nil && strings.Join(xe.Params, "|") != strings.Join(params, "|")) {
		c.t.Fatalf("%s: got %v, want %s %v", method, xe, code, params)
	}
	return xe
}

var valueRef = regexp.MustCompile(`^<value>(OpaqueRef:[0-9a-f-]+)</value>$`)

// waitTask polls a task until it ends and destroys it.
func (c *client) waitTask(task string) (status, result string, errorInfo []string) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rec := c.record("task.get_record", task)
		status = rec["status"].(string)
		if status != "pending" && status != "cancelling" {
			result = rec["result"].(string)
			for _, e := range rec["error_info"].([]any) {
				errorInfo = append(errorInfo, e.(string))
			}
			c.mustInto(nil, "task.destroy", task)
			return status, result, errorInfo
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("task %s still %s", task, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// async runs an Async call to success and returns the ref its result
// names ("" for none).
func (c *client) async(method string, params ...any) string {
	c.t.Helper()
	task := c.str("Async."+method, params...)
	status, result, info := c.waitTask(task)
	if status != "success" {
		c.t.Fatalf("Async.%s: task %s %v", method, status, info)
	}
	if result == "" {
		return ""
	}
	m := valueRef.FindStringSubmatch(result)
	if m == nil {
		c.t.Fatalf("Async.%s: result %q is not <value>OpaqueRef:…</value>", method, result)
	}
	return m[1]
}

// get does an authenticated GET of path and returns the response.
func (c *client) get(path string) *http.Response {
	c.t.Helper()
	res, err := c.hc.Get(c.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

func (c *client) getBody(path string) []byte {
	c.t.Helper()
	res := c.get(path)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %s: %s", path, res.Status, b)
	}
	if res.ContentLength >= 0 && res.ContentLength != int64(len(b)) {
		c.t.Fatalf("GET %s: Content-Length %d, body %d bytes", path, res.ContentLength, len(b))
	}
	return b
}

func (c *client) put(path string, body []byte) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPut, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// image writes a disk image: random data in the given 64 KiB blocks,
// zeros elsewhere (a hole).
func image(t testing.TB, size int64, blocks ...int64) string {
	t.Helper()
	p := fmt.Sprintf("%s/img-%d.raw", t.TempDir(), size)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if _, err := f.WriteAt(randomBytes(t, 64<<10), b*64<<10); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startSim starts a simulator with one running VM "web" with two disks.
func startSim(t testing.TB, spec ...xapisim.VMSpec) *xapisim.Sim {
	t.Helper()
	if len(spec) == 0 {
		spec = []xapisim.VMSpec{{Name: "web", Files: []string{image(t, 8<<20, 0, 1, 17, 100), image(t, 3<<20+512, 3)}}}
	}
	return xapisimtest.Start(t, xapisimtest.Options{VMs: spec})
}

// vmRef finds a VM by name.
func (c *client) vmRef(name string) string {
	c.t.Helper()
	var refs []string
	c.mustInto(&refs, "VM.get_by_name_label", name)
	if len(refs) != 1 {
		c.t.Fatalf("VM %s: %d refs", name, len(refs))
	}
	return refs[0]
}

// disks returns a VM's disk VDIs in userdevice order.
func (c *client) disks(vm string) []string {
	c.t.Helper()
	var out []string
	rec := c.record("VM.get_record", vm)
	for _, b := range rec["VBDs"].([]any) {
		vbd := c.record("VBD.get_record", b)
		if vbd["type"] == "Disk" {
			out = append(out, vbd["VDI"].(string))
		}
	}
	return out
}
