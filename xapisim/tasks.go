package xapisim

import (
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// task is a XenAPI task: one per Async call (run by the simulator), or
// made by task.create for a client to follow an HTTP transfer. Tasks live
// in memory only. Fields are under s.mu.
type task struct {
	ref, uuid   string
	seq         int64
	name, desc  string
	status      string // pending, success, failure, cancelling, cancelled
	progress    float64
	result      string // XML-RPC value text
	errorInfo   []string
	created     time.Time
	finished    time.Time
	otherConfig map[string]string
	async       bool // run by the simulator (an Async call)
}

func (s *Sim) taskRecord(t *task) map[string]any {
	return map[string]any{
		"uuid": t.uuid, "name_label": t.name, "name_description": t.desc,
		"allowed_operations": taskOps(t), "current_operations": map[string]string{},
		"created": xenTime(t.created), "finished": xenTime(t.finished), "status": t.status,
		"resident_on": s.m.Host.Ref, "progress": t.progress, "type": "<none/>", "result": t.result,
		"error_info": orEmpty(t.errorInfo), "other_config": orMap(t.otherConfig),
		"subtask_of": nullRef, "subtasks": []string{}, "backtrace": "()",
	}
}

func taskOps(t *task) []string {
	if t.status == "pending" {
		return []string{"cancel"}
	}
	return []string{}
}

// newTaskLocked registers a pending task. Caller holds s.mu.
func (s *Sim) newTaskLocked(name, desc string, async bool) *task {
	s.taskSeq++
	t := &task{ref: newRef(), uuid: simkit.NewUUID(), seq: s.taskSeq, name: name, desc: desc, status: "pending",
		created: time.Now(), otherConfig: map[string]string{}, async: async}
	s.tasks[t.ref] = t
	return t
}

// startTask runs an Async call in the background and returns its task.
func (s *Sim) startTask(c *call, m method) string {
	s.mu.Lock()
	t := s.newTaskLocked("Async."+c.name, "", true)
	c.task = t
	s.mu.Unlock()
	s.wg.Add(1)
	s.running.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.running.Add(-1)
		if d := s.opts.TaskDelay; d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-s.ctx.Done():
				tm.Stop()
			}
		}
		s.mu.Lock()
		cancelled := t.status == "cancelling"
		if cancelled {
			t.status, t.finished = "cancelled", time.Now()
			t.errorInfo = []string{"TASK_CANCELLED", t.ref}
		}
		s.mu.Unlock()
		if cancelled {
			return
		}
		res, err := s.run(c, m)
		s.finishTask(t.ref, res, err)
	}()
	return t.ref
}

// finishTask ends a task with a result or an error (no-op for unknown or
// ended tasks).
func (s *Sim) finishTask(ref string, res any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[ref]
	if t == nil || (t.status != "pending" && t.status != "cancelling") {
		return
	}
	t.finished, t.progress = time.Now(), 1
	if err != nil {
		xe := asXenError(err)
		t.status = "failure"
		t.errorInfo = append([]string{xe.Code}, xe.Params...)
		return
	}
	t.status = "success"
	if res != nil {
		t.result = xmlrpcValueText(res)
	}
}

// setTaskProgress updates a pending task's progress (0..1).
func (s *Sim) setTaskProgress(ref string, p float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tasks[ref]; t != nil && t.status == "pending" {
		t.progress = p
	}
}

// taskPending reports whether ref names a pending task (for task_id= of
// the HTTP handlers).
func (s *Sim) taskPending(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[ref]
	return t != nil && t.status == "pending"
}

func taskCreate(c *call) (any, error) {
	label, err := c.str(0)
	if err != nil {
		return nil, err
	}
	desc, err := c.str(1)
	if err != nil {
		return nil, err
	}
	return c.s.newTaskLocked(label, desc, false).ref, nil
}

func (c *call) taskParam(i int) (*task, error) {
	ref, err := c.str(i)
	if err != nil {
		return nil, err
	}
	t := c.s.tasks[ref]
	if t == nil {
		return nil, handleInvalid("task", ref)
	}
	return t, nil
}

func taskCancel(c *call) (any, error) {
	t, err := c.taskParam(0)
	if err != nil {
		return nil, err
	}
	if t.status != "pending" {
		return nil, xerr("OPERATION_NOT_ALLOWED", "task "+t.ref+" is "+t.status)
	}
	if t.async {
		t.status = "cancelling"
		return nil, nil
	}
	t.status, t.finished = "cancelled", time.Now()
	t.errorInfo = []string{"TASK_CANCELLED", t.ref}
	return nil, nil
}

func taskDestroy(c *call) (any, error) {
	t, err := c.taskParam(0)
	if err != nil {
		return nil, err
	}
	delete(c.s.tasks, t.ref)
	return nil, nil
}
