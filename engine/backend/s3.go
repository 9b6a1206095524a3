package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3 keeps objects in a bucket of an S3-compatible object store (AWS S3,
// MinIO, Ceph RGW, versitygw), object a/b/c as the key PREFIX/a/b/c.
//
// Put stores objects up to PartSize×2 with one PutObject and larger ones
// with a multipart upload (parts sent Concurrency at a time), which the
// store makes visible only at CompleteMultipartUpload: a reader sees the
// old object or the whole new one. Open remembers the object's ETag; each
// ReadAt is a ranged GetObject conditional on it (If-Match, and the reply's
// ETag is compared as well), so an Object overwritten while open fails
// instead of mixing versions. A large ReadAt is split into ranges read
// Concurrency at a time.
//
// Every body is sent with its CRC-32C (x-amz-checksum-crc32c), which the
// store checks before it keeps anything: a body cut short (a killed
// process, a broken connection) is refused, where some S3-compatible
// servers would store the part that arrived.
//
// Requests are retried with exponential backoff and full jitter on 5xx,
// throttling and broken connections (MaxAttempts in all), with no
// client-side retry quota: a flaky network slows a job, it does not fail it
// while retries still succeed. Checksums are sent only where the API
// requires them, which S3-compatible stores accept; the payload is not
// hashed for the signature either (UNSIGNED-PAYLOAD): every pack and record
// carries its own CRCs, checked on read.
//
// On a bucket with versioning, Delete removes every version of the key, so
// deleting frees space; a version under object-lock retention makes Delete
// fail with an error satisfying errors.Is(err, ErrRetained).
type S3 struct {
	cli       *s3.Client
	bucket    string
	prefix    string // "" or ending in "/"
	endpoint  string
	partSize  int64
	conc      int
	versioned atomic.Bool
	objLock   atomic.Bool
	closed    atomic.Bool
	http      *http.Client
	cache     *blockCache // blocks fetched ahead of sequential readers
}

var _ Backend = (*S3)(nil)

// ErrRetained is the error of a Delete (or overwrite) that the object
// store refused because the object is under object-lock retention.
var ErrRetained = errors.New("object is under retention (object lock)")

// S3Options describe where an S3 backend stores its objects and how it
// reaches the store. Credentials are held here only: nothing logs them.
type S3Options struct {
	// Endpoint is the store's URL, http://HOST:PORT or https://HOST:PORT.
	Endpoint string
	// Bucket and Prefix name where the objects go: the key of object
	// a/b is Prefix + "/" + a/b (Prefix may be empty).
	Bucket, Prefix string
	// Region signs requests (default us-east-1).
	Region string
	// AccessKeyID and SecretAccessKey authenticate every request.
	AccessKeyID, SecretAccessKey string
	// RootCAs verifies an https endpoint (nil: the system's roots).
	RootCAs *x509.CertPool
	// PartSize is the size of multipart upload parts and of the ranges a
	// large ReadAt is split into (default 8 MiB; at least 5 MiB).
	PartSize int64
	// Concurrency bounds the parts of one Put or ReadAt in flight
	// (default 4).
	Concurrency int
	// MaxAttempts bounds the tries of one request (default 10).
	MaxAttempts int
	// ReadCacheBytes bounds the blocks fetched ahead of sequential readers
	// (default 128 MiB; negative: no read cache).
	ReadCacheBytes int64
	// BlockCacheDir keeps those blocks on disk too, for the next process
	// ("": memory only); BlockCacheBytes bounds it (default 2 GiB).
	BlockCacheDir   string
	BlockCacheBytes int64
	// CreateBucket creates the bucket when it does not exist (init);
	// ObjectLock creates it with object lock enabled.
	CreateBucket, ObjectLock bool
	// Transport replaces the HTTP transport (tests: a fault-injecting
	// proxy is a simpler choice; nil: a tuned http.Transport).
	Transport http.RoundTripper
}

// ParseS3URL splits s3://BUCKET/PREFIX into its bucket and prefix. The
// prefix may be empty; it must be a valid object name.
func ParseS3URL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3://BUCKET/PREFIX location", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket (s3://BUCKET/PREFIX)", s)
	}
	if why := bucketProblem(bucket); why != "" {
		return "", "", fmt.Errorf("bucket name %q in %s: %s", bucket, s, why)
	}
	if prefix != "" {
		if err := CheckName(prefix); err != nil {
			return "", "", fmt.Errorf("prefix of %s: %w", s, err)
		}
	}
	return bucket, prefix, nil
}

