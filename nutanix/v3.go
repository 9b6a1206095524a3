package nutanix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// The v3 backend (Prism Element, + v2.0 in v2.go): wire types shared by
// its calls, paging, deletes and tasks. Its calls are split by concern:
// v3_inventory.go, v3_snapshots.go, v3_provision.go.

// v3Base is the root of the intentful v3 API.
const v3Base = "/api/nutanix/v3"

// v3PageSize is the length of one v3 list page (PGC uses 100).
var v3PageSize = 100

// ---- wire types (only what ahvfs reads or writes; omit, never send null) ----

type v3Ref struct {
	Kind string `json:"kind,omitempty"`
	UUID string `json:"uuid,omitempty"`
	Name string `json:"name,omitempty"`
}

type v3Metadata struct {
	Kind        string `json:"kind"`
	UUID        string `json:"uuid,omitempty"`
	SpecVersion *int64 `json:"spec_version,omitempty"`
	Name        string `json:"name,omitempty"`
}

// v3ExecutionContext.TaskUUID is a string on create/update and a list in
// list responses (recorded pc.2024.3).
type v3ExecutionContext struct {
	TaskUUID stringOrList `json:"task_uuid"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		if one != "" {
			*s = []string{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return nil // unknown shape: ignore rather than fail the whole entity
	}
	*s = many
	return nil
}

func (s stringOrList) first() string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

type v3Status struct {
	State            string              `json:"state"`
	ExecutionContext *v3ExecutionContext `json:"execution_context"`
	MessageList      []v3Message         `json:"message_list"`
}

// v3Accepted is the 202 answer of a create/update/delete.
type v3Accepted struct {
	Metadata v3Metadata `json:"metadata"`
	Status   v3Status   `json:"status"`
	TaskUUID string     `json:"task_uuid"` // some actions answer {"task_uuid": …}
}

func (a v3Accepted) task() string {
	if a.Status.ExecutionContext != nil {
		if t := a.Status.ExecutionContext.TaskUUID.first(); t != "" {
			return t
		}
	}
	return a.TaskUUID
}

type v3ListRequest struct {
	Kind   string `json:"kind"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Filter string `json:"filter,omitempty"`
}

type v3ListResponse struct {
	Metadata struct {
		TotalMatches int `json:"total_matches"`
		Offset       int `json:"offset"`
		Length       int `json:"length"`
	} `json:"metadata"`
	Entities []json.RawMessage `json:"entities"`
}

// ---- backend ----------------------------------------------------------------

// v3Backend implements Cluster with v3 (+ v2.0 for volume groups, cluster
// and, when vm_snapshots is missing, snapshots).
type v3Backend struct {
	r       *rest
	o       Options
	v2base  string // "" when v2 is not served
	vmSnaps bool   // vm_snapshots served
	cbt     bool   // vm_snapshots + data/changed_regions served
	// rp reads and deletes v4 recovery points when the endpoint serves
	// them too (nil: it does not), so a snapshot made here through v4 is
	// found; rpUnknown says why that is not known ("" when it is).
	rp        *v4Backend
	rpUnknown string
}

var _ Cluster = (*v3Backend)(nil)

func (b *v3Backend) API() APIVersion { return APIV3 }

// v3List pages through the entities of kind and returns conv of each
// decoded one that conv keeps (ok); what names them in errors ("list
// VMs").
func v3List[T, R any](ctx context.Context, b *v3Backend, kind, what string, conv func(T) (R, bool)) ([]R, error) {
	var out []R
	err := b.listAll(ctx, kind, func(raw json.RawMessage) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %s: %w", kind, err)
		}
		if r, ok := conv(v); ok {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (b *v3Backend) listAll(ctx context.Context, kind string, each func(json.RawMessage) error) error {
	offset := 0
	for {
		var page v3ListResponse
		_, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/" + kind + "s/list",
			in: v3ListRequest{Kind: kind, Offset: offset, Length: v3PageSize}, out: &page, idempotent: true})
		if err != nil {
			return err
		}
		for _, e := range page.Entities {
			if err := each(e); err != nil {
				return err
			}
		}
		offset += len(page.Entities)
		if len(page.Entities) == 0 || offset >= page.Metadata.TotalMatches {
			return nil
		}
	}
}

// deleteEntity deletes a v3 entity and waits for its task. An entity that
// is not there is an *absentError (see deletes.go).
func (b *v3Backend) deleteEntity(ctx context.Context, kindPath, id, op string) error {
	p := v3Base + "/" + kindPath + "/" + url.PathEscape(id)
	var acc v3Accepted
	_, err := b.r.do(ctx, request{method: http.MethodDelete, path: p, out: &acc})
	return finishDelete(ctx, b.r, p, op, err, func() error {
		if tid := acc.task(); tid != "" {
			_, err := b.WaitTask(ctx, tid)
			return err
		}
		return nil
	})
}

// ---- tasks ----

func (b *v3Backend) WaitTask(ctx context.Context, taskID string) (Task, error) {
	if err := observeTask(ctx, taskID); err != nil {
		return Task{}, err
	}
	return pollTask(ctx, b.o, "task", taskID, b.getTask)
}

// getTask reads a task from v3, falling back to v2 (tasks of v2 calls).
func (b *v3Backend) getTask(ctx context.Context, id string) (Task, error) {
	var t v3Task
	_, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/tasks/" + url.PathEscape(id), out: &t})
	if err == nil {
		if t.UUID == "" {
			t.UUID = id
		}
		return t.neutral(), nil
	}
	if errors.Is(err, ErrNotFound) && b.v2base != "" {
		return b.v2GetTask(ctx, id)
	}
	return Task{}, err
}
