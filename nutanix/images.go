package nutanix

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// v3UploadImage streams the bytes of an image created without a source
// (v3 PUT /images/{uuid}/file; v4 has no upload call, §4.6). Basic auth is
// used because a streamed body cannot be replayed after a 401.
func v3UploadImage(ctx context.Context, r *rest, wait func(context.Context, string) (Task, error), uuid string, body io.Reader, size int64) error {
	op := "upload image " + uuid
	if size <= 0 {
		return fmt.Errorf("%s: size must be positive", op)
	}
	resp, err := r.send(ctx, request{method: http.MethodPut, path: v3Base + "/images/" + url.PathEscape(uuid) + "/file",
		body: io.LimitReader(body, size), contentLength: size, contentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer drainClose(resp.Body)
	var acc v3Accepted
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &acc) == nil {
		if tid := acc.task(); tid != "" {
			if _, err := wait(ctx, tid); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
	}
	return nil
}

// downloadRange GETs p with a Range header. A server that ignores Range
// (200) is handled by skipping to offset; the reader is limited to length.
func downloadRange(ctx context.Context, r *rest, p string, offset, length int64) (io.ReadCloser, error) {
	op := "download " + p
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("%s: negative range", op)
	}
	h := http.Header{}
	if offset > 0 || length > 0 {
		rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if length > 0 {
			rng += strconv.FormatInt(offset+length-1, 10)
		}
		h.Set("Range", rng)
	}
	h.Set("Accept", "application/octet-stream")
	resp, err := r.send(ctx, request{method: http.MethodGet, path: p, header: h})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode == http.StatusOK && offset > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: skip to %d: %w", op, offset, err)
		}
	}
	if length == 0 {
		return resp.Body, nil
	}
	return readCloser{io.LimitReader(resp.Body, length), resp.Body}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
