package nutanix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

type taskObserverKey struct{}

// WithTaskObserver returns ctx under which every task a call submits is
// passed to fn as soon as the cluster has accepted it, before the call
// waits for it; an error of fn fails the call (the task runs on). A
// journal learns so which task makes an object before the object exists:
// a process killed while the task runs leaves its ID to wait for.
func WithTaskObserver(ctx context.Context, fn func(taskID string) error) context.Context {
	return context.WithValue(ctx, taskObserverKey{}, fn)
}

// detached is ctx for the client's own clean-up of a call that failed:
// not cancelled with ctx, and without its task observer (the clean-up's
// tasks make nothing).
func detached(ctx context.Context) context.Context {
	return context.WithValue(context.WithoutCancel(ctx), taskObserverKey{}, nil)
}

// observeTask tells ctx's observer (WithTaskObserver) of task id.
func observeTask(ctx context.Context, id string) error {
	fn, _ := ctx.Value(taskObserverKey{}).(func(string) error)
	if fn == nil || id == "" {
		return nil
	}
	if err := fn(id); err != nil {
		return fmt.Errorf("task %s: %w", id, err)
	}
	return nil
}

// pollTask calls get until the task is terminal, with a delay starting at
// Options.TaskPollInterval and growing to 5s, bounded by
// Options.TaskTimeout. Transient errors of one poll (already retried by the
// transport) end the wait; so does ctx.
func pollTask(ctx context.Context, o Options, op, id string, get func(context.Context, string) (Task, error)) (Task, error) {
	if id == "" {
		return Task{}, fmt.Errorf("%s: no task id in the response", op)
	}
	deadline := time.Now().Add(o.TaskTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	delay := o.TaskPollInterval
	var last Task
	for {
		t, err := get(ctx, id)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
				return last, fmt.Errorf("%s: task %s still %s: %w", op, id, last.Status, ErrTaskTimeout)
			}
			return last, fmt.Errorf("%s: poll task %s: %w", op, id, err)
		}
		last = t
		if t.Status.Terminal() {
			if t.Status != TaskSucceeded {
				return t, &TaskError{Op: op, Task: t}
			}
			return t, nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return last, fmt.Errorf("%s: task %s still %s after %s: %w", op, id, last.Status, o.TaskTimeout, ErrTaskTimeout)
			}
			return last, ctx.Err()
		case <-timer.C:
		}
		delay = min(delay*3/2, 5*time.Second)
	}
}

// normStatus upper-cases v2's mixed-case statuses ("Succeeded") and maps
// synonyms.
func normStatus(s string) TaskStatus {
	s = strings.ToUpper(strings.TrimSpace(s))
	switch s {
	case "CANCELLED":
		return TaskCanceled
	case "COMPLETE", "COMPLETED", "SUCCESS":
		return TaskSucceeded
	case "NONE", "":
		return TaskQueued
	}
	return TaskStatus(s)
}

// --- v3 task -----------------------------------------------------------------

type v3Task struct {
	UUID                string  `json:"uuid"`
	Status              string  `json:"status"`
	PercentageComplete  int     `json:"percentage_complete"`
	ProgressMessage     string  `json:"progress_message"`
	OperationType       string  `json:"operation_type"`
	ErrorCode           any     `json:"error_code"`
	ErrorDetail         string  `json:"error_detail"`
	EntityReferenceList []v3Ref `json:"entity_reference_list"`
}

func (t v3Task) neutral() Task {
	out := Task{ID: t.UUID, Status: normStatus(t.Status), Progress: t.PercentageComplete, Error: t.ErrorDetail}
	if out.Error == "" && t.ErrorCode != nil && fmt.Sprint(t.ErrorCode) != "" && fmt.Sprint(t.ErrorCode) != "0" {
		out.Error = fmt.Sprintf("error code %v", t.ErrorCode)
	}
	for _, r := range t.EntityReferenceList {
		out.Entities = append(out.Entities, TaskEntity{Kind: strings.ToLower(r.Kind), UUID: r.UUID, Name: r.Name})
	}
	return out
}

// --- v2 task -----------------------------------------------------------------

type v2Task struct {
	UUID               string `json:"uuid"`
	ProgressStatus     string `json:"progress_status"`
	PercentageComplete int    `json:"percentage_complete"`
	OperationType      string `json:"operation_type"`
	MetaResponse       struct {
		ErrorCode   any    `json:"error_code"`
		ErrorDetail string `json:"error_detail"`
	} `json:"meta_response"`
	EntityList []struct {
		EntityID   string `json:"entity_id"`
		EntityName string `json:"entity_name"`
		EntityType string `json:"entity_type"`
	} `json:"entity_list"`
}

func (t v2Task) neutral() Task {
	out := Task{ID: t.UUID, Status: normStatus(t.ProgressStatus), Progress: t.PercentageComplete, Error: t.MetaResponse.ErrorDetail}
	for _, e := range t.EntityList {
		out.Entities = append(out.Entities, TaskEntity{Kind: strings.ToLower(e.EntityType), UUID: e.EntityID, Name: e.EntityName})
	}
	return out
}

// --- v4 task -----------------------------------------------------------------

type v4Task struct {
	ExtID              string `json:"extId"`
	Status             string `json:"status"`
	ProgressPercentage int    `json:"progressPercentage"`
	Operation          string `json:"operation"`
	EntitiesAffected   []struct {
		ExtID string `json:"extId"`
		Name  string `json:"name"`
		Rel   string `json:"rel"`
	} `json:"entitiesAffected"`
	CompletionDetails []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	} `json:"completionDetails"`
	ErrorMessages      []v4AppMessage `json:"errorMessages"`
	LegacyErrorMessage string         `json:"legacyErrorMessage"`
}

func (t v4Task) neutral() Task {
	out := Task{ID: t.ExtID, Status: normStatus(t.Status), Progress: t.ProgressPercentage}
	for _, e := range t.EntitiesAffected {
		out.Entities = append(out.Entities, TaskEntity{Kind: strings.ToLower(e.Rel), UUID: e.ExtID, Name: e.Name})
	}
	if len(t.CompletionDetails) > 0 {
		out.Details = map[string]string{}
		for _, d := range t.CompletionDetails {
			out.Details[d.Name] = kvString(d.Value)
		}
	}
	var msgs []string
	for _, m := range t.ErrorMessages {
		s := m.Message
		if m.Code != "" {
			s = m.Code + ": " + s
		}
		msgs = append(msgs, s)
	}
	if t.LegacyErrorMessage != "" {
		msgs = append(msgs, t.LegacyErrorMessage)
	}
	out.Error = strings.Join(msgs, "; ")
	return out
}

// kvString renders a v4 KVPair value, which is a oneOf (string, int, bool,
// string list, map…) sometimes wrapped as {"value": …}.
func kvString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return fmt.Sprintf("%.0f", x)
	case []any:
		if len(x) > 0 {
			return kvString(x[0])
		}
		return ""
	case map[string]any:
		if vv, ok := x["value"]; ok {
			return kvString(vv)
		}
	}
	return fmt.Sprint(v)
}

// entity returns the first task entity whose kind contains one of kinds
// (case-insensitive), else the first entity, else "".
func (t Task) entity(kinds ...string) string {
	for _, k := range kinds {
		for _, e := range t.Entities {
			if strings.Contains(e.Kind, k) && e.UUID != "" {
				return e.UUID
			}
		}
	}
	return ""
}