// bucketProblem says what is wrong with a bucket name by S3's rules: 3 to
// 63 characters, lower-case letters, digits, dots and hyphens (and the
// underscores of old buckets), starting and ending with a letter or digit.
func bucketProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return "S3 bucket names have 3 to 63 characters"
	}
	for i, c := range b {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if (i == 0 || i == len(b)-1) && !alnum {
			return "S3 bucket names start and end with a lower-case letter or a digit"
		}
		if !alnum && c != '.' && c != '-' && c != '_' {
			return fmt.Sprintf("S3 bucket names hold lower-case letters, digits, dots and hyphens, not %q", c)
		}
	}
	return ""
}

// IsS3URL reports whether s names an S3 location.
func IsS3URL(s string) bool { return strings.HasPrefix(s, "s3://") }

// OpenS3 connects to the bucket and checks that it exists and that the
// credentials may read it (one HeadBucket request), creating it first when
// o.CreateBucket is set and it does not exist.
func OpenS3(ctx context.Context, o S3Options) (*S3, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("S3 endpoint %q: want http(s)://HOST[:PORT]", o.Endpoint)
	}
	if o.AccessKeyID == "" || o.SecretAccessKey == "" {
		return nil, errors.New("S3: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --s3-credentials-file)")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.PartSize == 0 {
		o.PartSize = 8 << 20
	}
	if o.PartSize < 5<<20 {
		return nil, fmt.Errorf("S3 part size %d: at least 5 MiB", o.PartSize)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	hc := &http.Client{Transport: o.Transport}
	if hc.Transport == nil {
		hc.Transport = newS3Transport(o.RootCAs)
	}
	cfg := aws.Config{
		Region:      o.Region,
		Credentials: credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, ""),
		HTTPClient:  hc,
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = 20 * time.Second
				so.RateLimiter = ratelimit.None
				// A body that cannot be read whole (short data, ctx done)
				// fails the same way on every try.
				so.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
					var bad *badBodyError
					if errors.As(err, &bad) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
						return aws.FalseTernary
					}
					// A reply cut short (a listing's XML) is a broken
					// connection too.
					var de *smithy.DeserializationError
					if errors.As(err, &de) && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
						return aws.TrueTernary
					}
					return aws.UnknownTernary
				})}, retry.DefaultRetryables...)
			})
		},
	}
	cli := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.BaseEndpoint = aws.String(strings.TrimSuffix(o.Endpoint, "/"))
		so.UsePathStyle = true
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	b := &S3{cli: cli, bucket: o.Bucket, endpoint: strings.TrimSuffix(o.Endpoint, "/"), partSize: o.PartSize, conc: o.Concurrency, http: hc}
	if o.ReadCacheBytes == 0 {
		o.ReadCacheBytes = 128 << 20
	}
	if o.ReadCacheBytes > 0 {
		b.cache = newBlockCache(o.ReadCacheBytes, 2*o.Concurrency)
		if o.BlockCacheDir != "" {
			if o.BlockCacheBytes <= 0 {
				o.BlockCacheBytes = 2 << 30
			}
			if b.cache.disk, err = newDiskBlocks(o.BlockCacheDir, o.BlockCacheBytes); err != nil {
				return nil, err
			}
		}
	}
	if o.Prefix != "" {
		b.prefix = strings.TrimSuffix(o.Prefix, "/") + "/"
	}
	if err := b.checkBucket(ctx, o); err != nil {
		return nil, err
	}
	return b, nil
}

