package xapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// VBD returns one VBD record.
func (c *Client) VBD(ctx context.Context, ref Ref) (VBD, error) {
	return getRecord(ctx, c, "VBD", ref, decodeVBD)
}

// VDI returns one VDI record.
func (c *Client) VDI(ctx context.Context, ref Ref) (VDI, error) {
	return getRecord(ctx, c, "VDI", ref, decodeVDI)
}

// VDIByUUID returns the VDI with that UUID (ErrNotFound when there is
// none).
func (c *Client) VDIByUUID(ctx context.Context, uuid string) (VDI, error) {
	var ref Ref
	if err := c.Call(ctx, "VDI.get_by_uuid", &ref, uuid); err != nil {
		return VDI{}, err
	}
	return c.VDI(ctx, ref)
}

// VDIsByName returns the VDIs with that name_label; none is not an error.
func (c *Client) VDIsByName(ctx context.Context, name string) ([]VDI, error) {
	var refs []Ref
	if err := c.Call(ctx, "VDI.get_by_name_label", &refs, name); err != nil {
		return nil, err
	}
	out := make([]VDI, 0, len(refs))
	for _, r := range refs {
		v, err := c.VDI(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// DestroyVDI destroys a VDI and its data.
func (c *Client) DestroyVDI(ctx context.Context, vdi Ref) error {
	return c.Call(ctx, "VDI.destroy", nil, vdi)
}

// EnableCBT turns changed block tracking on for a VDI.
func (c *Client) EnableCBT(ctx context.Context, vdi Ref) error {
	return c.Call(ctx, "VDI.enable_cbt", nil, vdi)
}

// DisableCBT turns changed block tracking off for a VDI.
func (c *Client) DisableCBT(ctx context.Context, vdi Ref) error {
	return c.Call(ctx, "VDI.disable_cbt", nil, vdi)
}

// DataDestroy frees a snapshot VDI's data and keeps its CBT metadata (its
// type becomes cbt_metadata), through Async.VDI.data_destroy.
func (c *Client) DataDestroy(ctx context.Context, vdi Ref) error {
	_, err := c.async(ctx, "VDI.data_destroy", vdi)
	return err
}

// ListChangedBlocks returns the blocks that differ between two snapshots
// of one disk (VDI.list_changed_blocks); from may be a cbt_metadata
// snapshot, to must not be attached.
func (c *Client) ListChangedBlocks(ctx context.Context, from, to Ref) (Bitmap, error) {
	var s string
	if err := c.Call(ctx, "VDI.list_changed_blocks", &s, from, to); err != nil {
		return nil, err
	}
	b, err := DecodeBitmap(s)
	if err != nil {
		return nil, fmt.Errorf("VDI.list_changed_blocks: %w", err)
	}
	return b, nil
}

// NBDInfo returns where a VDI can be read over NBD (VDI.get_nbd_info);
// empty when no network has NBD enabled. The export names hold this
// client's session.
func (c *Client) NBDInfo(ctx context.Context, vdi Ref) ([]NBDInfo, error) {
	var raw []json.RawMessage
	if err := c.Call(ctx, "VDI.get_nbd_info", &raw, vdi); err != nil {
		return nil, err
	}
	out := make([]NBDInfo, 0, len(raw))
	for _, r := range raw {
		info, err := decodeNBDInfo(r)
		if err != nil {
			return nil, fmt.Errorf("VDI.get_nbd_info: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}

// VDISpec describes a blank user disk for CreateVDI.
type VDISpec struct {
	NameLabel, NameDescription string
	SR                         Ref
	VirtualSize                int64 // bytes
	OtherConfig                map[string]string
}

// CreateVDI creates a blank, unshared, writable user VDI (VDI.create).
func (c *Client) CreateVDI(ctx context.Context, s VDISpec) (Ref, error) {
	if s.SR.IsNull() || s.VirtualSize <= 0 {
		return "", fmt.Errorf("CreateVDI: an SR and a positive size are required (SR %q, size %d)", s.SR, s.VirtualSize)
	}
	rec := map[string]any{
		"name_label": s.NameLabel, "name_description": s.NameDescription, "SR": s.SR, "virtual_size": s.VirtualSize,
		"type": "user", "sharable": false, "read_only": false, "other_config": orEmpty(s.OtherConfig),
		"xenstore_data": map[string]string{}, "sm_config": map[string]string{}, "tags": []string{},
	}
	var ref Ref
	if err := c.Call(ctx, "VDI.create", &ref, rec); err != nil {
		return "", err
	}
	return ref, nil
}

// VBDSpec describes a VBD for CreateVBD. A CD without a VDI is an empty
// drive.
type VBDSpec struct {
	VM, VDI    Ref
	Userdevice string // "0", "1", …; default "autodetect"
	Bootable   bool
	Type       string // "Disk" (default) or "CD"
	ReadOnly   bool   // mode RO (always for a CD)
}

// CreateVBD plugs a VDI into a VM (VBD.create); the VM must be halted or
// the VBD is plugged at the next start.
func (c *Client) CreateVBD(ctx context.Context, s VBDSpec) (Ref, error) {
	typ := cmp.Or(s.Type, "Disk")
	empty := s.VDI.IsNull()
	switch {
	case s.VM.IsNull():
		return "", errors.New("CreateVBD: no VM")
	case typ != "Disk" && typ != "CD":
		return "", fmt.Errorf("CreateVBD: type %q is neither Disk nor CD", s.Type)
	case empty && typ == "Disk":
		return "", errors.New("CreateVBD: a disk needs a VDI")
	}
	vdi, mode := s.VDI, "RW"
	if empty {
		vdi = NullRef
	}
	if s.ReadOnly || typ == "CD" {
		mode = "RO"
	}
	rec := map[string]any{
		"VM": s.VM, "VDI": vdi, "userdevice": cmp.Or(s.Userdevice, "autodetect"), "bootable": s.Bootable,
		"mode": mode, "type": typ, "empty": empty, "other_config": map[string]string{},
		"qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
	}
	var ref Ref
	if err := c.Call(ctx, "VBD.create", &ref, rec); err != nil {
		return "", err
	}
	return ref, nil
}
