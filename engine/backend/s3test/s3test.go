package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running S3-compatible server and the credentials it takes.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	// Root is versitygw's directory of buckets ("" for gofakes3): a test
	// may look at the files it stores.
	Root string
	// ObjectLock reports whether the server enforces object lock
	// (versitygw does; gofakes3 does not).
	ObjectLock bool
	// Versioning reports whether buckets may keep versions (versitygw
	// started WithVersioning).
	Versioning bool
	// CAFile is the PEM CA certificate that signed the server's
	// certificate (Options.TLS), "" for plain http.
	CAFile string
}

// Options are how StartVersitygw starts the server.
type Options struct {
	// Versioning gives the server a versioning directory, so buckets with
	// object lock keep versions as on AWS.
	Versioning bool
	// TLS serves https with a certificate for 127.0.0.1 signed by a CA
	// of the test's own (Server.CAFile).
	TLS bool
}

// secretKey is the test servers' secret: a test checks it appears in no
// log, argument or object.
const secretKey = "ahvfs-test-secret-9f3c1e7a"

// Binary returns the versitygw binary: $AHVFS_VERSITYGW, else the one
// tools/install-deps.sh built ($AHVFS_TOOLS_DIR or
// ~/.cache/ahvfs-tools/versitygw-v1.8.0/), else versitygw on PATH or in
// ~/go/bin. A test without it skips (fails under AHVFS_REQUIRE_ALL=1).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AHVFS_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	home, _ := os.UserHomeDir()
	tools := os.Getenv("AHVFS_TOOLS_DIR")
	if tools == "" {
		tools = filepath.Join(home, ".cache", "ahvfs-tools")
	}
	if p := filepath.Join(tools, "versitygw-v1.8.0", "versitygw"); isExec(p) {
		return p
	}
	if p, err := testenv.LookPath("versitygw"); err == nil {
		return p
	}
	if p := filepath.Join(home, "go", "bin", "versitygw"); isExec(p) {
		return p
	}
	testenv.RequireOrSkip(t, false, "needs versitygw (make deps builds it; or set AHVFS_VERSITYGW)")
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// StartVersitygw starts a versitygw posix gateway on a free loopback port
// over a fresh directory, and stops it when the test ends. The secret goes
// through the environment, never argv.
func StartVersitygw(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Binary(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Server{AccessKey: "ahvfstest", SecretKey: secretKey, Root: data, ObjectLock: true, Versioning: o.Versioning}
	var tlsArgs []string
	for attempt := 0; ; attempt++ {
		addr := freePort(t)
		// --keep-alive: as production stores do (versitygw closes every
		// connection after one request by default).
		args := []string{"--port", addr, "--quiet", "--keep-alive"}
		if o.TLS {
			if s.CAFile == "" {
				var cert, key string
				s.CAFile, cert, key = writeTLS(t, root)
				tlsArgs = []string{"--cert", cert, "--key", key}
			}
			args = append(args, tlsArgs...)
		}
		args = append(args, "posix")
		if o.Versioning {
			vdir := filepath.Join(root, "versions")
			os.MkdirAll(vdir, 0o700)
			args = append(args, "--versioning-dir", vdir)
		}
		args = append(args, data)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
		log, _ := os.Create(filepath.Join(root, fmt.Sprintf("versitygw-%d.log", attempt)))
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); log.Close() }()
		if waitListening(addr, exited, 60*time.Second) {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-exited
				}
			})
			s.Endpoint = "http://" + addr
			if o.TLS {
				s.Endpoint = "https://" + addr
			}
			return s
		}
		cmd.Process.Kill()
		<-exited
		out, _ := os.ReadFile(log.Name())
		if attempt >= 4 {
			t.Fatalf("versitygw did not start on %s: %s", addr, out)
		}
		// Another process took the port between freePort and the
		// server's listen: try another.
	}
}

// freePort returns a loopback address nobody listens on now.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitListening waits until addr accepts connections, the process exits,
// or timeout passes.
func waitListening(addr string, exited <-chan error, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// StartFake serves gofakes3 (in memory) on a loopback port until the test
// ends. It has no object lock, and it ignores If-Match on reads (the
// backend compares ETags itself).
func StartFake(t testing.TB) *Server {
	t.Helper()
	srv := httptest.NewServer(wholeBodies(gofakes3.New(s3mem.New()).Server()))
	t.Cleanup(srv.Close)
	return &Server{Endpoint: srv.URL, AccessKey: "ahvfstest", SecretKey: secretKey}
}

var bucketSeq atomic.Int64

// NewBucketName returns a bucket name no other test of this process uses.
func NewBucketName() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("t%d-%s", bucketSeq.Add(1), hex.EncodeToString(b[:]))
}

// Options returns backend options for bucket and prefix on s.
func (s *Server) Options(bucket, prefix string) backend.S3Options {
	return backend.S3Options{Endpoint: s.Endpoint, Bucket: bucket, Prefix: prefix, AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
}

// NewBackend creates a fresh bucket (with object lock if asked) and
// returns a backend of it under prefix, closed when the test ends.
func (s *Server) NewBackend(t testing.TB, prefix string, objectLock bool) *backend.S3 {
	t.Helper()
	o := s.Options(NewBucketName(), prefix)
	o.CreateBucket, o.ObjectLock = true, objectLock
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := backend.OpenS3(ctx, o)
	if err != nil {
		t.Fatalf("open S3 backend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// URL is the s3:// location of bucket and prefix.
func URL(bucket, prefix string) string {
	return "s3://" + strings.TrimSuffix(bucket+"/"+prefix, "/")
}

// wholeBodies makes gofakes3 refuse a request whose body ends before its
// Content-Length, as real S3 servers do (gofakes3 would store what came).
func wholeBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			buf := make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				http.Error(w, "IncompleteBody", http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(buf))
		}
		h.ServeHTTP(w, r)
	})
}