// newS3Transport is an HTTP transport for many parallel ranged GETs: more
// idle connections per host than Go's default, and a bound on how long a
// reply's headers may take (a stalled store fails the try, and the
// retryer tries again).
func newS3Transport(roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
	}
}

// checkBucket makes sure the bucket is there (creating it if asked) and
// learns whether it keeps versions.
func (b *S3) checkBucket(ctx context.Context, o S3Options) error {
	_, err := b.cli.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.bucket})
	if err != nil && isNotFound(err) && o.CreateBucket {
		in := &s3.CreateBucketInput{Bucket: &b.bucket}
		if o.ObjectLock {
			in.ObjectLockEnabledForBucket = aws.Bool(true)
		}
		if o.Region != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(o.Region)}
		}
		if _, err = b.cli.CreateBucket(ctx, in); err != nil {
			return fmt.Errorf("S3 %s: create bucket %s: %w", b.endpoint, b.bucket, describeS3(err))
		}
		_, err = b.cli.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.bucket})
	}
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("S3 %s: bucket %s does not exist (ahvfs init creates it)", b.endpoint, b.bucket)
		}
		return fmt.Errorf("S3 %s: bucket %s: %w", b.endpoint, b.bucket, describeS3(err))
	}
	v, err := b.cli.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &b.bucket})
	if err == nil && v.Status != "" {
		b.versioned.Store(true)
	}
	ol, err := b.cli.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &b.bucket})
	if err == nil && ol.ObjectLockConfiguration != nil && ol.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled {
		b.objLock.Store(true)
	}
	return nil
}

// ObjectLockEnabled reports whether the bucket has object lock enabled:
// Retain then makes the store itself refuse to delete an object.
func (b *S3) ObjectLockEnabled() bool { return b.objLock.Load() }

// Retain sets COMPLIANCE retention until until on the current version of
// name, unless it already has one at least as long (the store refuses to
// shorten it). Until it passes, nobody can delete or overwrite that
// version, whatever their permissions.
func (b *S3) Retain(ctx context.Context, name string, until time.Time) error {
	if err := b.begin(ctx, "retain", name); err != nil {
		return err
	}
	key := b.Key(name)
	cur, err := b.cli.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &b.bucket, Key: &key})
	if err == nil && cur.Retention != nil && cur.Retention.RetainUntilDate != nil && !cur.Retention.RetainUntilDate.Before(until) {
		return nil
	}
	until = until.UTC()
	_, err = b.cli.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: &b.bucket, Key: &key,
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: &until}})
	if err != nil {
		return b.opError(ctx, "retain", name, err)
	}
	return nil
}

// RetainedUntil is the retention of name's current version (zero when
// none).
func (b *S3) RetainedUntil(ctx context.Context, name string) (time.Time, error) {
	if err := b.begin(ctx, "retention", name); err != nil {
		return time.Time{}, err
	}
	key := b.Key(name)
	cur, err := b.cli.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchObjectLockConfiguration" {
			return time.Time{}, nil
		}
		return time.Time{}, b.opError(ctx, "retention", name, err)
	}
	if cur.Retention == nil {
		return time.Time{}, nil
	}
	return aws.ToTime(cur.Retention.RetainUntilDate), nil
}

// Client is the S3 client (for the repository check and object lock).
func (b *S3) Client() *s3.Client { return b.cli }

// Bucket is the bucket's name.
func (b *S3) Bucket() string { return b.bucket }

// Key is the key object name is stored under.
func (b *S3) Key(name string) string { return b.prefix + name }

// String implements Backend.
func (b *S3) String() string {
	return "s3 " + b.endpoint + "/" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/")
}

// Close implements Backend. Objects opened before stay usable (their
// blocks are no longer kept on disk). Blocks queued for the disk tier are
// written first.
func (b *S3) Close() error {
	b.closed.Store(true)
	if b.cache != nil && b.cache.disk != nil {
		b.cache.closeDisk()
	}
	return nil
}

// begin checks the name, ctx and that the backend is open.
func (b *S3) begin(ctx context.Context, op, name string) error {
	if err := checkCall(ctx.Err(), op, name); err != nil {
		return err
	}
	if b.closed.Load() {
		return errClosed(op, name)
	}
	return nil
}

