package backend_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/backendtest"
	"github.com/ahvfs/ahvfs/engine/backend/s3test"
)

// TestS3ConformanceVersitygw runs the conformance suite against a real
// S3-compatible server, each subtest in a bucket of its own, objects under
// a prefix.
func TestS3ConformanceVersitygw(t *testing.T) {
	srv := s3test.StartVersitygw(t, s3test.Options{})
	backendtest.Run(t, func(t *testing.T) backend.Backend { return srv.NewBackend(t, "repo/a", false) })
}

// TestS3ConformanceFake runs it against gofakes3 in process, without a
// prefix.
func TestS3ConformanceFake(t *testing.T) {
	srv := s3test.StartFake(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend { return srv.NewBackend(t, "", false) })
}

// TestS3PendingUploads: an upload a killed process left is counted and
// aborted once old enough, and only then.
func TestS3PendingUploads(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartVersitygw(t, s3test.Options{})
	b := srv.NewBackend(t, "repo", false)
	key := b.Key("packs/ab/left.pack")
	bucket := b.Bucket()
	up, err := b.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Client().UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 5<<20))}); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx)
	if err != nil || st.PendingUploads != 1 {
		t.Fatalf("status: %+v %v; want one pending upload", st, err)
	}
	if n, err := b.AbortUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("abort of uploads older than an hour: %d %v; want none", n, err)
	}
	if n, err := b.AbortUploads(ctx, 0); err != nil || n != 1 {
		t.Fatalf("abort of all uploads: %d %v; want one", n, err)
	}
	if st, err := b.Status(ctx); err != nil || st.PendingUploads != 0 {
		t.Fatalf("status after abort: %+v %v", st, err)
	}
	if _, err := backend.Get(ctx, b, "packs/ab/left.pack"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("the aborted upload's object: %v; want none", err)
	}
}

