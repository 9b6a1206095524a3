package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/s3test"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestObjectLockRetainsLockedPoints: on a bucket with object lock (and
// versions, as AWS requires), locking a point sets the store's retention
// on its record, lock file, config.json and every pack and sidecar it
// needs; the store then refuses to delete them, through ahvfs and through
// the S3 API with a version ID; gc after forgetting the other points keeps
// them and succeeds; the locked point reads back byte-exact.
func TestObjectLockRetainsLockedPoints(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartVersitygw(t, s3test.Options{Versioning: true})
	be := srv.NewBackend(t, "repo", true)
	if !be.ObjectLockEnabled() {
		t.Fatal("a bucket created with object lock: ObjectLockEnabled is false")
	}
	o := gcOpts
	o.Backend, o.Remote = be, true
	cache := t.TempDir()
	if _, err := engine.Init(ctx, cache, o); err != nil {
		t.Fatal(err)
	}
	host := sharedHost{cache, be}
	w := host.open(t, engine.OpenOptions{Writable: true, Exclusive: true})
	defer w.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a := randomBytes(t, 3<<20, 21)
	b := everyThirdChunk(a, 22)
	rpA, err := enginetest.ImportFiles(ctx, w, "vm", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := w.LockRestorePoint(ctx, rpA, until); err != nil {
		t.Fatal(err)
	}
	packs, err := backend.ListAll(ctx, be, "packs/")
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs: %v %v", packs, err)
	}
	retained := 0
	for _, p := range packs {
		got, err := be.RetainedUntil(ctx, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !got.IsZero() {
			retained++
			if got.Before(until) {
				t.Errorf("%s retained until %s, want %s", p.Name, got, until)
			}
		}
	}
	if retained != len(packs) {
		t.Fatalf("%d of %d pack objects retained; the locked point needs all of them", retained, len(packs))
	}
	for _, name := range []string{"config.json", "records/rp/" + rpA.ID + ".rec"} {
		if got, err := be.RetainedUntil(ctx, name); err != nil || got.Before(until) {
			t.Fatalf("%s retained until %s (%v), want %s", name, got, err, until)
		}
	}
	// The store refuses: through ahvfs's backend, and a version delete.
	victim := packs[0].Name
	if err := be.Delete(ctx, victim); !errors.Is(err, backend.ErrRetained) {
		t.Fatalf("delete of a retained pack: %v, want ErrRetained", err)
	}
	bucket, key := be.Bucket(), be.Key(victim)
	vs, err := be.Client().ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &key})
	if err != nil || len(vs.Versions) == 0 {
		t.Fatalf("versions of %s: %v", victim, err)
	}
	if _, err := be.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key, VersionId: vs.Versions[0].VersionId}); err == nil {
		t.Fatal("the store deleted a retained version")
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{rpA}); !errors.Is(err, engine.ErrRetentionLocked) {
		t.Fatalf("forget of the locked point: %v", err)
	}

	// Another point shares two chunks in three; forgetting it and gc
	// keep the retained packs and succeed.
	rpB, err := enginetest.ImportFiles(ctx, w, "vm", t0.Add(time.Hour), writeTemp(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{rpB}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.GC(ctx, engine.GCOptions{MaxUnused: 1e-9}); err != nil {
		t.Fatalf("gc with retained packs: %v", err)
	}
	for _, p := range packs {
		if _, err := be.Stat(ctx, p.Name); err != nil {
			t.Fatalf("retained %s after gc: %v", p.Name, err)
		}
	}
	w.Close()
	r := host.open(t, engine.OpenOptions{})
	defer r.Close()
	checkRestorePoints(t, r, map[string][][]byte{rpA.Name(): {a}})
	v, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if !strings.Contains(be.String(), "s3 ") {
		t.Fatal(be.String())
	}
}