// Put implements Backend.
func (b *S3) Put(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	if err := b.begin(ctx, "put", name); err != nil {
		return err
	}
	if err := checkSize("put", name, size); err != nil {
		return err
	}
	var err error
	if size <= 2*b.partSize {
		var sum *string
		if sum, err = crc32cOf(data, 0, size); err == nil {
			_, err = b.cli.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &b.bucket, Key: aws.String(b.Key(name)),
				Body: newSizedReader(ctx, data, 0, size), ContentLength: aws.Int64(size),
				ChecksumCRC32C: sum,
			})
		}
	} else {
		err = b.putMultipart(ctx, name, data, size)
	}
	if err != nil {
		return b.opError(ctx, "put", name, err)
	}
	return nil
}

// Stat implements Backend.
func (b *S3) Stat(ctx context.Context, name string) (Info, error) {
	if err := b.begin(ctx, "stat", name); err != nil {
		return Info{}, err
	}
	out, err := b.cli.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: aws.String(b.Key(name))})
	if err != nil {
		return Info{}, b.opError(ctx, "stat", name, err)
	}
	return Info{Name: name, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// Open implements Backend.
func (b *S3) Open(ctx context.Context, name string) (Object, error) {
	if err := b.begin(ctx, "open", name); err != nil {
		return nil, err
	}
	out, err := b.cli.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: aws.String(b.Key(name))})
	if err != nil {
		return nil, b.opError(ctx, "open", name, err)
	}
	return &s3Object{b: b, name: name, key: b.Key(name), etag: aws.ToString(out.ETag), size: aws.ToInt64(out.ContentLength), mtime: aws.ToTime(out.LastModified)}, nil
}

// List implements Backend.
func (b *S3) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := checkPrefix(prefix); err != nil {
			yield(Info{}, fmt.Errorf("list: %w", err))
			return
		}
		if err := ctx.Err(); err != nil {
			yield(Info{}, fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		if b.closed.Load() {
			yield(Info{}, errClosed("list", prefix))
			return
		}
		p := s3.NewListObjectsV2Paginator(b.cli, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: aws.String(b.prefix + prefix)})
		last := ""
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(Info{}, b.opError(ctx, "list", prefix, err))
				return
			}
			for _, o := range page.Contents {
				name, ok := strings.CutPrefix(aws.ToString(o.Key), b.prefix)
				if !ok || CheckName(name) != nil {
					continue // not ours: a key we never write
				}
				if name <= last && last != "" {
					yield(Info{}, fmt.Errorf("list %q: the store lists %q after %q, out of order (ahvfs needs sorted listings, as general-purpose S3 buckets give)", prefix, name, last))
					return
				}
				last = name
				if !yield(Info{Name: name, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}, nil) {
					return
				}
			}
		}
	}
}

// Delete implements Backend.
func (b *S3) Delete(ctx context.Context, name string) error {
	if err := b.begin(ctx, "delete", name); err != nil {
		return err
	}
	key := b.Key(name)
	if b.versioned.Load() {
		return b.deleteVersions(ctx, name, key)
	}
	if _, err := b.cli.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key}); err != nil {
		return b.opError(ctx, "delete", name, err)
	}
	return nil
}

// deleteVersions removes every version (and delete marker) of key, so
// that deleting from a versioned bucket frees the space.
func (b *S3) deleteVersions(ctx context.Context, name, key string) error {
	p := s3.NewListObjectVersionsPaginator(b.cli, &s3.ListObjectVersionsInput{Bucket: &b.bucket, Prefix: &key})
	var ids []*string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return b.opError(ctx, "delete", name, err)
		}
		for _, v := range page.Versions {
			if aws.ToString(v.Key) == key {
				ids = append(ids, v.VersionId)
			}
		}
		for _, m := range page.DeleteMarkers {
			if aws.ToString(m.Key) == key {
				ids = append(ids, m.VersionId)
			}
		}
	}
	for _, id := range ids {
		if _, err := b.cli.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key, VersionId: id}); err != nil {
			return b.opError(ctx, "delete", name, err)
		}
	}
	return nil
}

