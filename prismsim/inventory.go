package prismsim

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// Objects is every object a job can leave behind on the simulated cluster,
// read at one instant: VMs, snapshots (v3 vm_snapshots, v2 snapshots and v4
// VM recovery points are one kind of object), v4 recovery points, volume
// groups with their iSCSI attachments, images, and the tasks still running.
// Each list is ordered by creation, then uuid. A crash test takes Objects
// before a job and after the job's cleanup and asserts that Diff finds
// nothing.
//
// iSCSI client records are not listed: Prism keeps them after a detach, as
// the simulator does; what a job must undo is the attachment, listed with
// its volume group.
type Objects struct {
	VMs            []VMObject            `json:"vms"`
	Snapshots      []SnapshotObject      `json:"snapshots"`
	RecoveryPoints []RecoveryPointObject `json:"recovery_points"`
	VolumeGroups   []VolumeGroupObject   `json:"volume_groups"`
	Images         []ImageObject         `json:"images"`
	// ExternalRepositories are the NFS exports registered (v4.2).
	ExternalRepositories []ExternalRepositoryObject `json:"external_repositories"`
	// RunningTasks are the tasks not yet ended. A running task may still
	// create or delete objects: wait for them (Sim.WaitTasks, or
	// /sim/inventory?wait=) before comparing.
	RunningTasks []TaskObject `json:"running_tasks"`
}

// VMObject is a VM. State is PENDING while its create task runs.
type VMObject struct {
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	State      string `json:"state"`
	PowerState string `json:"power_state"`
	Disks      int    `json:"disks"`
}

// SnapshotObject is a snapshot of one VM, whichever API took it (API: v2,
// v3 or v4). VMName is the VM's name when the snapshot was taken.
// RecoveryPoint is the v4 recovery point holding it ("" for v2/v3).
type SnapshotObject struct {
	UUID          string `json:"uuid"`
	Name          string `json:"name"`
	VMUUID        string `json:"vm_uuid"`
	VMName        string `json:"vm_name"`
	API           string `json:"api"`
	State         string `json:"state"`
	RecoveryPoint string `json:"recovery_point,omitempty"`
}

// RecoveryPointObject is a v4 recovery point and its VM recovery points
// (snapshot uuids).
type RecoveryPointObject struct {
	UUID      string   `json:"uuid"`
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Snapshots []string `json:"snapshots"`
}

// VolumeGroupObject is a volume group; Clients are the initiators attached
// to it (IQN, or IP address), in attach order.
type VolumeGroupObject struct {
	UUID    string   `json:"uuid"`
	Name    string   `json:"name"`
	API     string   `json:"api"`
	Disks   int      `json:"disks"`
	Clients []string `json:"clients"`
}

// ImageObject is an image. State is PENDING until created and uploaded.
type ImageObject struct {
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	State string `json:"state"`
	Size  int64  `json:"size"`
}

// ExternalRepositoryObject is a registered NFS export.
type ExternalRepositoryObject struct {
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	Address string `json:"address"` // host:port
	Export  string `json:"export"`
}

// TaskObject is a task that has not ended, and the entities it names.
type TaskObject struct {
	UUID     string   `json:"uuid"`
	Op       string   `json:"op"`
	Status   string   `json:"status"`
	Entities []string `json:"entities"` // "kind uuid name"
}

// Objects reads the simulated cluster's objects. It does not wait for
// running tasks (see Objects.RunningTasks).
func (s *Sim) Objects() Objects {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := Objects{VMs: []VMObject{}, Snapshots: []SnapshotObject{}, RecoveryPoints: []RecoveryPointObject{},
		VolumeGroups: []VolumeGroupObject{}, Images: []ImageObject{}, ExternalRepositories: []ExternalRepositoryObject{}, RunningTasks: []TaskObject{}}
	for _, v := range s.m.sortedVMs() {
		o.VMs = append(o.VMs, VMObject{UUID: v.UUID, Name: v.Name, State: v.State, PowerState: v.PowerState, Disks: len(v.Disks)})
	}
	for _, sn := range s.m.sortedSnapshots() {
		o.Snapshots = append(o.Snapshots, SnapshotObject{UUID: sn.UUID, Name: sn.Name, VMUUID: sn.VMUUID, VMName: sn.VM.Name,
			API: sn.API, State: sn.State, RecoveryPoint: sn.RPUUID})
	}
	for _, rp := range s.m.sortedRPs() {
		o.RecoveryPoints = append(o.RecoveryPoints, RecoveryPointObject{UUID: rp.UUID, Name: rp.Name, State: rp.State,
			Snapshots: append([]string{}, rp.Snapshots...)})
	}
	for _, g := range s.m.sortedVGs() {
		vg := VolumeGroupObject{UUID: g.UUID, Name: g.Name, API: g.API, Disks: len(g.Disks), Clients: []string{}}
		for _, id := range g.Clients {
			if c := s.m.ISCSIClients[id]; c != nil {
				vg.Clients = append(vg.Clients, initiatorOf(c))
			}
		}
		o.VolumeGroups = append(o.VolumeGroups, vg)
	}
	for _, im := range s.m.sortedImages() {
		o.Images = append(o.Images, ImageObject{UUID: im.UUID, Name: im.Name, State: im.State, Size: im.Size})
	}
	for _, x := range sortedByCreation(s.m.ExternalRepos, func(x *externalRepo) time.Time { return x.Created }) {
		o.ExternalRepositories = append(o.ExternalRepositories, ExternalRepositoryObject{UUID: x.UUID, Name: x.Name, Address: x.address(), Export: x.ExportName})
	}
	tasks := sortedByCreation(s.m.Tasks, func(t *task) time.Time { return t.Created })
	for _, t := range tasks {
		if terminal(t.Status) {
			continue
		}
		to := TaskObject{UUID: t.UUID, Op: t.Op, Status: t.Status, Entities: []string{}}
		for _, e := range t.Entities {
			to.Entities = append(to.Entities, strings.TrimSpace(e.Kind+" "+e.UUID+" "+e.Name))
		}
		o.RunningTasks = append(o.RunningTasks, to)
	}
	return o
}

