package prismsim

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// ---------- vmm: VMs ----------

func v4GuestTools(v *vm) obj {
	inst := v.NGT == NGTInstalled || v.NGT == NGTVSS
	caps := []string{}
	if inst {
		caps = append(caps, "SELF_SERVICE_RESTORE")
	}
	if v.NGT == NGTVSS {
		caps = append(caps, "VSS_SNAPSHOT")
	}
	o := obj{"$objectType": "vmm.v4.ahv.config.GuestTools", "$reserved": reserved(),
		"isInstalled": inst, "isEnabled": inst, "isReachable": inst && v.PowerState == "ON",
		"isVssSnapshotCapable": v.NGT == NGTVSS, "capabilities": caps, "isIsoInserted": false}
	if inst {
		o["version"], o["availableVersion"], o["guestOsVersion"] = "4.1", "4.1", "linux:64:Debian-12"
	}
	return o
}

func (s *Sim) v4Disk(d *vmDisk) obj {
	bi := obj{"$objectType": "vmm.v4.ahv.config.VmDisk", "$reserved": reserved(), "diskExtId": d.UUID, "diskSizeBytes": d.Size,
		"storageContainer": obj{"$objectType": "vmm.v4.ahv.config.VmDiskContainerReference", "extId": d.ContainerUUID}}
	switch d.SourceKind {
	case "image":
		bi["dataSource"] = obj{"$objectType": "vmm.v4.ahv.config.DataSource", "reference": obj{"$objectType": "vmm.v4.ahv.config.ImageReference", "imageExtId": d.SourceUUID},
			"$referenceItemDiscriminator": "vmm.v4.ahv.config.ImageReference"}
	case "vm_disk":
		bi["dataSource"] = obj{"$objectType": "vmm.v4.ahv.config.DataSource", "reference": obj{"$objectType": "vmm.v4.ahv.config.VmDiskReference", "diskExtId": d.SourceUUID},
			"$referenceItemDiscriminator": "vmm.v4.ahv.config.VmDiskReference"}
	}
	if st, rem, ok := s.hydrationLocked(d); ok {
		bi["dataSource"] = obj{"$objectType": "vmm.v4.ahv.config.DataSource", "$referenceItemDiscriminator": "vmm.v4.ahv.config.ExternalDataSourceDiskReference",
			"reference": obj{"$objectType": "vmm.v4.ahv.config.ExternalDataSourceDiskReference", "externalRepositoryExtId": d.External.Repo,
				"externalDiskRelativePath": d.External.Path, "shouldEnableBackgroundHydration": d.External.Hydrate}}
		bi["vmDiskHydrationInfo"] = obj{"$objectType": "vmm.v4.ahv.config.VmDiskHydrationInfo", "diskHydrationRemainingBytes": rem, "diskHydrationStatus": st}
	}
	return obj{"$objectType": "vmm.v4.ahv.config.Disk", "$reserved": reserved(), "extId": d.UUID,
		"diskAddress":                   obj{"$objectType": "vmm.v4.ahv.config.DiskAddress", "busType": d.Bus, "index": d.Index},
		"backingInfo":                   bi,
		"$backingInfoItemDiscriminator": "vmm.v4.ahv.config.VmDisk"}
}

