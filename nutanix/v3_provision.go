package nutanix

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The v3 backend's provisioning for restores: images and VMs.

type v3Image struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name      string `json:"name"`
		Resources struct {
			ImageType string `json:"image_type"`
		} `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		Resources struct {
			ImageType string `json:"image_type"`
			SizeBytes int64  `json:"size_bytes"`
		} `json:"resources"`
	} `json:"status"`
}

// ---- VMs (restore) ----

func (b *v3Backend) CreateVM(ctx context.Context, spec VMSpec) (string, error) {
	res := map[string]any{
		"num_sockets":          max(spec.NumSockets, 1),
		"num_vcpus_per_socket": max(spec.CoresPerSocket, 1),
		"memory_size_mib":      (spec.MemoryBytes + 1<<20 - 1) >> 20,
		"power_state":          "OFF",
		"machine_type":         firstNonEmpty(spec.MachineType, "PC"),
		"boot_config":          map[string]any{"boot_type": string(firstNonEmpty(string(spec.BootType), string(BootLegacy)))},
	}
	var disks []map[string]any
	for _, d := range spec.Disks {
		if d.External != nil {
			return "", fmt.Errorf("create VM %s: a disk on an external repository needs the v4.2 vmm API: %w", spec.Name, ErrUnsupported)
		}
		dev := "DISK"
		if d.IsCDROM {
			dev = "CDROM"
		}
		m := map[string]any{"device_properties": map[string]any{"device_type": dev,
			"disk_address": map[string]any{"adapter_type": firstNonEmpty(strings.ToUpper(d.Bus), "SCSI"), "device_index": d.Index}}}
		if d.SizeBytes > 0 {
			m["disk_size_bytes"] = d.SizeBytes
			m["disk_size_mib"] = (d.SizeBytes + 1<<20 - 1) >> 20
		}
		switch {
		case d.ImageUUID != "" && d.VolumeDiskUUID != "":
			return "", fmt.Errorf("create VM %s: disk %s.%d: both an image and a volume disk source", spec.Name, d.Bus, d.Index)
		case d.ImageUUID != "":
			m["data_source_reference"] = map[string]any{"kind": "image", "uuid": d.ImageUUID}
		case d.VolumeDiskUUID != "":
			// A VG disk is an acropolis vmdisk: clone it by its vmdisk_uuid
			// (v2 vm_disk_clone.disk_address.vmdisk_uuid, §3.8).
			m["data_source_reference"] = map[string]any{"kind": "vm_disk", "uuid": d.VolumeDiskUUID}
		}
		if d.ContainerUUID != "" {
			m["storage_config"] = map[string]any{"storage_container_reference": map[string]any{"kind": "storage_container", "uuid": d.ContainerUUID}}
		}
		disks = append(disks, m)
	}
	if len(disks) > 0 {
		res["disk_list"] = disks
	}
	var nics []map[string]any
	for _, n := range spec.NICs {
		m := map[string]any{"subnet_reference": map[string]any{"kind": "subnet", "uuid": n.SubnetUUID}, "model": firstNonEmpty(strings.ToUpper(n.Model), "VIRTIO")}
		if n.MAC != "" {
			m["mac_address"] = n.MAC
		}
		nics = append(nics, m)
	}
	if len(nics) > 0 {
		res["nic_list"] = nics
	}
	s := map[string]any{"name": spec.Name, "resources": res}
	if spec.Description != "" {
		s["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		s["cluster_reference"] = map[string]any{"kind": "cluster", "uuid": spec.ClusterUUID}
	}
	id := newUUID()
	body := map[string]any{"api_version": "3.1", "metadata": map[string]any{"kind": "vm", "uuid": id}, "spec": s}
	op := "create VM " + spec.Name
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/vms", in: body, out: &acc, idempotent: true}); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if acc.Metadata.UUID != "" {
		id = acc.Metadata.UUID
	}
	if t, err := b.WaitTask(ctx, acc.task()); err != nil {
		return id, fmt.Errorf("%s: %w", op, err)
	} else if acc.Metadata.UUID == "" {
		if e := t.entity("vm"); e != "" {
			id = e
		}
	}
	return id, nil
}

func (b *v3Backend) SetPowerState(ctx context.Context, vmUUID string, state PowerState) error {
	return b.setPower(ctx, fmt.Sprintf("power %s VM %s", state, vmUUID), vmUUID, state, "HARD")
}

func (b *v3Backend) ShutdownVM(ctx context.Context, vmUUID string, guest bool) error {
	mech := "ACPI"
	if guest {
		mech = "GUEST"
	}
	return b.setPower(ctx, fmt.Sprintf("shut down VM %s (%s)", vmUUID, mech), vmUUID, PowerOff, mech)
}

// setPower PUTs the VM back with power_state state, by mechanism (HARD,
// ACPI or GUEST), and waits for the task; nothing when the VM is in state
// already.
func (b *v3Backend) setPower(ctx context.Context, op, vmUUID string, state PowerState, mechanism string) error {
	p := v3Base + "/vms/" + url.PathEscape(vmUUID)
	var raw map[string]any
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &raw}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if cur := dig(raw, "status", "resources", "power_state"); strings.EqualFold(fmt.Sprint(cur), string(state)) {
		return nil
	}
	spec, _ := raw["spec"].(map[string]any)
	res, _ := spec["resources"].(map[string]any)
	if res == nil {
		return fmt.Errorf("%s: VM has no spec.resources", op)
	}
	res["power_state"] = string(state)
	res["power_state_mechanism"] = map[string]any{"mechanism": mechanism}
	delete(raw, "status")
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPut, path: p, in: raw, out: &acc}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := b.WaitTask(ctx, acc.task()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (b *v3Backend) DeleteVM(ctx context.Context, uuid string) error {
	return ignoreAbsent(b.deleteEntity(ctx, "vms", uuid, "delete VM "+uuid))
}

// ---- images ----

func (b *v3Backend) CreateImage(ctx context.Context, spec ImageSpec) (Image, error) {
	res := map[string]any{"image_type": string(firstNonEmpty(string(spec.Type), string(DiskImage)))}
	if spec.SourceURL != "" {
		res["source_uri"] = spec.SourceURL
	}
	if spec.ClusterUUID != "" {
		res["initial_placement_ref_list"] = []map[string]any{{"kind": "cluster", "uuid": spec.ClusterUUID}}
	}
	s := map[string]any{"name": spec.Name, "resources": res}
	if spec.Description != "" {
		s["description"] = spec.Description
	}
	id := newUUID()
	body := map[string]any{"api_version": "3.1", "metadata": map[string]any{"kind": "image", "uuid": id}, "spec": s}
	op := "create image " + spec.Name
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/images", in: body, out: &acc, idempotent: true}); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	if acc.Metadata.UUID != "" {
		id = acc.Metadata.UUID
	}
	if tid := acc.task(); tid != "" {
		t, err := b.WaitTask(ctx, tid)
		if err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
		if acc.Metadata.UUID == "" {
			id = firstNonEmpty(t.entity("image"), id)
		}
	}
	return b.GetImage(ctx, id)
}

func (b *v3Backend) GetImage(ctx context.Context, uuid string) (Image, error) {
	var im v3Image
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/images/" + url.PathEscape(uuid), out: &im}); err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", uuid, err)
	}
	return Image{UUID: firstNonEmpty(im.Metadata.UUID, uuid), Name: firstNonEmpty(im.Status.Name, im.Spec.Name),
		Type:      ImageType(firstNonEmpty(im.Status.Resources.ImageType, im.Spec.Resources.ImageType)),
		SizeBytes: im.Status.Resources.SizeBytes, State: im.Status.State}, nil
}

// ListImages pages through images/list and keeps those named name (the
// filter is applied here: FIQL cannot quote every name).
func (b *v3Backend) ListImages(ctx context.Context, name string) ([]Image, error) {
	return v3List(ctx, b, "image", "list images", func(im v3Image) (Image, bool) {
		n := firstNonEmpty(im.Status.Name, im.Spec.Name)
		return Image{UUID: im.Metadata.UUID, Name: n,
			Type:      ImageType(firstNonEmpty(im.Status.Resources.ImageType, im.Spec.Resources.ImageType)),
			SizeBytes: im.Status.Resources.SizeBytes, State: im.Status.State}, name == "" || n == name
	})
}

func (b *v3Backend) UploadImage(ctx context.Context, uuid string, r io.Reader, size int64) error {
	return v3UploadImage(ctx, b.r, b.WaitTask, uuid, r, size)
}

func (b *v3Backend) DownloadImage(ctx context.Context, uuid string, offset, length int64) (io.ReadCloser, error) {
	return downloadRange(ctx, b.r, v3Base+"/images/"+url.PathEscape(uuid)+"/file", offset, length)
}

func (b *v3Backend) DeleteImage(ctx context.Context, uuid string) error {
	return ignoreAbsent(b.deleteEntity(ctx, "images", uuid, "delete image "+uuid))
}