// initiatorOf is an iSCSI client's IQN, or its IP address.
func initiatorOf(c *iscsiClient) string {
	if c.IQN != "" {
		return c.IQN
	}
	return c.IP
}

// Change is one difference Diff found. Op is '+' (the object appeared),
// '-' (it disappeared) or '~' (it is there in both with other values;
// Detail names them).
type Change struct {
	Op     byte
	Kind   string // "VM", "snapshot", "recovery point", "volume group", "image", "running task"
	UUID   string
	Name   string // the object's name (a task's operation)
	Detail string
}

func (c Change) String() string {
	s := fmt.Sprintf("%c %s %q (%s)", c.Op, c.Kind, c.Name, c.UUID)
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

// Changes are what Diff found, in the order of Objects' lists.
type Changes []Change

// String is one line per change ("" when there is none).
func (cs Changes) String() string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Diff names every object that appeared, disappeared or changed between
// before and after, matched by uuid. A task still running in after is a
// change too (it may yet create or delete an object), unless it was
// already running in before.
func Diff(before, after Objects) Changes {
	var cs Changes
	cs = append(cs, diffKind("VM", before.VMs, after.VMs, func(v VMObject) (string, string) { return v.UUID, v.Name })...)
	cs = append(cs, diffKind("snapshot", before.Snapshots, after.Snapshots, func(s SnapshotObject) (string, string) {
		return s.UUID, s.Name
	})...)
	cs = append(cs, diffKind("recovery point", before.RecoveryPoints, after.RecoveryPoints,
		func(r RecoveryPointObject) (string, string) { return r.UUID, r.Name })...)
	cs = append(cs, diffKind("volume group", before.VolumeGroups, after.VolumeGroups,
		func(g VolumeGroupObject) (string, string) { return g.UUID, g.Name })...)
	cs = append(cs, diffKind("image", before.Images, after.Images, func(i ImageObject) (string, string) { return i.UUID, i.Name })...)
	cs = append(cs, diffKind("external repository", before.ExternalRepositories, after.ExternalRepositories,
		func(x ExternalRepositoryObject) (string, string) { return x.UUID, x.Name })...)
	for _, c := range diffKind("running task", before.RunningTasks, after.RunningTasks,
		func(t TaskObject) (string, string) { return t.UUID, t.Op }) {
		if c.Op == '+' { // a task that ended, or runs on, is no object left behind
			cs = append(cs, c)
		}
	}
	return cs
}

// diffKind compares two lists of one kind of object by their uuids.
func diffKind[T any](kind string, before, after []T, id func(T) (uuid, name string)) Changes {
	old := map[string]T{}
	for _, x := range before {
		u, _ := id(x)
		old[u] = x
	}
	seen := map[string]bool{}
	var cs Changes
	for _, x := range after {
		u, name := id(x)
		seen[u] = true
		b, ok := old[u]
		switch {
		case !ok:
			cs = append(cs, Change{Op: '+', Kind: kind, UUID: u, Name: name, Detail: fieldsOf(x)})
		case !reflect.DeepEqual(b, x):
			cs = append(cs, Change{Op: '~', Kind: kind, UUID: u, Name: name, Detail: changedFields(b, x)})
		}
	}
	for _, x := range before {
		if u, name := id(x); !seen[u] {
			cs = append(cs, Change{Op: '-', Kind: kind, UUID: u, Name: name})
		}
	}
	return cs
}

// asMap is v's JSON form as a map (v is one of the object structs).
func asMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// fieldsOf lists the fields of a new object that say most about where it
// came from: "field=value, ...", uuid and name left out.
func fieldsOf(v any) string {
	m := asMap(v)
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "uuid" || k == "name" || k == "op" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// changedFields lists "field: old → new" for every field that differs.
func changedFields(a, b any) string {
	ma, mb := asMap(a), asMap(b)
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(mb)) {
		if !reflect.DeepEqual(ma[k], mb[k]) {
			parts = append(parts, fmt.Sprintf("%s: %v → %v", k, ma[k], mb[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// simInventory answers GET /sim/inventory: Objects as JSON. With
// ?wait=DURATION it first waits, up to DURATION, until no task runs.
func (s *Sim) simInventory(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			simkit.WriteJSON(w, http.StatusBadRequest, obj{"message": fmt.Sprintf("wait %q: want a duration such as 30s", v)})
			return
		}
		s.WaitTasks(d)
	}
	simkit.WriteJSON(w, http.StatusOK, s.Objects())
}
