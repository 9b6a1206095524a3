package xapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// getRecord reads one record with CLASS.get_record.
func getRecord[T any](ctx context.Context, c *Client, class string, ref Ref, decode func(Ref, json.RawMessage) (T, error)) (T, error) {
	var raw json.RawMessage
	if err := c.Call(ctx, class+".get_record", &raw, ref); err != nil {
		var zero T
		return zero, err
	}
	return decode(ref, raw)
}

// getAll reads every record of a class (CLASS.get_all_records), sorted
// by the key given.
func getAll[T any](ctx context.Context, c *Client, class string, decode func(Ref, json.RawMessage) (T, error), key func(T) string) ([]T, error) {
	var raw map[string]json.RawMessage
	if err := c.Call(ctx, class+".get_all_records", &raw); err != nil {
		return nil, err
	}
	out := make([]T, 0, len(raw))
	for ref, r := range raw {
		v, err := decode(Ref(ref), r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return out, nil
}

// VMs returns every VM record of the pool, templates, control domains
// and snapshots included (callers filter), sorted by name and UUID.
func (c *Client) VMs(ctx context.Context) ([]VM, error) {
	return getAll(ctx, c, "VM", decodeVM, func(v VM) string { return v.NameLabel + "\x00" + v.UUID })
}

// VM returns one VM record.
func (c *Client) VM(ctx context.Context, ref Ref) (VM, error) {
	return getRecord(ctx, c, "VM", ref, decodeVM)
}

// VMByUUID returns the VM with that UUID (ErrNotFound when there is none).
func (c *Client) VMByUUID(ctx context.Context, uuid string) (VM, error) {
	var ref Ref
	if err := c.Call(ctx, "VM.get_by_uuid", &ref, uuid); err != nil {
		return VM{}, err
	}
	return c.VM(ctx, ref)
}

// VMsByName returns the VMs (templates and snapshots too) with that
// name_label; none is not an error.
func (c *Client) VMsByName(ctx context.Context, name string) ([]VM, error) {
	var refs []Ref
	if err := c.Call(ctx, "VM.get_by_name_label", &refs, name); err != nil {
		return nil, err
	}
	out := make([]VM, 0, len(refs))
	for _, r := range refs {
		v, err := c.VM(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// GuestMetrics returns a VM_guest_metrics record (VM.GuestMetrics).
func (c *Client) GuestMetrics(ctx context.Context, ref Ref) (GuestMetrics, error) {
	return getRecord(ctx, c, "VM_guest_metrics", ref, decodeGuestMetrics)
}

// asyncRef runs an Async.* method that returns a reference and waits for
// its task.
func (c *Client) asyncRef(ctx context.Context, method string, params ...any) (Ref, error) {
	res, err := c.async(ctx, method, params...)
	if err == nil && Ref(res).IsNull() {
		err = fmt.Errorf("%s: the task returned no reference", method)
	}
	return Ref(res), err
}

// async runs an Async.* method and waits for its task's result.
func (c *Client) async(ctx context.Context, method string, params ...any) (string, error) {
	var task Ref
	if err := c.Call(ctx, "Async."+method, &task, params...); err != nil {
		return "", err
	}
	if err := observeTask(ctx, task); err != nil {
		return "", fmt.Errorf("%s: %w", method, err)
	}
	res, err := c.WaitTask(ctx, task)
	if err != nil {
		return "", fmt.Errorf("%s: %w", method, err)
	}
	return res, nil
}

// Snapshot snapshots a VM (Async.VM.snapshot) and returns the snapshot
// VM; its VBDs point at new snapshot VDIs.
func (c *Client) Snapshot(ctx context.Context, vm Ref, name string) (Ref, error) {
	return c.asyncRef(ctx, "VM.snapshot", vm, name)
}

// SnapshotWithQuiesce is Snapshot through the guest's VSS
// (Async.VM.snapshot_with_quiesce); releases without it answer
// MESSAGE_METHOD_UNKNOWN, a guest without the tools
// VM_SNAPSHOT_WITH_QUIESCE_*.
func (c *Client) SnapshotWithQuiesce(ctx context.Context, vm Ref, name string) (Ref, error) {
	return c.asyncRef(ctx, "VM.snapshot_with_quiesce", vm, name)
}

// DestroyVM destroys a halted VM's or a snapshot's record, not its VDIs.
func (c *Client) DestroyVM(ctx context.Context, vm Ref) error {
	return c.Call(ctx, "VM.destroy", nil, vm)
}

// Start boots a halted VM (Async.VM.start, not paused, not forced).
func (c *Client) Start(ctx context.Context, vm Ref) error {
	_, err := c.async(ctx, "VM.start", vm, false, false)
	return err
}

// HardShutdown powers a VM off (Async.VM.hard_shutdown).
func (c *Client) HardShutdown(ctx context.Context, vm Ref) error {
	_, err := c.async(ctx, "VM.hard_shutdown", vm)
	return err
}

// SetOtherConfigKey sets one other_config key of an object of class
// ("VM", "VDI", …): CLASS.remove_from_other_config, then
// add_to_other_config.
func (c *Client) SetOtherConfigKey(ctx context.Context, class string, ref Ref, key, value string) error {
	if class == "" || key == "" {
		return errors.New("SetOtherConfigKey: class and key are required")
	}
	if err := c.Call(ctx, class+".remove_from_other_config", nil, ref, key); err != nil {
		return err
	}
	return c.Call(ctx, class+".add_to_other_config", nil, ref, key, value)
}

// VMSpec describes a VM for CreateVM: an HVM guest with BIOS or UEFI.
type VMSpec struct {
	NameLabel, NameDescription string
	VCPUs                      int64  // VCPUs_max and VCPUs_at_startup; at least 1
	MemoryBytes                int64  // all four memory limits
	Firmware                   string // "bios" (default) or "uefi"
	SecureBoot                 bool   // UEFI only: platform secureboot=true
	OtherConfig                map[string]string
	// Platform holds further platform keys (such as "device-model",
	// "viridian"); optional, and applied after SecureBoot's key.
	Platform map[string]string
}

// CreateVM creates a halted HVM VM (VM.create) without disks or network
// interfaces.
func (c *Client) CreateVM(ctx context.Context, s VMSpec) (Ref, error) {
	fw := cmp.Or(s.Firmware, "bios")
	var errs []error
	if s.NameLabel == "" {
		errs = append(errs, errors.New("no name"))
	}
	if s.VCPUs < 1 || s.MemoryBytes <= 0 {
		errs = append(errs, fmt.Errorf("VCPUs %d and memory %d must be positive", s.VCPUs, s.MemoryBytes))
	}
	if fw != "bios" && fw != "uefi" {
		errs = append(errs, fmt.Errorf("firmware %q is neither bios nor uefi", s.Firmware))
	}
	if s.SecureBoot && fw != "uefi" {
		errs = append(errs, errors.New("secure boot needs UEFI"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("CreateVM: %w", err)
	}
	platform := map[string]string{}
	if s.SecureBoot {
		platform["secureboot"] = "true"
	}
	for k, v := range s.Platform {
		platform[k] = v
	}
	rec := map[string]any{
		"name_label": s.NameLabel, "name_description": s.NameDescription, "user_version": 1,
		"is_a_template": false, "affinity": NullRef,
		"memory_static_max": s.MemoryBytes, "memory_dynamic_max": s.MemoryBytes,
		"memory_dynamic_min": s.MemoryBytes, "memory_static_min": s.MemoryBytes,
		"VCPUs_max": s.VCPUs, "VCPUs_at_startup": s.VCPUs, "VCPUs_params": map[string]string{},
		"actions_after_shutdown": "destroy", "actions_after_reboot": "restart", "actions_after_crash": "restart",
		"PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
		"HVM_boot_policy": "BIOS order", "HVM_boot_params": map[string]string{"order": "cd", "firmware": fw},
		"HVM_shadow_multiplier": 1.0, "platform": platform, "PCI_bus": "", "other_config": orEmpty(s.OtherConfig),
		"recommendations": "", "domain_type": "hvm",
	}
	var ref Ref
	if err := c.Call(ctx, "VM.create", &ref, rec); err != nil {
		return "", err
	}
	return ref, nil
}

// orEmpty sends {} rather than null for a nil map.
func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