func (s *Sim) v4VM(v *vm) obj {
	disks, cdroms, nics := []obj{}, []obj{}, []obj{}
	for _, d := range v.Disks {
		if d.DeviceType == "CDROM" {
			cdroms = append(cdroms, obj{"$objectType": "vmm.v4.ahv.config.CdRom", "extId": d.UUID,
				"diskAddress": obj{"$objectType": "vmm.v4.ahv.config.CdRomAddress", "busType": d.Bus, "index": d.Index}})
			continue
		}
		disks = append(disks, s.v4Disk(d))
	}
	for _, n := range v.NICs {
		nics = append(nics, obj{"$objectType": "vmm.v4.ahv.config.Nic", "$reserved": reserved(), "extId": n.UUID,
			"backingInfo": obj{"$objectType": "vmm.v4.ahv.config.EmulatedNic", "model": n.Model, "macAddress": n.MAC,
				"isConnected": true, "numQueues": 1},
			"networkInfo": obj{"$objectType": "vmm.v4.ahv.config.NicNetworkInfo", "nicType": "NORMAL_NIC", "vlanMode": "ACCESS",
				"subnet": obj{"$objectType": "vmm.v4.ahv.config.SubnetReference", "extId": n.SubnetUUID}}})
	}
	boot := obj{"$objectType": "vmm.v4.ahv.config.LegacyBoot", "bootOrder": []string{"CDROM", "DISK", "NETWORK"}}
	if v.BootType == "UEFI" || v.BootType == "SECURE_BOOT" {
		boot = obj{"$objectType": "vmm.v4.ahv.config.UefiBoot", "isSecureBootEnabled": v.BootType == "SECURE_BOOT"}
	}
	return obj{
		"$objectType": "vmm.v4.ahv.config.Vm", "$reserved": reserved(),
		"extId": v.UUID, "name": v.Name, "description": v.Description,
		"createTime": ts(v.Created), "updateTime": ts(v.Updated),
		"numSockets": v.NumSockets, "numCoresPerSocket": v.VCPUsPerSocket, "numThreadsPerCore": v.ThreadsPerCore,
		"memorySizeBytes": v.MemoryMiB << 20, "powerState": v.PowerState, "machineType": v.MachineType,
		"bootConfig": boot, "$bootConfigItemDiscriminator": boot["$objectType"],
		"vtpmConfig": obj{"$objectType": "vmm.v4.ahv.config.VtpmConfig", "isVtpmEnabled": false},
		"disks":      disks, "cdRoms": cdroms, "nics": nics, "guestTools": v4GuestTools(v),
		"cluster":        obj{"$objectType": "vmm.v4.ahv.config.ClusterReference", "extId": v.ClusterUUID},
		"host":           obj{"$objectType": "vmm.v4.ahv.config.HostReference", "extId": v.ClusterUUID},
		"generationUuid": v.GenerationUUID, "biosUuid": v.UUID, "protectionType": "UNPROTECTED",
		"categories": v4VMCategories(v), "hardwareClockTimezone": "UTC",
	}
}

func vmETag(v *vm) string { return etagOf(v.UUID, v.SpecVersion) }

func (s *Sim) v4ListVMs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.sortedVMs(), func(v *vm, k string) string {
		switch k {
		case "name":
			return v.Name
		case "extId":
			return v.UUID
		case "powerState":
			return v.PowerState
		case "cluster/extId":
			return v.ClusterUUID
		}
		return ""
	}, s.v4VM)
}

func (s *Sim) v4GetVM(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		v4Get(w, r, vmETag(v), s.v4VM(v))
	})
}

func (s *Sim) v4GuestTools(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		v4Get(w, r, vmETag(v), v4GuestTools(v))
	})
}

func (s *Sim) v4ListVMDisks(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		v4List(s, w, r, v.Disks, nil, s.v4Disk)
	})
}

type v4VMIn struct {
	Name              string `json:"name"`
	Description       string `json:"description"`
	NumSockets        int    `json:"numSockets"`
	NumCoresPerSocket int    `json:"numCoresPerSocket"`
	NumThreadsPerCore int    `json:"numThreadsPerCore"`
	MemorySizeBytes   int64  `json:"memorySizeBytes"`
	PowerState        string `json:"powerState"`
	MachineType       string `json:"machineType"`
	BootConfig        *struct {
		ObjectType          string `json:"$objectType"`
		IsSecureBootEnabled bool   `json:"isSecureBootEnabled"`
	} `json:"bootConfig"`
	Cluster *struct {
		ExtID string `json:"extId"`
	} `json:"cluster"`
	Disks []struct {
		DiskAddress *struct {
			BusType string `json:"busType"`
			Index   *int   `json:"index"`
		} `json:"diskAddress"`
		BackingInfo *struct {
			ObjectType       string `json:"$objectType"`
			DiskSizeBytes    int64  `json:"diskSizeBytes"`
			StorageContainer *struct {
				ExtID string `json:"extId"`
			} `json:"storageContainer"`
			DataSource *struct {
				Reference map[string]any `json:"reference"`
			} `json:"dataSource"`
		} `json:"backingInfo"`
	} `json:"disks"`
	Nics []struct {
		BackingInfo *struct {
			Model      string `json:"model"`
			MacAddress string `json:"macAddress"`
		} `json:"backingInfo"`
		NetworkInfo *struct {
			Subnet *struct {
				ExtID string `json:"extId"`
			} `json:"subnet"`
		} `json:"networkInfo"`
	} `json:"nics"`
}

