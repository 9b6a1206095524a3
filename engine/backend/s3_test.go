package backend_test

import (
	"bytes"
	"context"
	"errors"
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
