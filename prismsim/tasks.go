package prismsim

import (
	"net/http"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// task is an asynchronous operation, visible through v3 (/tasks/{uuid}), v2
// (/tasks/{uuid}) and v4 (/api/prism/v4.x/config/tasks/{extId}).
type task struct {
	UUID        string            `json:"uuid"`
	Op          string            `json:"op"` // operation_type
	Status      string            `json:"status"`
	Percent     int               `json:"percent"`
	Message     string            `json:"message,omitempty"`
	ErrCode     string            `json:"err_code,omitempty"`
	ErrDetail   string            `json:"err_detail,omitempty"`
	Entities    []taskEntity      `json:"entities"`
	ClusterUUID string            `json:"cluster_uuid"`
	Created     time.Time         `json:"created"`
	Started     time.Time         `json:"started,omitzero"`
	Completed   time.Time         `json:"completed,omitzero"`
	LogicalTS   int64             `json:"logical_ts"`
	Details     map[string]string `json:"details,omitempty"` // v4 completionDetails
}

type taskEntity struct {
	Kind string `json:"kind"` // v3 kind: vm, vm_snapshot, image, volume_group, ...
	UUID string `json:"uuid"`
	Name string `json:"name,omitempty"`
}

const v4TaskPrefix = "ZXJnb24=:" // base64("ergon") + ":"

func terminal(status string) bool {
	return status == "SUCCEEDED" || status == "FAILED" || status == "ABORTED"
}

// startTask registers a task and runs it in the background: QUEUED, then
// RUNNING, then SUCCEEDED (running done under s.mu first) or FAILED with
// failMsg when failMsg is not empty. The caller holds s.mu.
func (s *Sim) startTask(op, clusterUUID string, ents []taskEntity, failMsg string, done func()) *task {
	return s.startWorkTask(op, clusterUUID, ents, failMsg, nil, done)
}

// startWorkTask is startTask with work run while the task is RUNNING,
// without the simulator's lock: its error fails the task.
func (s *Sim) startWorkTask(op, clusterUUID string, ents []taskEntity, failMsg string, work func() error, done func()) *task {
	t := &task{
		UUID:        simkit.NewUUID(),
		Op:          op,
		Status:      "QUEUED",
		Entities:    ents,
		ClusterUUID: clusterUUID,
		Created:     time.Now(),
		LogicalTS:   1,
	}
	if t.ClusterUUID == "" {
		t.ClusterUUID = s.m.Clusters[1].UUID
	}
	s.m.Tasks[t.UUID] = t
	s.save()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sleep(s.opts.TaskDelay)
		s.mu.Lock()
		t.Status, t.Percent, t.Started, t.Message = "RUNNING", 50, time.Now(), op+" in progress"
		t.LogicalTS++
		s.save()
		s.mu.Unlock()
		s.pass(op)
		if work != nil && failMsg == "" {
			if err := work(); err != nil {
				failMsg = err.Error()
			}
		}
		s.sleep(s.opts.TaskDelay)
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Completed = time.Now()
		t.LogicalTS++
		if failMsg != "" {
			t.Status, t.ErrCode, t.ErrDetail, t.Message = "FAILED", "kInternalError", failMsg, failMsg
		} else {
			if done != nil {
				done()
			}
			t.Status, t.Percent, t.Message = "SUCCEEDED", 100, ""
		}
		s.save()
	}()
	return t
}

// sleep waits d or until the simulator closes.
func (s *Sim) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-s.ctx.Done():
	}
}

// recoverTasks finishes tasks and entities left in flight by a previous run.
func (s *Sim) recoverTasks() {
	for _, t := range s.m.Tasks {
		if !terminal(t.Status) {
			t.Status, t.Percent, t.Completed = "FAILED", 100, time.Now()
			t.ErrDetail = "simulator restarted while the task ran"
		}
	}
	for _, v := range s.m.VMs {
		v.State = "COMPLETE"
	}
	for _, sn := range s.m.Snapshots {
		sn.State = "COMPLETE"
	}
	for _, im := range s.m.Images {
		if im.State == "PENDING" {
			im.State = "COMPLETE"
		}
	}
}

