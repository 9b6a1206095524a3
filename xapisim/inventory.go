package xapisim

import (
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Objects is what a job can leave behind on the simulated pool, read at
// one instant: VMs and snapshots (not templates or the control domain),
// VDIs, tasks and sessions. Lists are in creation order.
type Objects struct {
	VMs      []VMObject      `json:"vms"`
	VDIs     []VDIObject     `json:"vdis"`
	Tasks    []TaskObject    `json:"tasks"`
	Sessions []SessionObject `json:"sessions"`
}

// VMObject is a VM or a snapshot (IsSnapshot, with SnapshotOf the uuid of
// its VM). VDIs are the uuids of its disks (VBD order, CDs left out).
type VMObject struct {
	Ref         string            `json:"ref"`
	UUID        string            `json:"uuid"`
	Name        string            `json:"name"`
	PowerState  string            `json:"power_state"`
	IsSnapshot  bool              `json:"is_snapshot"`
	SnapshotOf  string            `json:"snapshot_of,omitempty"`
	VDIs        []string          `json:"vdis"`
	VIFs        int               `json:"vifs"`
	OtherConfig map[string]string `json:"other_config"`
}

// VDIObject is a VDI. Type is "cbt_metadata" once its data is destroyed
// (HasData false); HasCBTMetadata marks a snapshot that can be a side of
// list_changed_blocks. VMs are the uuids of the VMs and snapshots whose
// VBDs use it.
type VDIObject struct {
	Ref            string            `json:"ref"`
	UUID           string            `json:"uuid"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	VirtualSize    int64             `json:"virtual_size"`
	IsSnapshot     bool              `json:"is_snapshot"`
	SnapshotOf     string            `json:"snapshot_of,omitempty"`
	CBTEnabled     bool              `json:"cbt_enabled"`
	HasData        bool              `json:"has_data"`
	HasCBTMetadata bool              `json:"has_cbt_metadata"`
	VMs            []string          `json:"vms"`
	OtherConfig    map[string]string `json:"other_config"`
}

// TaskObject is a task (Async: run by the simulator for an Async call;
// else made by task.create).
type TaskObject struct {
	Ref    string `json:"ref"`
	UUID   string `json:"uuid"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Async  bool   `json:"async"`
}

// SessionObject is a session logged in.
type SessionObject struct {
	Ref        string `json:"ref"`
	UUID       string `json:"uuid"`
	User       string `json:"user"`
	Originator string `json:"originator"`
}

// Inventory reads the simulated pool's objects.
func (s *Sim) Inventory() Objects {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	o := Objects{VMs: []VMObject{}, VDIs: []VDIObject{}, Tasks: []TaskObject{}, Sessions: []SessionObject{}}
	uuidOf := func(ref string) string {
		if v := m.VMs[ref]; v != nil {
			return v.UUID
		}
		if d := m.VDIs[ref]; d != nil {
			return d.UUID
		}
		return ref
	}
	for _, v := range m.sortedVMs() {
		if v.IsATemplate || v.IsControlDomain {
			continue
		}
		vo := VMObject{Ref: v.Ref, UUID: v.UUID, Name: v.NameLabel, PowerState: v.PowerState, IsSnapshot: v.IsASnapshot,
			VDIs: []string{}, VIFs: len(m.vifsOf(v.Ref)), OtherConfig: cloneMap(v.OtherConfig)}
		if v.IsASnapshot {
			vo.SnapshotOf = uuidOf(v.SnapshotOf)
		}
		for _, b := range m.vbdsOf(v.Ref) {
			if d := m.VDIs[b.VDI]; d != nil && b.Type == "Disk" {
				vo.VDIs = append(vo.VDIs, d.UUID)
			}
		}
		o.VMs = append(o.VMs, vo)
	}
	for _, d := range m.sortedVDIs() {
		do := VDIObject{Ref: d.Ref, UUID: d.UUID, Name: d.NameLabel, Type: d.Type, VirtualSize: d.VirtualSize,
			IsSnapshot: d.IsASnapshot, CBTEnabled: d.CBTEnabled, HasData: d.File != "",
			HasCBTMetadata: d.CBTFile != "", VMs: []string{}, OtherConfig: cloneMap(d.OtherConfig)}
		if d.IsASnapshot {
			do.SnapshotOf = uuidOf(d.SnapshotOf)
		}
		for _, b := range m.sortedVBDs() {
			if b.VDI == d.Ref {
				do.VMs = append(do.VMs, uuidOf(b.VM))
			}
		}
		o.VDIs = append(o.VDIs, do)
	}
	for _, t := range bySeq(s.tasks, func(t *task) int64 { return t.seq }) {
		o.Tasks = append(o.Tasks, TaskObject{Ref: t.ref, UUID: t.uuid, Name: t.name, Status: t.status, Async: t.async})
	}
	sess := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		sess = append(sess, x)
	}
	slices.SortFunc(sess, func(a, b *session) int { return a.Created.Compare(b.Created) })
	for _, x := range sess {
		o.Sessions = append(o.Sessions, SessionObject{Ref: x.Ref, UUID: x.UUID, User: x.User, Originator: x.Originator})
	}
	return o
}

// WaitTasks waits up to d for the Async tasks under way to end; it
// reports whether none is left.
func (s *Sim) WaitTasks(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.running.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Diff names the VMs, snapshots and VDIs that appeared, disappeared or
// changed from before to after (tasks and sessions are not compared), so
// that a crash test can assert a job's cleanup left the pool as it was.
func Diff(before, after Objects) []string {
	var out []string
	vms := func(o Objects) map[string]VMObject {
		m := map[string]VMObject{}
		for _, v := range o.VMs {
			m[v.UUID] = v
		}
		return m
	}
	vdis := func(o Objects) map[string]VDIObject {
		m := map[string]VDIObject{}
		for _, v := range o.VDIs {
			m[v.UUID] = v
		}
		return m
	}
	kind := func(snap bool) string {
		if snap {
			return "snapshot"
		}
		return "VM"
	}
	bv, av := vms(before), vms(after)
	for _, v := range before.VMs {
		w, ok := av[v.UUID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s (%s) disappeared", kind(v.IsSnapshot), v.Name, v.UUID))
		case !reflect.DeepEqual(v, w):
			out = append(out, fmt.Sprintf("%s %s (%s) changed: %+v → %+v", kind(v.IsSnapshot), v.Name, v.UUID, v, w))
		}
	}
	for _, v := range after.VMs {
		if _, ok := bv[v.UUID]; !ok {
			out = append(out, fmt.Sprintf("%s %s (%s) appeared", kind(v.IsSnapshot), v.Name, v.UUID))
		}
	}
	bd, ad := vdis(before), vdis(after)
	for _, d := range before.VDIs {
		e, ok := ad[d.UUID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("VDI %s (%s) disappeared", d.Name, d.UUID))
		case !reflect.DeepEqual(d, e):
			out = append(out, fmt.Sprintf("VDI %s (%s) changed: %+v → %+v", d.Name, d.UUID, d, e))
		}
	}
	for _, d := range after.VDIs {
		if _, ok := bd[d.UUID]; !ok {
			out = append(out, fmt.Sprintf("VDI %s (%s) appeared", d.Name, d.UUID))
		}
	}
	return out
}