// TestS3ReadCache: a sequential reader of a large object gets it in a few
// block GETs, through ReadAt and View, from several goroutines at once,
// byte-exact; a reader of the object overwritten since gets the new bytes
// (blocks are per version), and a random read asks for its range only.
func TestS3ReadCache(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartFake(t)
	proxy := s3test.StartFaultProxy(t, srv.Endpoint, s3test.Faults{}, 1)
	o := srv.Options(s3test.NewBucketName(), "c")
	o.Endpoint, o.CreateBucket = proxy.URL, true
	b, err := backend.OpenS3(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const size = 40<<20 + 12345
	data := backendtest.Content("big", 1, size)
	if err := backend.PutBytes(ctx, b, "big", data); err != nil {
		t.Fatal(err)
	}
	obj, err := b.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	const piece = 700 << 10
	// One sequential reader: a few block GETs.
	before := proxy.Requests()
	seqBuf := make([]byte, piece)
	for off := int64(0); off < size; off += piece {
		n := min(piece, size-off)
		if got, err := obj.ReadAt(seqBuf[:n], off); int64(got) != n || (err != nil && err != io.EOF) || !bytes.Equal(seqBuf[:n], data[off:off+n]) {
			t.Fatalf("sequential ReadAt(%d, %d): %d bytes, %v", n, off, got, err)
		}
	}
	if n := proxy.Requests() - before; n > 8 {
		t.Errorf("a sequential read of %d MiB took %d requests; want a few block GETs (8 MiB each)", size>>20, n)
	}
	// Four readers at once, through ReadAt and View, from the cache or
	// not (the count depends on how they interleave): the bytes are right.
	obj.Close()
	if obj, err = b.Open(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			buf := make([]byte, piece)
			for off := int64(g) * piece; off < size; off += 4 * piece {
				n := min(piece, size-off)
				if v, ok := obj.(backend.Viewer); ok && g%2 == 0 {
					if view, done, ok := v.View(off, n); ok {
						if !bytes.Equal(view, data[off:off+n]) {
							t.Errorf("View(%d, %d): wrong bytes", off, n)
						}
						done()
						continue
					}
				}
				got, err := obj.ReadAt(buf[:n], off)
				if int64(got) != n || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], data[off:off+n]) {
					t.Errorf("ReadAt(%d, %d): %d bytes, %v", n, off, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Overwritten: an object opened now reads the new bytes.
	data2 := backendtest.Content("big", 2, size)
	if err := backend.PutBytes(ctx, b, "big", data2); err != nil {
		t.Fatal(err)
	}
	obj2, err := b.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer obj2.Close()
	buf := make([]byte, piece)
	for off := int64(0); off < 3*piece; off += piece {
		if _, err := obj2.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data2[off:off+piece]) {
			t.Fatalf("read of the new version at %d: %v", off, err)
		}
	}
}

// TestS3TLS: an https store is verified: refused without its CA (with a
// message saying so), reached with it (S3Options.RootCAs).
func TestS3TLS(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartVersitygw(t, s3test.Options{TLS: true})
	o := srv.Options(s3test.NewBucketName(), "r")
	o.CreateBucket, o.MaxAttempts = true, 1
	if _, err := backend.OpenS3(ctx, o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("open of an https store signed by an unknown CA: %v; want a certificate error", err)
	}
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	o.RootCAs = x509.NewCertPool()
	o.RootCAs.AppendCertsFromPEM(pem)
	b, err := backend.OpenS3(ctx, o)
	if err != nil {
		t.Fatalf("open with the CA: %v", err)
	}
	defer b.Close()
	if err := backend.PutBytes(ctx, b, "x", []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if got, err := backend.Get(ctx, b, "x"); err != nil || string(got) != "over TLS" {
		t.Fatalf("get over TLS: %q %v", got, err)
	}
}

func TestParseS3URL(t *testing.T) {
	for _, c := range []struct{ in, bucket, prefix, err string }{
		{"s3://backups/site-a/repo", "backups", "site-a/repo", ""},
		{"s3://backups", "backups", "", ""},
		{"s3://backups/", "backups", "", ""},
		{"s3://b/r", "", "", "3 to 63"},
		{"s3://Backups/r", "", "", "start and end"},
		{"s3://back ups/r", "", "", "not ' '"},
		{"s3:///r", "", "", "names no bucket"},
		{"s3://backups/a//b", "", "", "empty path element"},
		{"/srv/repo", "", "", "not an s3://"},
	} {
		b, p, err := backend.ParseS3URL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseS3URL(%q): %v, want an error with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseS3URL(%q) = %q, %q, %v; want %q, %q", c.in, b, p, err, c.bucket, c.prefix)
		}
	}
}

// TestS3DiskCache: blocks a sequential reader fetched are read by the next
// backend from the disk cache instead of the store; a damaged cache file
// is noticed, and its block fetched again.
func TestS3DiskCache(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartFake(t)
	proxy := s3test.StartFaultProxy(t, srv.Endpoint, s3test.Faults{}, 1)
	dir := t.TempDir()
	o := srv.Options(s3test.NewBucketName(), "c")
	o.Endpoint, o.CreateBucket, o.BlockCacheDir = proxy.URL, true, dir
	const size = 30 << 20
	data := backendtest.Content("big", 1, size)
	readAll := func() int64 {
		b, err := backend.OpenS3(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		obj, err := b.Open(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		before := proxy.Requests()
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if n, err := obj.ReadAt(buf, off); n != len(buf) || err != nil || !bytes.Equal(buf, data[off:off+int64(n)]) {
				t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
			}
		}
		return proxy.Requests() - before
	}
	b, err := backend.OpenS3(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.PutBytes(ctx, b, "big", data); err != nil {
		t.Fatal(err)
	}
	b.Close()
	first := readAll()
	again := readAll()
	if first < 3 || again > 1 {
		t.Fatalf("requests: %d reading from the store, %d reading again; want the second read from the disk cache", first, again)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatal("no block in the disk cache")
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0x00, 0xff}, 1000)
	f.Close()
	if n := readAll(); n < 1 {
		t.Fatalf("a damaged cache block was used (%d requests)", n)
	}
}