// WaitTasks blocks until no task is QUEUED or RUNNING (or timeout).
func (s *Sim) WaitTasks(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		busy := false
		for _, t := range s.m.Tasks {
			if !terminal(t.Status) {
				busy = true
				break
			}
		}
		s.mu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitIdle waits until the simulator serves no API request and runs no
// task, and has been so for quiet (100ms when 0): a client killed with
// SIGKILL may leave requests it sent still being served, whose effects a
// crash test must see before it compares inventories. false when timeout
// passed first.
func (s *Sim) WaitIdle(timeout, quiet time.Duration) bool {
	if quiet == 0 {
		quiet = 100 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		idle := s.busy.Load() == 0 && time.Since(time.Unix(0, s.lastBusy.Load())) >= quiet
		if idle && s.WaitTasks(0) && s.busy.Load() == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Sim) taskByID(id string) *task {
	return s.m.Tasks[strings.TrimPrefix(id, v4TaskPrefix)]
}

func usecs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// ---------- v3 ----------

func (s *Sim) v3Task(t *task) obj {
	ents := []obj{}
	for _, e := range t.Entities {
		o := obj{"kind": e.Kind, "uuid": e.UUID}
		if e.Name != "" {
			o["name"] = e.Name
		}
		ents = append(ents, o)
	}
	o := obj{
		"api_version":            "3.1",
		"uuid":                   t.UUID,
		"status":                 t.Status,
		"percentage_complete":    t.Percent,
		"progress_message":       t.Message,
		"operation_type":         t.Op,
		"entity_reference_list":  ents,
		"subtask_reference_list": []obj{},
		"cluster_reference":      obj{"kind": "cluster", "uuid": t.ClusterUUID},
		"creation_time":          rfc3339(t.Created),
		"creation_time_usecs":    usecs(t.Created),
		"last_update_time":       rfc3339(maxTime(t.Created, t.Started, t.Completed)),
		"logical_timestamp":      t.LogicalTS,
	}
	if !t.Started.IsZero() {
		o["start_time"] = rfc3339(t.Started)
		o["start_time_usecs"] = usecs(t.Started)
	}
	if !t.Completed.IsZero() {
		o["completion_time"] = rfc3339(t.Completed)
		o["completion_time_usecs"] = usecs(t.Completed)
	}
	if t.Status == "FAILED" {
		o["error_code"] = t.ErrCode
		o["error_detail"] = t.ErrDetail
	}
	return o
}

func maxTime(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func (s *Sim) v3GetTask(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Task %s not found", s.taskByID, func(t *task) {
		simkit.WriteJSON(w, http.StatusOK, s.v3Task(t))
	})
}

func (s *Sim) v3PollTasks(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TaskUUIDList       []string `json:"task_uuid_list"`
		PollTimeoutSeconds int      `json:"poll_timeout_seconds"`
	}
	if !s.decodeJSON(w, r, &req, true) {
		return
	}
	deadline := time.Now().Add(time.Duration(min(max(req.PollTimeoutSeconds, 0), 30)) * time.Second)
	for {
		s.mu.Lock()
		var ents []obj
		all := true
		for _, id := range req.TaskUUIDList {
			t := s.taskByID(id)
			if t == nil {
				s.mu.Unlock()
				v3Error(w, http.StatusNotFound, "task", "ENTITY_NOT_FOUND", "Task "+id+" not found")
				return
			}
			if !terminal(t.Status) {
				all = false
			}
			ents = append(ents, s.v3Task(t))
		}
		s.mu.Unlock()
		if all || time.Now().After(deadline) {
			simkit.WriteJSON(w, http.StatusOK, obj{"entities": ents, "has_poll_timed_out": !all})
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Sim) v3ListTasks(w http.ResponseWriter, r *http.Request) {
	var req listReq
	if !s.decodeJSON(w, r, &req, false) {
		return
	}
	s.mu.Lock()
	var all []obj
	for _, t := range s.m.Tasks {
		all = append(all, s.v3Task(t))
	}
	s.mu.Unlock()
	simkit.WriteJSON(w, http.StatusOK, obj{"api_version": "3.1", "entities": all,
		"metadata": obj{"kind": "task", "total_matches": len(all), "offset": 0, "length": len(all)}})
}

// ---------- v2 ----------

var v2Status = map[string]string{"QUEUED": "Queued", "RUNNING": "Running", "SUCCEEDED": "Succeeded", "FAILED": "Failed", "ABORTED": "Aborted"}

var v2EntityType = map[string]string{"vm": "VM", "vm_snapshot": "Snapshot", "snapshot": "Snapshot", "volume_group": "VolumeGroup", "image": "Image", "recovery_point": "RecoveryPoint"}

func (s *Sim) v2Task(t *task) obj {
	ents := []obj{}
	for _, e := range t.Entities {
		et := v2EntityType[e.Kind]
		if et == "" {
			et = e.Kind
		}
		ents = append(ents, obj{"entity_id": e.UUID, "entity_type": et, "entity_name": e.Name})
	}
	o := obj{
		"uuid":                    t.UUID,
		"operation_type":          t.Op,
		"progress_status":         v2Status[t.Status],
		"percentage_complete":     t.Percent,
		"entity_list":             ents,
		"cluster_uuid":            t.ClusterUUID,
		"create_time_usecs":       usecs(t.Created),
		"last_updated_time_usecs": usecs(maxTime(t.Created, t.Started, t.Completed)),
		"subtask_uuid_list":       []string{},
		"meta_request":            obj{"method_name": t.Op},
		"message":                 t.Message,
	}
	if !t.Started.IsZero() {
		o["start_time_usecs"] = usecs(t.Started)
	}
	if !t.Completed.IsZero() {
		o["complete_time_usecs"] = usecs(t.Completed)
	}
	if t.Status == "FAILED" {
		o["meta_response"] = obj{"error_code": 1, "error_detail": t.ErrDetail}
	} else if t.Status == "SUCCEEDED" {
		o["meta_response"] = obj{"error_code": 0}
	}
	return o
}

func (s *Sim) v2GetTask(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Task %s does not exist", s.taskByID, func(t *task) {
		simkit.WriteJSON(w, http.StatusOK, s.v2Task(t))
	})
}