// opError names the operation and object, maps a missing object to
// ErrNotExist and a done ctx to its error.
func (b *S3) opError(ctx context.Context, op, name string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s %s: %w", op, name, ctx.Err())
	case isNotFound(err):
		return fmt.Errorf("%s %s: %w", op, name, ErrNotExist)
	case isRetained(err):
		return fmt.Errorf("%s %s: %w (%v)", op, name, ErrRetained, describeS3(err))
	}
	return fmt.Errorf("%s %s on %s: %w", op, name, b, describeS3(err))
}

// isNotFound reports a missing key or bucket.
func isNotFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	var nb *types.NoSuchBucket
	if errors.As(err, &nk) || errors.As(err, &nf) || errors.As(err, &nb) {
		return true
	}
	return httpStatus(err) == http.StatusNotFound
}

// isRetained reports a request refused because of object lock.
func isRetained(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		return false
	}
	m := strings.ToLower(ae.ErrorMessage())
	return strings.Contains(m, "lock") || strings.Contains(m, "retention") || strings.Contains(m, "protected")
}

// httpStatus is the HTTP status of a failed request, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// describeS3 shortens the SDK's errors to what a user needs: the store's
// error code and message, and what to check for the usual ones.
func describeS3(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden":
			return fmt.Errorf("%s: %s (check the S3 credentials and the bucket policy): %w", ae.ErrorCode(), ae.ErrorMessage(), err)
		case "RequestTimeTooSkewed":
			return fmt.Errorf("%s: this host's clock differs from the store's; fix the clock (NTP): %w", ae.ErrorCode(), err)
		}
	}
	return err
}

// sizedReader reads size bytes of a ReaderAt from off as an io.ReadSeeker
// (the SDK rewinds a body to retry it), and fails when the data ends
// before size or ctx is done, so that the request is cut short and the
// store keeps nothing.
type sizedReader struct {
	ctx       context.Context
	r         io.ReaderAt
	base, pos int64
	size      int64
}

func newSizedReader(ctx context.Context, r io.ReaderAt, off, size int64) *sizedReader {
	return &sizedReader{ctx: ctx, r: r, base: off, size: size}
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, &badBodyError{err}
	}
	if s.pos >= s.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.size-s.pos)]
	n, err := s.r.ReadAt(p, s.base+s.pos)
	s.pos += int64(n)
	if cerr := s.ctx.Err(); cerr != nil {
		return n, &badBodyError{cerr}
	}
	if err == io.EOF {
		if s.pos < s.size {
			return n, &badBodyError{shortData(s.pos, s.size)}
		}
		err = nil
	}
	if err != nil {
		err = &badBodyError{err}
	}
	return n, err
}

// badBodyError is a request body that could not be read: retrying the
// request would fail the same way.
type badBodyError struct{ err error }

func (e *badBodyError) Error() string { return e.err.Error() }
func (e *badBodyError) Unwrap() error { return e.err }

func (s *sizedReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	default:
		return 0, fmt.Errorf("seek: whence %d", whence)
	}
	if off < 0 {
		return 0, fmt.Errorf("seek to %d", off)
	}
	s.pos = off
	return off, nil
}

// crc32cOf is the base64 CRC-32C of size bytes of data from off, as
// x-amz-checksum-crc32c carries it; data ending early is an error.
func crc32cOf(data io.ReaderAt, off, size int64) (*string, error) {
	buf := make([]byte, min(size, 1<<20))
	var c uint32
	for done := int64(0); done < size; {
		n, err := data.ReadAt(buf[:min(int64(len(buf)), size-done)], off+done)
		c = crc32.Update(c, castagnoli, buf[:n])
		done += int64(n)
		if err != nil && (err != io.EOF || done < size) {
			if err == io.EOF {
				return nil, &badBodyError{shortData(done, size)}
			}
			return nil, &badBodyError{err}
		}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return aws.String(base64.StdEncoding.EncodeToString(b[:])), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
