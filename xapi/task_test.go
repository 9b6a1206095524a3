package xapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
)

func TestSnapshotTask(t *testing.T) {
	f := newFake(t)
	f.handle("Async.VM.snapshot", func(p []json.RawMessage) (any, error) {
		if str(p[0]) != "OpaqueRef:vm" || str(p[1]) != "ahvfs-1" {
			t.Errorf("snapshot params %s", p)
		}
		return "OpaqueRef:task", nil
	})
	ft := f.task("OpaqueRef:task", taskRec("pending", ""), taskRec("pending", ""), taskRec("success", "<value>OpaqueRef:snap</value>"))
	snap, err := f.connect(t).Snapshot(context.Background(), "OpaqueRef:vm", "ahvfs-1")
	if err != nil || snap != "OpaqueRef:snap" {
		t.Fatalf("Snapshot = %q, %v", snap, err)
	}
	if polls, destroyed, cancelled := ft.state(); polls != 3 || !destroyed || cancelled {
		t.Errorf("polls %d destroyed %v cancelled %v", polls, destroyed, cancelled)
	}
}

func TestTaskFailure(t *testing.T) {
	f := newFake(t)
	f.returns("Async.VM.hard_shutdown", "OpaqueRef:task")
	ft := f.task("OpaqueRef:task", taskRec("failure", "", "VM_BAD_POWER_STATE", "OpaqueRef:vm", "running", "halted"))
	err := f.connect(t).HardShutdown(context.Background(), "OpaqueRef:vm")
	var xe *xapi.Error
	if !errors.As(err, &xe) || xe.Code != xapi.CodeVMBadPowerState || !reflect.DeepEqual(xe.Params, []string{"OpaqueRef:vm", "running", "halted"}) {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "VM.hard_shutdown", "Async.VM.snapshot", "VM_BAD_POWER_STATE")
	if !errors.Is(err, xapi.ErrTaskFailed) {
		t.Errorf("a task's own failure does not match ErrTaskFailed: %v", err)
	}
	if _, destroyed, _ := ft.state(); !destroyed {
		t.Error("failed task not destroyed")
	}

	f.task("OpaqueRef:task", taskRec("cancelled", ""))
	if err := f.connect(t).HardShutdown(context.Background(), "OpaqueRef:vm"); !errors.Is(err, xapi.ErrTaskCancelled) {
		t.Errorf("cancelled task: %v", err)
	}
	f.task("OpaqueRef:task", taskRec("failure", ""))
	if err := f.connect(t).HardShutdown(context.Background(), "OpaqueRef:vm"); !errors.Is(err, xapi.ErrTaskFailed) {
		t.Errorf("failure without error_info: %v", err)
	}
	f.task("OpaqueRef:task", taskRec("exploded", ""))
	if err := f.connect(t).HardShutdown(context.Background(), "OpaqueRef:vm"); err == nil {
		t.Error("unknown status accepted")
	}
}

func TestTaskCancelledByContext(t *testing.T) {
	f := newFake(t)
	c := f.connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ft := f.task("OpaqueRef:task", taskRec("pending", ""))
	getRecord := f.methods["task.get_record"]
	f.handle("task.get_record", func(p []json.RawMessage) (any, error) {
		if polls, _, _ := ft.state(); polls == 1 {
			cancel() // the caller gives up while the task runs
		}
		return getRecord(p)
	})
	_, err := c.WaitTask(ctx, "OpaqueRef:task")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, destroyed, cancelled := ft.state(); !cancelled || destroyed {
		t.Errorf("task.cancel %v, task.destroy %v", cancelled, destroyed)
	}
}

func TestWaitTaskResult(t *testing.T) {
	f := newFake(t)
	c := f.connect(t)
	for _, tc := range []struct{ result, want string }{
		{"", ""},
		{"<value>OpaqueRef:a</value>", "OpaqueRef:a"},
		{"<value><string>a&amp;b</string></value>", "a&b"},
		{"OpaqueRef:bare", "OpaqueRef:bare"},
		{"<value><array><data><value>OpaqueRef:a</value></data></array></value>", "<value><array><data><value>OpaqueRef:a</value></data></array></value>"},
	} {
		f.task("OpaqueRef:t", taskRec("success", tc.result))
		got, err := c.WaitTask(context.Background(), "OpaqueRef:t")
		if err != nil || got != tc.want {
			t.Errorf("WaitTask(%q) = %q, %v; want %q", tc.result, got, err, tc.want)
		}
	}
}

func TestParseTaskResult(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: "  OpaqueRef:a  ", want: []string{"OpaqueRef:a"}},
		{in: "<value>OpaqueRef:a</value>", want: []string{"OpaqueRef:a"}},
		{in: "<value></value>", want: []string{""}},
		{in: "<value><array><data><value>OpaqueRef:a</value></data></array></value>", want: []string{"OpaqueRef:a"}},
		{in: "<value><array><data>\n <value>OpaqueRef:a</value>\n <value><string>OpaqueRef:b</string></value>\n</data></array></value>",
			want: []string{"OpaqueRef:a", "OpaqueRef:b"}},
		{in: "<value><array><data/></array></value>", want: nil},
		{in: "<value><value>x</value></value>", want: []string{"x"}},
		{in: "<value>a</value><value>b</value>", want: []string{"a", "b"}},
		{in: "<value><array><data><value><array><data><value>n</value></data></array></value></data></array></value>", want: []string{"n"}},
		{in: "<value>a", bad: true},
		{in: "<struct/>", bad: true},
		{in: "<value><struct><member/></struct></value>", bad: true},
		{in: "<value><string>a</string><string>b</string></value>", bad: true},
		{in: "<value><string><b/></string></value>", bad: true},
		{in: "x<value>a</value>", want: []string{"x<value>a</value>"}},
		{in: "<value>a</value>junk", bad: true},
		{in: "<value><array><x/></array></value>", bad: true},
	} {
		got, err := xapi.ParseTaskResult(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseTaskResult(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseTaskResult(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestTaskPollError: an XAPI error of polling the task (not the task's
// own failure) does not match ErrTaskFailed: the task may still run.
func TestTaskPollError(t *testing.T) {
	f := newFake(t)
	f.returns("Async.VM.hard_shutdown", "OpaqueRef:task")
	f.handle("task.get_record", func([]json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "PERMISSION_DENIED"}
	})
	err := f.connect(t).HardShutdown(context.Background(), "OpaqueRef:vm")
	if err == nil || errors.Is(err, xapi.ErrTaskFailed) || !xapi.IsCode(err, "PERMISSION_DENIED") {
		t.Fatalf("poll error: %v", err)
	}
}