func strField(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if v, ok := m[k].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func (s *Sim) v4CreateVM(w http.ResponseWriter, r *http.Request) {
	var in v4VMIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	sp := vmSpec{Name: in.Name, Description: in.Description, NumSockets: in.NumSockets, VCPUsPerSocket: in.NumCoresPerSocket,
		ThreadsPerCore: in.NumThreadsPerCore, MemoryMiB: in.MemorySizeBytes >> 20, MachineType: in.MachineType, PowerState: in.PowerState}
	if sp.PowerState == "" {
		sp.PowerState = "OFF"
	}
	if in.BootConfig != nil && strings.HasSuffix(in.BootConfig.ObjectType, "UefiBoot") {
		sp.BootType = "UEFI"
		if in.BootConfig.IsSecureBootEnabled {
			sp.BootType = "SECURE_BOOT"
		}
	}
	if in.Cluster != nil {
		sp.ClusterUUID = in.Cluster.ExtID
	}
	for i, d := range in.Disks {
		ds := diskSpec{Index: -1}
		if d.DiskAddress != nil {
			ds.Bus = d.DiskAddress.BusType
			if d.DiskAddress.Index != nil {
				ds.Index = *d.DiskAddress.Index
			}
		}
		bi := d.BackingInfo
		if bi == nil {
			v4Error(w, r, http.StatusBadRequest, fmt.Sprintf("disks[%d].backingInfo is required", i))
			return
		}
		ds.Size = bi.DiskSizeBytes
		if bi.StorageContainer != nil {
			ds.Container = bi.StorageContainer.ExtID
		}
		if bi.DataSource != nil && bi.DataSource.Reference != nil {
			ref := bi.DataSource.Reference
			ot, _ := ref["$objectType"].(string)
			switch {
			case strings.HasSuffix(ot, ".ImageReference"):
				ds.SourceKind, ds.SourceUUID = "image", strField(ref, "imageExtId")
			case strings.HasSuffix(ot, ".VmDiskRecoveryPointReference"):
				ds.SourceKind, ds.SourceUUID = "snapshot_disk", strField(ref, "diskRecoveryPointExtId")
			case strings.HasSuffix(ot, ".VmDiskReference"):
				ds.SourceKind, ds.SourceUUID = "vm_disk", strField(ref, "diskExtId")
			case strings.HasSuffix(ot, ".VolumeDiskReference"):
				ds.SourceKind, ds.SourceUUID = "volume_disk", strField(ref, "volumeDiskExtId", "diskExtId", "extId")
			case strings.HasSuffix(ot, ".ExternalDataSourceDiskReference") && revisionAtLeast(r.PathValue("rev"), minInstantRevision):
				hydrate, _ := ref["shouldEnableBackgroundHydration"].(bool)
				ds.SourceKind = "external"
				ds.External = &diskExternal{Repo: strField(ref, "externalRepositoryExtId"), Path: strField(ref, "externalDiskRelativePath"), Hydrate: hydrate}
			default:
				v4Error(w, r, http.StatusBadRequest, fmt.Sprintf("disks[%d].backingInfo.dataSource.reference: $objectType %q is not supported", i, ot))
				return
			}
		}
		sp.Disks = append(sp.Disks, ds)
	}
	for i, n := range in.Nics {
		if n.NetworkInfo == nil || n.NetworkInfo.Subnet == nil {
			v4Error(w, r, http.StatusBadRequest, fmt.Sprintf("nics[%d].networkInfo.subnet is required", i))
			return
		}
		ns := nicSpec{SubnetUUID: n.NetworkInfo.Subnet.ExtID}
		if n.BackingInfo != nil {
			ns.Model, ns.MAC = n.BackingInfo.Model, n.BackingInfo.MacAddress
		}
		sp.NICs = append(sp.NICs, ns)
	}
	srcs, err := s.openExternalDisks(sp.Disks)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, v, id, err := s.createVMTaskLocked("CreateVm", sp)
	if err != nil || v == nil {
		for _, src := range srcs {
			if src != nil {
				src.Close()
			}
		}
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if v != nil {
		for i, src := range srcs {
			if src != nil {
				s.startHydratorLocked(v.Disks[i], src)
			}
		}
	}
	t.Details = map[string]string{"vmExtId": id}
	s.save()
	s.accepted(w, r, "vmm.v4.ahv.config.CreateVmApiResponse", t)
}

func (s *Sim) v4UpdateVM(w http.ResponseWriter, r *http.Request) {
	var in v4VMIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		if !checkIfMatch(w, r, vmETag(v)) {
			return
		}
		fail := s.taskFailure("UpdateVm")
		if fail == "" {
			if in.Name != "" {
				v.Name = in.Name
			}
			v.Description = in.Description
			if in.NumSockets > 0 {
				v.NumSockets = in.NumSockets
			}
			if in.NumCoresPerSocket > 0 {
				v.VCPUsPerSocket = in.NumCoresPerSocket
			}
			if in.MemorySizeBytes > 0 {
				v.MemoryMiB = in.MemorySizeBytes >> 20
			}
			v.SpecVersion++
			v.Updated = time.Now()
		}
		t := s.startTask("UpdateVm", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, fail, nil)
		s.save()
		s.accepted(w, r, "vmm.v4.ahv.config.UpdateVmApiResponse", t)
	})
}