// ---------- v4 ----------

var v4Rel = map[string]string{"vm": "vmm:ahv:config:vm", "recovery_point": "dataprotection:config:recovery-point",
	"volume_group": "volumes:config:volume-group", "image": "vmm:content:image", "vm_snapshot": "dataprotection:config:vm-recovery-point",
	"iscsi_client": "volumes:config:iscsi-client", "external_repository": "multidomain:config:external-repository"}

func (s *Sim) v4Task(t *task) obj {
	ents := []obj{}
	for _, e := range t.Entities {
		ents = append(ents, obj{"$objectType": "prism.v4.config.EntityReference", "extId": e.UUID, "name": e.Name, "rel": v4Rel[e.Kind]})
	}
	details := []obj{}
	for k, v := range t.Details {
		details = append(details, obj{"$objectType": "common.v1.config.KVPair", "name": k, "value": v})
	}
	st := t.Status
	if st == "ABORTED" {
		st = "CANCELED"
	}
	o := obj{
		"$objectType":          "prism.v4.config.Task",
		"$reserved":            obj{"$fv": "v4.r0"},
		"extId":                v4TaskPrefix + t.UUID,
		"operation":            t.Op,
		"operationDescription": t.Op,
		"status":               st,
		"progressPercentage":   t.Percent,
		"createdTime":          t.Created.UTC().Format(time.RFC3339Nano),
		"lastUpdatedTime":      maxTime(t.Created, t.Started, t.Completed).UTC().Format(time.RFC3339Nano),
		"entitiesAffected":     ents,
		"completionDetails":    details,
		"clusterExtIds":        []string{t.ClusterUUID},
		"isCancelable":         false,
		"subTasks":             []obj{},
		"ownedBy":              obj{"$objectType": "prism.v4.config.OwnerReference", "name": "admin", "extId": "00000000-0000-0000-0000-000000000000"},
	}
	if !t.Started.IsZero() {
		o["startedTime"] = t.Started.UTC().Format(time.RFC3339Nano)
	}
	if !t.Completed.IsZero() {
		o["completedTime"] = t.Completed.UTC().Format(time.RFC3339Nano)
	}
	if t.Status == "FAILED" {
		o["errorMessages"] = []obj{{"$objectType": "prism.v4.config.AppMessage", "message": t.ErrDetail,
			"severity": "ERROR", "code": "PRISM-50000", "locale": "en_US"}}
		o["legacyErrorMessage"] = t.ErrDetail
	}
	return o
}

func (s *Sim) v4GetTask(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Task %s not found", s.taskByID, func(t *task) {
		v4JSON(w, r, http.StatusOK, "prism.v4.config.GetTaskApiResponse", s.v4Task(t), nil)
	})
}

func v4TaskRef(t *task) obj {
	return obj{"$objectType": "prism.v4.config.TaskReference", "$reserved": obj{"$fv": "v4.r0"}, "extId": v4TaskPrefix + t.UUID}
}
