package xapi

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Task polling: the first poll at once, then after 100 ms, doubling to 2 s.
const (
	taskPollFirst = 100 * time.Millisecond
	taskPollMax   = 2 * time.Second
)

type taskRecord struct {
	NameLabel, Status, Result string
	ErrorInfo                 []string
}

func decodeTask(ref Ref, raw json.RawMessage) (taskRecord, error) {
	f, err := newFields("task", ref, raw)
	if err != nil {
		return taskRecord{}, err
	}
	t := taskRecord{NameLabel: f.str("name_label"), Status: f.str("status"), Result: f.str("result"),
		ErrorInfo: f.strs("error_info")}
	return t, f.err()
}

type taskObserverKey struct{}

// WithTaskObserver returns ctx under which the task of every Async call
// is passed to fn as soon as xapi has accepted the call, before the call
// waits for it; an error of fn fails the call (the task runs on). A
// journal learns so which task makes an object before the object exists.
func WithTaskObserver(ctx context.Context, fn func(task string) error) context.Context {
	return context.WithValue(ctx, taskObserverKey{}, fn)
}

// observeTask tells ctx's observer (WithTaskObserver) of task.
func observeTask(ctx context.Context, task Ref) error {
	fn, _ := ctx.Value(taskObserverKey{}).(func(string) error)
	if fn == nil || task.IsNull() {
		return nil
	}
	if err := fn(string(task)); err != nil {
		return fmt.Errorf("task %s: %w", task, err)
	}
	return nil
}

// WaitTask polls a task (task.get_record) until it ends and destroys its
// record. It returns the task's result with its XML-RPC <value> wrapper
// removed when the result is a single value ("OpaqueRef:…"), else the
// result text as it is (ParseTaskResult reads arrays). A failed task is
// an *Error from its error_info; a cancelled one ErrTaskCancelled. When
// ctx ends first, WaitTask cancels the task (task.cancel) and returns
// ctx's error.
func (c *Client) WaitTask(ctx context.Context, task Ref) (string, error) {
	raw, err := c.waitTask(ctx, task)
	if err != nil {
		return "", err
	}
	if vals, scalar, err := parseResult(raw); err == nil && scalar {
		return vals[0], nil
	}
	return raw, nil
}

func (c *Client) waitTask(ctx context.Context, task Ref) (string, error) {
	delay := taskPollFirst
	timer := time.NewTimer(0)
	defer timer.Stop()
	name := string(task)
	for {
		select {
		case <-ctx.Done():
			c.cancelTask(ctx, task)
			return "", fmt.Errorf("task %s: %w (task cancelled)", name, ctx.Err())
		case <-timer.C:
		}
		var raw json.RawMessage
		if err := c.Call(ctx, "task.get_record", &raw, task); err != nil {
			if ctx.Err() != nil {
				c.cancelTask(ctx, task)
			}
			return "", fmt.Errorf("task %s: %w", name, err)
		}
		rec, err := decodeTask(task, raw)
		if err != nil {
			return "", err
		}
		if rec.NameLabel != "" {
			name = rec.NameLabel
		}
		switch rec.Status {
		case "success":
			c.destroyTask(ctx, task)
			return rec.Result, nil
		case "failure":
			c.destroyTask(ctx, task)
			if len(rec.ErrorInfo) == 0 || rec.ErrorInfo[0] == "" {
				return "", fmt.Errorf("task %s: %w without error_info", name, ErrTaskFailed)
			}
			return "", fmt.Errorf("task %s: %w", name, &taskFailure{&Error{Code: rec.ErrorInfo[0], Params: rec.ErrorInfo[1:]}})
		case "cancelled":
			c.destroyTask(ctx, task)
			return "", fmt.Errorf("task %s: %w", name, ErrTaskCancelled)
		case "pending", "cancelling":
		default:
			return "", fmt.Errorf("task %s: unknown status %q", name, rec.Status)
		}
		timer.Reset(delay)
		delay = min(2*delay, taskPollMax)
	}
}

// createTask makes a task for an HTTP transfer (task.create).
func (c *Client) createTask(ctx context.Context, label, description string) (Ref, error) {
	var t Ref
	if err := c.Call(ctx, "task.create", &t, label, description); err != nil {
		return "", err
	}
	return t, nil
}

// detached gives cleanup calls a context that outlives a cancelled ctx.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
}