func (s *Sim) v4DeleteVM(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		if !checkIfMatch(w, r, vmETag(v)) {
			return
		}
		t := s.startTask("DeleteVm", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}},
			s.taskFailure("DeleteVm"), func() { s.deleteVMLocked(v) })
		s.accepted(w, r, "vmm.v4.ahv.config.DeleteVmApiResponse", t)
	})
}

func (s *Sim) v4Power(action string) http.HandlerFunc {
	want := "ON"
	if action != "power-on" {
		want = "OFF"
	}
	op := map[string]string{"power-on": "PowerOnVm", "power-off": "PowerOffVm", "shutdown": "ShutdownVm", "guest-shutdown": "GuestShutdownVm"}[action]
	return func(w http.ResponseWriter, r *http.Request) {
		withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
			if r.Header.Get("If-Match") != "" && !checkIfMatch(w, r, vmETag(v)) {
				return
			}
			if action == "guest-shutdown" && (v.NGT == NGTAbsent || v.NGT == "") {
				v4Error(w, r, http.StatusBadRequest, "Guest shutdown needs Nutanix Guest Tools")
				return
			}
			soft := action == "shutdown" || action == "guest-shutdown"
			t := s.startTask(op, v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, s.taskFailure(op), func() {
				if soft && v.GuestHung {
					return // the guest was asked; it does not stop
				}
				v.PowerState = want
				v.SpecVersion++
				v.Updated = time.Now()
			})
			s.accepted(w, r, "vmm.v4.ahv.config."+op+"ApiResponse", t)
		})
	}
}

// ---------- vmm: images ----------

func (s *Sim) v4Image(im *image) obj {
	return obj{"$objectType": "vmm.v4.content.Image", "$reserved": reserved(), "extId": im.UUID, "name": im.Name,
		"description": im.Description, "type": im.Type, "sizeBytes": im.Size, "createTime": ts(im.Created),
		"clusterLocationExtIds": []string{im.ClusterUUID}}
}

func (s *Sim) v4ListImages(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.sortedImages(), func(im *image, k string) string {
		if k == "name" {
			return im.Name
		}
		return ""
	}, s.v4Image)
}

func (s *Sim) v4GetImage(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.Images), func(im *image) {
		v4Get(w, r, etagOf(im.UUID, im.SpecVersion), s.v4Image(im))
	})
}

func (s *Sim) v4DeleteImage(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.Images), func(im *image) {
		if !checkIfMatch(w, r, etagOf(im.UUID, im.SpecVersion)) {
			return
		}
		t := s.startTask("DeleteImage", im.ClusterUUID, []taskEntity{{Kind: "image", UUID: im.UUID, Name: im.Name}},
			s.taskFailure("DeleteImage"), func() {
				delete(s.m.Images, im.UUID)
				os.Remove(s.abs(im.File))
			})
		s.accepted(w, r, "vmm.v4.content.DeleteImageApiResponse", t)
	})
}

func (s *Sim) v4CreateImage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name                  string         `json:"name"`
		Description           string         `json:"description"`
		Type                  string         `json:"type"`
		Source                map[string]any `json:"source"`
		ClusterLocationExtIds []string       `json:"clusterLocationExtIds"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	ii := imageIn{Name: in.Name, Description: in.Description, Type: in.Type}
	if len(in.ClusterLocationExtIds) > 0 {
		ii.ClusterUUID = in.ClusterLocationExtIds[0]
	}
	if in.Source != nil {
		ot, _ := in.Source["$objectType"].(string)
		switch {
		case strings.HasSuffix(ot, ".VmDiskSource"):
			ii.SourceKind, ii.SourceUUID = "vm_disk", strField(in.Source, "extId")
		case strings.HasSuffix(ot, ".UrlSource"):
			ii.SourceURI = strField(in.Source, "url")
		default:
			v4Error(w, r, http.StatusBadRequest, "source $objectType "+ot+" is not supported (VmDiskSource, UrlSource)")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, id, err := s.createImageTaskLocked("CreateImage", ii)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	t.Details = map[string]string{"imageExtId": id}
	s.save()
	s.accepted(w, r, "vmm.v4.content.CreateImageApiResponse", t)
}
