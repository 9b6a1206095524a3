package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds cmd/xapisim with go build.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xapisim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// startBinary runs the binary until it prints a line starting with
// ready, and returns what it printed (by label) and a stop function.
func startBinary(t *testing.T, bin, ready string, args ...string) (map[string]string, []string, func()) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("xapisim exited with %v: %s", err, stderr.String())
		}
	}
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	labels := map[string]string{}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if k, v, ok := strings.Cut(line, ":"); ok {
			labels[k] = strings.TrimSpace(v)
		}
		if strings.HasPrefix(line, ready) {
			go io.Copy(io.Discard, stdout)
			return labels, lines, stop
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("xapisim ended before %q: %q %s", ready, lines, stderr.String())
	return nil, nil, nil
}

// TestBinary: the binary built by go build prints the contract lines,
// answers JSON-RPC as root with the printed CA and password file, keeps
// its VMs across a restart and stops on SIGTERM.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	img := filepath.Join(t.TempDir(), "a.raw")
	data := bytes.Repeat([]byte("disk"), 1<<18)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "st")
	args := []string{"--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0", "--state", state, "--vm", "web:" + img, "--quiet"}
	labels, lines, stop := startBinary(t, bin, "VM web", args...)
	url, ca, pwFile := labels["URL"], labels["CA cert"], labels["Password file"]
	if !strings.HasPrefix(url, "https://127.0.0.1:") || ca != filepath.Join(state, "ca.crt") ||
		pwFile != filepath.Join(state, "root.password") || labels["User"] != "root" {
		t.Fatalf("output %q", lines)
	}
	if got, err := os.ReadFile(filepath.Join(state, "vms", "web", "disk-0.raw")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("disk file: %v", err)
	}
	vmLine := lines[len(lines)-1]

	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method string, params ...any) map[string]any {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
		res, err := hc.Post(url+"/jsonrpc", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := call("session.login_with_password", "root", strings.TrimSpace(string(pw)), "1.0", "test")
	session, ok := out["result"].(string)
	if !ok {
		t.Fatalf("login: %v", out)
	}
	if out := call("VM.get_by_name_label", session, "web"); len(out["result"].([]any)) != 1 {
		t.Fatalf("VM.get_by_name_label: %v", out)
	}
	stop()

	// Restart on the same state: the same VM, not copied again.
	if err := os.WriteFile(img, bytes.Repeat([]byte("new!"), 1<<18), 0o644); err != nil {
		t.Fatal(err)
	}
	_, lines, stop = startBinary(t, bin, "VM web", args...)
	if lines[len(lines)-1] != vmLine {
		t.Errorf("after restart %q, before %q", lines[len(lines)-1], vmLine)
	}
	if got, _ := os.ReadFile(filepath.Join(state, "vms", "web", "disk-0.raw")); !bytes.Equal(got, data) {
		t.Error("the disk was copied in again")
	}
	stop()
}

// TestRunFlags: bad flags are refused before anything starts.
func TestRunFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{{"--vm", "nofiles"}, {"--vm", "x:a.raw", "--firmware", "efi"}, {"extra"}} {
		var out, errb bytes.Buffer
		if err := run(ctx, append([]string{"--state", t.TempDir()}, args...), &out, &errb); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
