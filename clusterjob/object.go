package clusterjob

import (
	"errors"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// Kind is the kind of a journaled cluster object.
type Kind string

// Kinds of temporary cluster objects, in the order a teardown deletes
// them: a VM under construction uses volume group disks or images; an
// attachment is released before its volume group; volume groups and
// images are clones of snapshot disks.
const (
	KindVM Kind = "vm" // a VM under construction (or the original an overwrite replaces)
	// KindExternalRepository is an NFS export registered for instant
	// recovery, before the VM whose disks read from it exists.
	KindExternalRepository Kind = "external-repository"
	KindAttachment         Kind = "attachment"   // this host's initiator attached to a volume group
	KindVolumeGroup        Kind = "volume-group" // a temporary volume group
	KindImage              Kind = "image"        // a temporary image
	KindVDI                Kind = "vdi"          // a virtual disk a restore creates on an XCP-ng pool before its VM owns it
	KindSnapshot           Kind = "snapshot"     // a VM snapshot (v3 vm_snapshot, v2 snapshot) or a v4 recovery point
)

func (k Kind) order() int {
	switch k {
	case KindVM:
		return 0
	case KindExternalRepository:
		return 1
	case KindAttachment:
		return 2
	case KindVolumeGroup:
		return 3
	case KindImage:
		return 4
	case KindVDI:
		return 5
	case KindSnapshot:
		return 6
	}
	return 7
}

// Object is one temporary cluster object in the journal. It is recorded
// under its Name before the create call, and again with its ID once the
// call returns; the name is unique (the job chooses it), so an object
// whose ID never reached the journal is found again by name.
type Object struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	ID   string `json:"id,omitempty"`
	// API is the Prism API family the object was created through: it is
	// deleted through the same one (APIXen: through XAPI).
	API nutanix.APIVersion `json:"api,omitempty"`
	// VMUUID and VM name the VM a snapshot is of.
	VMUUID string `json:"vm_uuid,omitempty"`
	VM     string `json:"vm,omitempty"`
	// VDIs are the UUIDs of an XCP-ng snapshot's VDIs (their data may be
	// destroyed, and with it the VBDs that tie them to the snapshot).
	VDIs []string `json:"vdis,omitempty"`
	// VolumeGroup (UUID) and Initiator (IQN) of an attachment.
	VolumeGroup string `json:"volume_group,omitempty"`
	Initiator   string `json:"initiator,omitempty"`
	// Existing are the UUIDs of the VMs named Name before a VM was
	// created: never deleted when the new one is looked up by name.
	Existing []string `json:"existing,omitempty"`
	// Replaces is the original VM an overwriting restore replaces.
	Replaces *Replacement `json:"replaces,omitempty"`
	// Tasks are the cluster tasks the create call submitted, recorded as
	// the cluster accepted each: a release of an object whose ID never
	// reached the journal waits for them before it looks the name up (a
	// snapshot whose task ends after a kill would be missed otherwise).
	Tasks   []string  `json:"tasks,omitempty"`
	Created time.Time `json:"created"`
}

// Replacement is the state of an overwrite: the new VM (the Object) is
// built first; only then is the original powered off, and the overwrite
// committed before the original is deleted.
type Replacement struct {
	UUID string `json:"uuid"`
	// WasOn: the original was powered on; PoweredOff: the job has asked
	// to power it off (recorded before the call).
	WasOn      bool `json:"was_on"`
	PoweredOff bool `json:"powered_off"`
	// Committed: the new VM is the result. A sweep then finishes the
	// overwrite (deletes the original) instead of undoing it.
	Committed bool `json:"committed"`
	// VDIs (XCP-ng) are the UUIDs of the original's disks, recorded with
	// the commit: VM.destroy leaves them, so they are destroyed after it
	// (unless another VM uses one).
	VDIs []string `json:"vdis,omitempty"`
	// References (XCP-ng) are the snapshots of the original that the
	// journal kept (a backup's reference), and KeptBy their kept
	// records' owners, recorded with the commit: they go with the
	// original, whose next incremental never comes.
	References []Object `json:"references,omitempty"`
	KeptBy     []string `json:"kept_by,omitempty"`
}

func (o Object) String() string {
	what := string(o.Kind)
	switch {
	case o.Kind == KindSnapshot && Family(o.API) == nutanix.APIV4:
		what = "recovery point"
	case o.Kind == KindVolumeGroup:
		what = "volume group"
	case o.Kind == KindExternalRepository:
		what = "external repository"
	case o.Kind == KindAttachment:
		return "attachment of " + o.Initiator + " to volume group " + firstNonEmpty(o.VolumeGroup, o.Name)
	case o.Kind == KindVM:
		what = "VM"
	case o.Kind == KindVDI:
		what = "VDI"
	}
	s := what + " " + o.Name
	if o.ID != "" {
		s += " (" + o.ID + ")"
	}
	return s
}

// Family maps an API version to the client family that addresses its
// objects: v2.0 objects (APIV2) belong to the v3 backend.
func Family(api nutanix.APIVersion) nutanix.APIVersion {
	if strings.HasPrefix(string(api), "v2") {
		return nutanix.APIV3
	}
	return api
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// notCreated reports whether err proves that a create call made nothing:
// the server refused the request (4xx but 408 and 429) or its task
// failed... except that a failed task can still leave an entity behind
// (nutanix-api.md §9), so for tasks the caller looks the name up anyway.
func notCreated(err error) bool {
	var ae *nutanix.APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != 408 && ae.Status != 429
}
