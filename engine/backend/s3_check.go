package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Status is what `ahvfs repo check` reports about a bucket.
type S3Status struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix"`
	// Versioning is the bucket's versioning state: "", Enabled or
	// Suspended.
	Versioning string `json:"versioning"`
	// ObjectLock reports whether the bucket has object lock enabled, and
	// DefaultRetention its default rule ("" when none).
	ObjectLock       bool   `json:"object_lock"`
	DefaultRetention string `json:"default_retention,omitempty"`
	// ClockSkew is the store's clock minus this host's (from the Date of
	// a reply; 1 s resolution).
	ClockSkew time.Duration `json:"clock_skew_ns"`
	// PendingUploads are multipart uploads under the prefix that were
	// never completed or aborted (a process killed while it stored a
	// pack); they hold space until AbortUploads removes them.
	PendingUploads int `json:"pending_uploads"`
}

// Status reads the bucket's versioning and object-lock settings, the
// store's clock and the pending multipart uploads under the prefix.
func (b *S3) Status(ctx context.Context) (*S3Status, error) {
	st := &S3Status{Endpoint: b.endpoint, Bucket: b.bucket, Prefix: b.prefix}
	before := time.Now()
	hb, err := b.cli.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.bucket})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", b.bucket, describeS3(err))
	}
	after := time.Now()
	if t, ok := awsmiddleware.GetServerTime(hb.ResultMetadata); ok {
		mid := before.Add(after.Sub(before) / 2)
		st.ClockSkew = t.Sub(mid.Truncate(time.Second))
	}
	v, err := b.cli.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &b.bucket})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: versioning: %w", b.bucket, describeS3(err))
	}
	st.Versioning = string(v.Status)
	ol, err := b.cli.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &b.bucket})
	if err == nil && ol.ObjectLockConfiguration != nil && ol.ObjectLockConfiguration.ObjectLockEnabled == "Enabled" {
		st.ObjectLock = true
		if r := ol.ObjectLockConfiguration.Rule; r != nil && r.DefaultRetention != nil {
			d := r.DefaultRetention
			st.DefaultRetention = fmt.Sprintf("%s %d days %d years", d.Mode, aws.ToInt32(d.Days), aws.ToInt32(d.Years))
		}
	}
	uploads, err := b.pendingUploads(ctx)
	if err != nil {
		return nil, err
	}
	st.PendingUploads = len(uploads)
	return st, nil
}

// pendingUpload is a multipart upload never completed.
type pendingUpload struct {
	key, id   string
	initiated time.Time
}

func (b *S3) pendingUploads(ctx context.Context) ([]pendingUpload, error) {
	var out []pendingUpload
	in := &s3.ListMultipartUploadsInput{Bucket: &b.bucket, Prefix: aws.String(b.prefix)}
	for {
		page, err := b.cli.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: list multipart uploads: %w", b.bucket, describeS3(err))
		}
		for _, u := range page.Uploads {
			out = append(out, pendingUpload{aws.ToString(u.Key), aws.ToString(u.UploadId), aws.ToTime(u.Initiated)})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// AbortUploads aborts the multipart uploads under the prefix started more
// than age ago (all of them for age 0) (by the store's clock, as the store reports them), and
// returns how many it aborted. A live upload is younger than any sensible
// age: one pack takes seconds.
func (b *S3) AbortUploads(ctx context.Context, age time.Duration) (int, error) {
	st, err := b.Status(ctx)
	if err != nil {
		return 0, err
	}
	ups, err := b.pendingUploads(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now().Add(st.ClockSkew)
	n := 0
	for _, u := range ups {
		if age > 0 && now.Sub(u.initiated) < age {
			continue // (age 0: every upload, whatever the clocks say)
		}
		if _, err := b.cli.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: &u.key, UploadId: &u.id}); err != nil {
			return n, fmt.Errorf("abort upload of %s: %w", u.key, describeS3(err))
		}
		n++
	}
	return n, nil
}
