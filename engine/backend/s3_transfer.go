package backend

import (
	"context"
	"errors"
	"fmt"
	"github.com/aws/smithy-go"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// putMultipart stores a large object as a multipart upload, parts sent
// b.conc at a time. The object appears only when the upload completes; a
// failed or cancelled one is aborted (with a context of its own, since
// ctx may be the reason), so the store keeps no parts.
func (b *S3) putMultipart(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	key := b.Key(name)
	up, err := b.cli.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.bucket, Key: &key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		return err
	}
	abort := func(err error) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		b.cli.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: &key, UploadId: up.UploadId})
		return err
	}
	nparts := int((size + b.partSize - 1) / b.partSize)
	parts := make([]types.CompletedPart, nparts)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		first   error
	)
	for range min(b.conc, nparts) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= nparts || pctx.Err() != nil {
					return
				}
				off := int64(i) * b.partSize
				n := min(b.partSize, size-off)
				num := aws.Int32(int32(i + 1))
				sum, err := crc32cOf(data, off, n)
				var out *s3.UploadPartOutput
				if err == nil {
					out, err = b.cli.UploadPart(pctx, &s3.UploadPartInput{Bucket: &b.bucket, Key: &key, UploadId: up.UploadId,
						PartNumber: num, Body: newSizedReader(pctx, data, off, n), ContentLength: aws.Int64(n), ChecksumCRC32C: sum})
				}
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("part %d of %d: %w", i+1, nparts, err); cancel() })
					return
				}
				parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: num, ChecksumCRC32C: sum}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return abort(first)
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if _, err := b.cli.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &b.bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		if b.completedAnyway(ctx, key, err, size, nparts) {
			return nil
		}
		return abort(err)
	}
	return nil
}

// completedAnyway reports whether a CompleteMultipartUpload that failed
// had in fact completed: its reply was lost and the SDK's retry found the
// upload gone (NoSuchUpload), while the object is there with the size and
// the part count (the "-N" of a multipart ETag) of this upload.
func (b *S3) completedAnyway(ctx context.Context, key string, err error, size int64, nparts int) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "NoSuchUpload" || ctx.Err() != nil {
		return false
	}
	h, herr := b.cli.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &key})
	if herr != nil || aws.ToInt64(h.ContentLength) != size {
		return false
	}
	return strings.HasSuffix(strings.Trim(aws.ToString(h.ETag), `"`), "-"+strconv.Itoa(nparts))
}

// s3Object is an open object: its key, size and the ETag every read is
// conditional on.
type s3Object struct {
	b      *S3
	name   string
	key    string
	etag   string
	size   int64
	mtime  time.Time
	closed atomic.Bool
	// lastEnd is where the last read ended (sequential detection).
	lastEnd atomic.Int64
}

func (o *s3Object) Size() int64 { return o.size }

func (o *s3Object) Close() error {
	o.closed.Store(true)
	return nil
}

// ReadAt implements io.ReaderAt: one ranged GET, or for a read longer than
// two parts, ranges of PartSize read Concurrency at a time.
func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if o.closed.Load() {
		return 0, fmt.Errorf("read %s: object closed", o.name)
	}
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", o.name, off)
	}
	if off >= o.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := min(int64(len(p)), o.size-off)
	var err error
	seq := o.sequential(off, want)
	switch {
	case o.fromCache(p[:want], off):
	case o.b.cache != nil && seq && want < s3BlockSize && o.viaBlocks(p[:want], off):
	case want <= 2*o.b.partSize:
		err = o.get(p[:want], off)
	default:
		err = o.getParallel(p[:want], off)
	}
	if err != nil {
		return 0, err
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return int(want), nil
}

// getParallel fills p from off with ranges of PartSize, Concurrency at a
// time.
func (o *s3Object) getParallel(p []byte, off int64) error {
	ps := o.b.partSize
	n := (int64(len(p)) + ps - 1) / ps
	var next atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var first error
	var failed atomic.Bool
	for range min(int64(o.b.conc), n) {
		wg.Go(func() {
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				lo := i * ps
				hi := min(lo+ps, int64(len(p)))
				if err := o.get(p[lo:hi], off+lo); err != nil {
					errOnce.Do(func() { first = err; failed.Store(true) })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// changed reports a reply that is not of the version Open saw: another
// ETag, total size or modification time. The server checks If-Match too,
// but a server that checks it before it opens the object (versitygw does)
// can serve a version stored in between; its size or time gives it away.
func (o *s3Object) changed(out *s3.GetObjectOutput) bool {
	if et := aws.ToString(out.ETag); et != "" && et != o.etag {
		return true
	}
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if total, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil && total != o.size {
				return true
			}
		}
	}
	return out.LastModified != nil && !o.mtime.IsZero() && !out.LastModified.Equal(o.mtime)
}

// get fills p with the bytes from off, all within the object, with one
// ranged GET conditional on the ETag seen at Open. A body cut short is
// read again from where it stopped (the SDK retries only until the reply's
// headers).
func (o *s3Object) get(p []byte, off int64) error {
	ctx := context.Background()
	done := 0
	for attempt := 0; done < len(p); attempt++ {
		lo := off + int64(done)
		hi := off + int64(len(p)) - 1
		out, err := o.b.cli.GetObject(ctx, &s3.GetObjectInput{Bucket: &o.b.bucket, Key: &o.key,
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", lo, hi)), IfMatch: aws.String(o.etag)})
		if err != nil {
			if httpStatus(err) == http.StatusPreconditionFailed {
				return fmt.Errorf("read %s: %w", o.name, ErrChanged)
			}
			return o.b.opError(ctx, "read", o.name, err)
		}
		if o.changed(out) {
			out.Body.Close()
			return fmt.Errorf("read %s: %w", o.name, ErrChanged)
		}
		n, err := io.ReadFull(out.Body, p[done:])
		out.Body.Close()
		done += n
		if err == nil {
			return nil
		}
		if attempt >= 5 {
			return fmt.Errorf("read %s at %d: %w (after %d tries)", o.name, off+int64(done), err, attempt+1)
		}
		time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
	}
	return nil
}
