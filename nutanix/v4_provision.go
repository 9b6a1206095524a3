package nutanix

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The v4 backend's provisioning for restores: images and VMs (vmm).

type v4Image struct {
	ExtID     string `json:"extId"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	SizeBytes int64  `json:"sizeBytes"`
}

func (b *v4Backend) CreateImage(ctx context.Context, spec ImageSpec) (Image, error) {
	if spec.SourceURL == "" {
		// no v4 upload endpoint: an image to upload is made through v3
		if b.v3 == nil {
			return Image{}, fmt.Errorf("create image %s for upload: v3 not served: %w", spec.Name, ErrUnsupported)
		}
		return b.v3.CreateImage(ctx, spec)
	}
	body := map[string]any{"name": spec.Name, "type": string(firstNonEmpty(spec.Type, DiskImage)),
		"source": map[string]any{"$objectType": "vmm.v4.content.UrlSource", "url": spec.SourceURL}}
	if spec.Description != "" {
		body["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		body["clusterLocationExtIds"] = []string{spec.ClusterUUID}
	}
	t, err := b.mutate(ctx, "create image "+spec.Name, request{method: http.MethodPost, path: b.p("vmm", "/content/images"), in: body})
	if err != nil {
		return Image{}, err
	}
	id := t.entity("image")
	if id == "" {
		return Image{}, fmt.Errorf("create image %s: task %s names no image", spec.Name, t.ID)
	}
	return b.GetImage(ctx, id)
}

func (b *v4Backend) GetImage(ctx context.Context, uuid string) (Image, error) {
	var r v4Response[v4Image]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("vmm", "/content/images/"+url.PathEscape(uuid)), out: &r}); err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", uuid, err)
	}
	return Image{UUID: firstNonEmpty(r.Data.ExtID, uuid), Name: r.Data.Name, Type: ImageType(r.Data.Type), SizeBytes: r.Data.SizeBytes}, nil
}

// ListImages lists images by name ($filter, checked again here).
func (b *v4Backend) ListImages(ctx context.Context, name string) ([]Image, error) {
	var out []Image
	err := v4ListAll(ctx, b, b.p("vmm", "/content/images"), v4NameFilter(name), func(im v4Image) error {
		if name == "" || im.Name == name {
			out = append(out, Image{UUID: im.ExtID, Name: im.Name, Type: ImageType(im.Type), SizeBytes: im.SizeBytes})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

func (b *v4Backend) UploadImage(ctx context.Context, uuid string, r io.Reader, size int64) error {
	if b.v3 == nil {
		return fmt.Errorf("upload image %s: v3 not served: %w", uuid, ErrUnsupported)
	}
	return b.v3.UploadImage(ctx, uuid, r, size)
}

func (b *v4Backend) DownloadImage(ctx context.Context, uuid string, offset, length int64) (io.ReadCloser, error) {
	return downloadRange(ctx, b.r, b.p("vmm", "/content/images/"+url.PathEscape(uuid)+"/file"), offset, length)
}

func (b *v4Backend) DeleteImage(ctx context.Context, uuid string) error {
	return ignoreAbsent(b.deleteWithETag(ctx, b.p("vmm", "/content/images/"+url.PathEscape(uuid)), "delete image "+uuid))
}

// ---- VMs (restore) ----

func (b *v4Backend) CreateVM(ctx context.Context, spec VMSpec) (string, error) {
	boot := map[string]any{"$objectType": "vmm.v4.ahv.config.LegacyBoot"}
	switch spec.BootType {
	case BootUEFI:
		boot = map[string]any{"$objectType": "vmm.v4.ahv.config.UefiBoot"}
	case BootSecureBoot:
		boot = map[string]any{"$objectType": "vmm.v4.ahv.config.UefiBoot", "isSecureBootEnabled": true}
	}
	body := map[string]any{
		"name": spec.Name, "numSockets": max(spec.NumSockets, 1), "numCoresPerSocket": max(spec.CoresPerSocket, 1),
		"memorySizeBytes": spec.MemoryBytes, "machineType": firstNonEmpty(spec.MachineType, "PC"),
		"bootConfig": boot, "powerState": "OFF",
	}
	if spec.Description != "" {
		body["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		body["cluster"] = map[string]any{"extId": spec.ClusterUUID}
	}
	var disks, cdroms []map[string]any
	for _, d := range spec.Disks {
		addr := map[string]any{"busType": firstNonEmpty(strings.ToUpper(d.Bus), "SCSI"), "index": d.Index}
		if d.IsCDROM {
			cd := map[string]any{"diskAddress": addr}
			if d.ImageUUID != "" {
				cd["backingInfo"] = map[string]any{"dataSource": map[string]any{"reference": map[string]any{
					"$objectType": "vmm.v4.ahv.config.ImageReference", "imageExtId": d.ImageUUID}}}
			}
			cdroms = append(cdroms, cd)
			continue
		}
		bi := map[string]any{"$objectType": "vmm.v4.ahv.config.VmDisk"}
		if d.SizeBytes > 0 {
			bi["diskSizeBytes"] = d.SizeBytes
		}
		if d.ContainerUUID != "" {
			bi["storageContainer"] = map[string]any{"extId": d.ContainerUUID}
		}
		switch {
		case countSources(d) > 1:
			return "", fmt.Errorf("create VM %s: disk %s.%d: more than one data source", spec.Name, addr["busType"], d.Index)
		case d.External != nil:
			bi["dataSource"] = map[string]any{"reference": map[string]any{"$objectType": "vmm.v4.ahv.config.ExternalDataSourceDiskReference",
				"externalRepositoryExtId": d.External.RepositoryID, "externalDiskRelativePath": d.External.Path,
				"shouldEnableBackgroundHydration": d.External.Hydrate}}
		case d.ImageUUID != "":
			bi["dataSource"] = map[string]any{"reference": map[string]any{"$objectType": "vmm.v4.ahv.config.ImageReference", "imageExtId": d.ImageUUID}}
		case d.VolumeDiskUUID != "":
			bi["dataSource"] = map[string]any{"reference": map[string]any{"$objectType": "vmm.v4.ahv.config.VolumeDiskReference", "volumeDiskExtId": d.VolumeDiskUUID}}
		}
		disks = append(disks, map[string]any{"diskAddress": addr, "backingInfo": bi})
	}
	if len(disks) > 0 {
		body["disks"] = disks
	}
	if len(cdroms) > 0 {
		body["cdRoms"] = cdroms
	}
	var nics []map[string]any
	for _, n := range spec.NICs {
		bk := map[string]any{"model": firstNonEmpty(strings.ToUpper(n.Model), "VIRTIO")}
		if n.MAC != "" {
			bk["macAddress"] = n.MAC
		}
		nics = append(nics, map[string]any{"backingInfo": bk, "networkInfo": map[string]any{"subnet": map[string]any{"extId": n.SubnetUUID}}})
	}
	if len(nics) > 0 {
		body["nics"] = nics
	}
	t, err := b.mutate(ctx, "create VM "+spec.Name, request{method: http.MethodPost, path: b.p("vmm", "/ahv/config/vms"), in: body})
	if err != nil {
		return "", err
	}
	id := t.entity("vm")
	if id == "" {
		return "", fmt.Errorf("create VM %s: task %s names no VM", spec.Name, t.ID)
	}
	return id, nil
}

// countSources counts the data sources a disk spec names.
func countSources(d DiskSpec) int {
	n := 0
	for _, set := range []bool{d.ImageUUID != "", d.VolumeDiskUUID != "", d.External != nil} {
		if set {
			n++
		}
	}
	return n
}

func (b *v4Backend) SetPowerState(ctx context.Context, vmUUID string, state PowerState) error {
	action := "power-on"
	if state == PowerOff {
		action = "power-off"
	}
	return b.power(ctx, fmt.Sprintf("power %s VM %s", state, vmUUID), vmUUID, state, action, nil)
}

func (b *v4Backend) ShutdownVM(ctx context.Context, vmUUID string, guest bool) error {
	if !guest {
		return b.power(ctx, "shut down VM "+vmUUID, vmUUID, PowerOff, "shutdown", nil)
	}
	body := map[string]any{
		"$objectType": "vmm.v4.ahv.config.GuestPowerOptions",
		"guestPowerStateTransitionConfig": map[string]any{
			"$objectType":               "vmm.v4.ahv.config.GuestPowerStateTransitionConfig",
			"shouldEnableScriptExec":    false,
			"shouldFailOnScriptFailure": false,
		},
	}
	return b.power(ctx, "guest shutdown of VM "+vmUUID, vmUUID, PowerOff, "guest-shutdown", body)
}

// power runs the VM's $actions/action (with body, if any) under the VM's
// ETag and waits for the task; nothing when the VM is in state already.
func (b *v4Backend) power(ctx context.Context, op, vmUUID string, state PowerState, action string, body any) error {
	p := b.p("vmm", "/ahv/config/vms/"+url.PathEscape(vmUUID))
	var r v4Response[v4VM]
	resp, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &r})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if strings.EqualFold(r.Data.PowerState, string(state)) {
		return nil
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost, path: p + "/$actions/" + action, in: body, header: ifMatch(resp.Header.Get("ETag"))})
	return err
}

func (b *v4Backend) DeleteVM(ctx context.Context, uuid string) error {
	return ignoreAbsent(b.deleteWithETag(ctx, b.p("vmm", "/ahv/config/vms/"+url.PathEscape(uuid)), "delete VM "+uuid))
}