func (c *Client) cancelTask(ctx context.Context, task Ref) {
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := c.Call(ctx, "task.cancel", nil, task); err != nil {
		c.log.Debug("XAPI task.cancel failed", "task", task, "err", err)
	}
}

func (c *Client) destroyTask(ctx context.Context, task Ref) {
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := c.Call(ctx, "task.destroy", nil, task); err != nil {
		c.log.Debug("XAPI task.destroy failed", "task", task, "err", err)
	}
}

// abandonTask cancels a transfer's task and destroys it once it is over
// (destroying a task a handler still runs would fail the handler).
func (c *Client) abandonTask(ctx context.Context, task Ref) {
	c.cancelTask(ctx, task)
	ctx, cancel := detached(ctx)
	defer cancel()
	var raw json.RawMessage
	if c.Call(ctx, "task.get_record", &raw, task) == nil {
		if rec, err := decodeTask(task, raw); err == nil && rec.Status != "pending" && rec.Status != "cancelling" {
			c.destroyTask(ctx, task)
		}
	}
}

// ParseTaskResult reads a task's result: XML-RPC <value> text (a single
// value, an array of values, nested arrays flattened) or a bare value. It
// returns the values in order; an empty result gives none.
func ParseTaskResult(result string) ([]string, error) {
	vals, _, err := parseResult(result)
	return vals, err
}

// parseResult also reports whether the result was one scalar value.
func parseResult(s string) (vals []string, scalar bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false, nil
	}
	if !strings.HasPrefix(s, "<") {
		return []string{s}, true, nil
	}
	d := xml.NewDecoder(strings.NewReader(s))
	n := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("task result: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "value" {
				return nil, false, fmt.Errorf("task result: <%s> where <value> was expected", t.Name.Local)
			}
			v, sc, err := parseValue(d, 0)
			if err != nil {
				return nil, false, fmt.Errorf("task result: %w", err)
			}
			vals, scalar = append(vals, v...), sc
			n++
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, false, errors.New("task result: text outside <value>")
			}
		}
	}
	return vals, n == 1 && scalar, nil
}

// parseValue reads a <value> whose start tag was read, through its end
// tag: text, one typed scalar element, an <array>, or a nested <value>.
func parseValue(d *xml.Decoder, depth int) (vals []string, scalar bool, err error) {
	if depth > 32 {
		return nil, false, errors.New("values nested too deep")
	}
	var text strings.Builder
	child := false
	scalar = true
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, unexpectedEOF(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement: // </value>: the decoder checks the nesting
			if !child {
				return []string{text.String()}, true, nil
			}
			return vals, scalar, nil
		case xml.StartElement:
			if child {
				return nil, false, errors.New("<value> holds more than one element")
			}
			child = true
			var v []string
			switch t.Name.Local {
			case "string", "int", "i4", "i8", "boolean", "double", "dateTime.iso8601", "base64":
				var s string
				s, err = elementText(d)
				v = []string{s}
			case "array":
				v, err = parseArray(d, depth)
				scalar = false
			case "value":
				v, scalar, err = parseValue(d, depth+1)
			default:
				err = fmt.Errorf("unsupported element <%s>", t.Name.Local)
			}
			if err != nil {
				return nil, false, err
			}
			vals = v
		}
	}
}

// elementText reads the text of a scalar element through its end tag.
func elementText(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", unexpectedEOF(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			return "", fmt.Errorf("unexpected <%s> in a scalar", t.Name.Local)
		case xml.EndElement:
			return b.String(), nil
		}
	}
}

// parseArray reads <data><value>…</value>…</data></array>.
func parseArray(d *xml.Decoder, depth int) ([]string, error) {
	out := []string{}
	inData := false
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case t.Name.Local == "data" && !inData:
				inData = true
			case t.Name.Local == "value" && inData:
				v, _, err := parseValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, v...)
			default:
				return nil, fmt.Errorf("unexpected <%s> in an array", t.Name.Local)
			}
		case xml.EndElement:
			if t.Name.Local == "array" {
				return out, nil
			}
			inData = false
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, errors.New("text in an array")
			}
		}
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// taskFailure is a task's own failure (its error_info): it reads as its
// *Error, and matches ErrTaskFailed.
type taskFailure struct{ err *Error }

func (f *taskFailure) Error() string        { return f.err.Error() }
func (f *taskFailure) Unwrap() error        { return f.err }
func (f *taskFailure) Is(target error) bool { return target == ErrTaskFailed }
