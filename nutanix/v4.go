package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The v4 backend: its envelope, paging, mutations (task + ETag) and tasks.
// Its calls are split by concern: v4_inventory.go, v4_snapshots.go,
// v4_volumes.go, v4_provision.go.

// v4PageSize is $limit for v4 lists (the server maximum is 100).
var v4PageSize = 100

// ---- envelope ----

type v4Response[T any] struct {
	Data     T          `json:"data"`
	Metadata v4Metadata `json:"metadata"`
}

type v4Metadata struct {
	TotalAvailableResults int `json:"totalAvailableResults"`
	Links                 []struct {
		Href string `json:"href"`
		Rel  string `json:"rel"`
	} `json:"links"`
	ExtraInfo []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	} `json:"extraInfo"`
}

func (m v4Metadata) extra(name string) (int64, bool) {
	for _, e := range m.ExtraInfo {
		if strings.EqualFold(e.Name, name) {
			s := kvString(e.Value)
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

type v4Ref struct {
	ExtID string `json:"extId,omitempty"`
}

type v4IP struct {
	IPv4 *struct {
		Value string `json:"value"`
	} `json:"ipv4"`
	IPv6 *struct {
		Value string `json:"value"`
	} `json:"ipv6"`
}

func (ip *v4IP) String() string {
	switch {
	case ip == nil:
		return ""
	case ip.IPv4 != nil && ip.IPv4.Value != "":
		return ip.IPv4.Value
	case ip.IPv6 != nil:
		return ip.IPv6.Value
	}
	return ""
}

// ---- backend ----

// v4Backend implements Cluster with the v4 namespaces. Image upload (and
// subnets without networking) go through v3 on the same Prism Central.
type v4Backend struct {
	r   *rest
	o   Options
	rev map[string]string
	v3  *v3Backend // nil when v3 is not served
}

var _ Cluster = (*v4Backend)(nil)

func (b *v4Backend) API() APIVersion { return APIV4 }

func (b *v4Backend) p(ns, rest string) string { return "/api/" + ns + "/" + b.rev[ns] + rest }

func v4ListAll[T any](ctx context.Context, b *v4Backend, path string, q url.Values, each func(T) error) error {
	seen := 0
	for page := 0; ; page++ {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("$page", strconv.Itoa(page))
		qq.Set("$limit", strconv.Itoa(v4PageSize))
		var r v4Response[[]T]
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: path, query: qq, out: &r}); err != nil {
			return err
		}
		for _, e := range r.Data {
			if err := each(e); err != nil {
				return err
			}
		}
		seen += len(r.Data)
		total := r.Metadata.TotalAvailableResults
		if len(r.Data) == 0 || len(r.Data) < v4PageSize || (total > 0 && seen >= total) {
			return nil
		}
	}
}

// taskRef decodes a mutation's data = TaskReference{extId}.
type v4TaskRef = v4Response[struct {
	ExtID string `json:"extId"`
}]

// mutate sends a v4 mutation and waits for the task it returns.
func (b *v4Backend) mutate(ctx context.Context, op string, rq request) (Task, error) {
	var tr v4TaskRef
	rq.out = &tr
	if _, err := b.r.do(ctx, rq); err != nil {
		return Task{}, fmt.Errorf("%s: %w", op, err)
	}
	t, err := b.WaitTask(ctx, tr.Data.ExtID)
	if err != nil {
		return t, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// etag GETs path and returns its ETag (for If-Match).
func (b *v4Backend) etag(ctx context.Context, path string) (string, error) {
	resp, err := b.r.do(ctx, request{method: http.MethodGet, path: path, out: new(map[string]any)})
	if err != nil {
		return "", err
	}
	return resp.Header.Get("ETag"), nil
}

// ifMatch is the header that makes a write conditional on tag (none
// when the entity gave no ETag).
func ifMatch(tag string) http.Header {
	h := http.Header{}
	if tag != "" {
		h.Set("If-Match", tag)
	}
	return h
}

// deleteWithETag GETs the entity for its ETag, DELETEs with If-Match and
// waits for the task. An entity that is not there is an *absentError (see
// deletes.go).
func (b *v4Backend) deleteWithETag(ctx context.Context, path, op string) error {
	tag, err := b.etag(ctx, path)
	if errors.Is(err, ErrNotFound) {
		return &absentError{op: op}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var tr v4TaskRef
	_, err = b.r.do(ctx, request{method: http.MethodDelete, path: path, header: ifMatch(tag), out: &tr})
	return finishDelete(ctx, b.r, path, op, err, func() error {
		_, err := b.WaitTask(ctx, tr.Data.ExtID)
		return err
	})
}

// ---- tasks ----

func (b *v4Backend) WaitTask(ctx context.Context, taskID string) (Task, error) {
	if err := observeTask(ctx, taskID); err != nil {
		return Task{}, err
	}
	return pollTask(ctx, b.o, "task", taskID, func(ctx context.Context, id string) (Task, error) {
		var r v4Response[v4Task]
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("prism", "/config/tasks/"+url.PathEscape(id)), out: &r}); err != nil {
			return Task{}, err
		}
		if r.Data.ExtID == "" {
			r.Data.ExtID = id
		}
		return r.Data.neutral(), nil
	})
}
