package nutanix

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The v3 backend's inventory: VMs, clusters, subnets.

type v3VM struct {
	Metadata v3VMMetadata `json:"metadata"`
	Spec     struct {
		Name             string        `json:"name"`
		Description      string        `json:"description"`
		ClusterReference *v3Ref        `json:"cluster_reference"`
		Resources        v3VMResources `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name             string        `json:"name"`
		Description      string        `json:"description"`
		State            string        `json:"state"`
		ClusterReference *v3Ref        `json:"cluster_reference"`
		Resources        v3VMResources `json:"resources"`
	} `json:"status"`
}

type v3VMResources struct {
	NumSockets        int           `json:"num_sockets,omitempty"`
	NumVcpusPerSocket int           `json:"num_vcpus_per_socket,omitempty"`
	NumThreadsPerCore int           `json:"num_threads_per_core,omitempty"`
	MemorySizeMib     int64         `json:"memory_size_mib,omitempty"`
	PowerState        string        `json:"power_state,omitempty"`
	MachineType       string        `json:"machine_type,omitempty"`
	BootConfig        *v3BootConfig `json:"boot_config,omitempty"`
	DiskList          []v3Disk      `json:"disk_list,omitempty"`
	NicList           []v3NIC       `json:"nic_list,omitempty"`
	GuestTools        *v3GuestTools `json:"guest_tools,omitempty"`
}

type v3BootConfig struct {
	BootType string `json:"boot_type,omitempty"`
}

type v3Disk struct {
	UUID                 string         `json:"uuid,omitempty"`
	DiskSizeBytes        int64          `json:"disk_size_bytes,omitempty"`
	DiskSizeMib          int64          `json:"disk_size_mib,omitempty"`
	DeviceProperties     *v3DeviceProps `json:"device_properties,omitempty"`
	DataSourceReference  *v3Ref         `json:"data_source_reference,omitempty"`
	VolumeGroupReference *v3Ref         `json:"volume_group_reference,omitempty"`
	StorageConfig        *v3DiskStorage `json:"storage_config,omitempty"`
}

type v3DeviceProps struct {
	DeviceType  string         `json:"device_type,omitempty"`
	DiskAddress *v3DiskAddress `json:"disk_address,omitempty"`
}

type v3DiskAddress struct {
	AdapterType string `json:"adapter_type"`
	DeviceIndex int    `json:"device_index"`
}

type v3DiskStorage struct {
	StorageContainerReference *v3Ref `json:"storage_container_reference,omitempty"`
}

type v3NIC struct {
	UUID            string `json:"uuid,omitempty"`
	MacAddress      string `json:"mac_address,omitempty"`
	SubnetReference *v3Ref `json:"subnet_reference,omitempty"`
	NicType         string `json:"nic_type,omitempty"`
	Model           string `json:"model,omitempty"`
	IsConnected     *bool  `json:"is_connected,omitempty"`
}

type v3GuestTools struct {
	NutanixGuestTools *struct {
		NgtState              string   `json:"ngt_state"`
		State                 string   `json:"state"`
		Version               string   `json:"version"`
		EnabledCapabilityList []string `json:"enabled_capability_list"`
		VssSnapshotCapable    *bool    `json:"vss_snapshot_capable"`
		IsReachable           *bool    `json:"is_reachable"`
	} `json:"nutanix_guest_tools"`
}

func (v v3VM) neutral() VM {
	r := v.Status.Resources
	if r.NumSockets == 0 && len(r.DiskList) == 0 { // no status yet (just created)
		r = v.Spec.Resources
	}
	out := VM{
		UUID:           v.Metadata.UUID,
		Name:           firstNonEmpty(v.Status.Name, v.Spec.Name),
		Description:    firstNonEmpty(v.Status.Description, v.Spec.Description),
		NumSockets:     r.NumSockets,
		CoresPerSocket: max(r.NumVcpusPerSocket, 1),
		ThreadsPerCore: r.NumThreadsPerCore,
		MemoryBytes:    r.MemorySizeMib << 20,
		MachineType:    r.MachineType,
		PowerState:     PowerState(strings.ToUpper(r.PowerState)),
		BootType:       BootLegacy,
		Categories:     v.Metadata.categories(),
	}
	out.VCPUs = out.NumSockets * out.CoresPerSocket
	if cr := firstRef(v.Status.ClusterReference, v.Spec.ClusterReference); cr != nil {
		out.ClusterUUID, out.ClusterName = cr.UUID, cr.Name
	}
	if r.BootConfig != nil && r.BootConfig.BootType != "" {
		out.BootType = BootType(strings.ToUpper(r.BootConfig.BootType))
	}
	for _, d := range r.DiskList {
		nd := Disk{UUID: d.UUID, SizeBytes: d.DiskSizeBytes}
		if nd.SizeBytes == 0 {
			nd.SizeBytes = d.DiskSizeMib << 20
		}
		if p := d.DeviceProperties; p != nil {
			nd.IsCDROM = strings.EqualFold(p.DeviceType, "CDROM")
			if p.DiskAddress != nil {
				nd.Bus, nd.Index = strings.ToUpper(p.DiskAddress.AdapterType), p.DiskAddress.DeviceIndex
			}
		}
		if d.VolumeGroupReference != nil {
			nd.VolumeGroupUUID = d.VolumeGroupReference.UUID
		}
		if d.StorageConfig != nil && d.StorageConfig.StorageContainerReference != nil {
			nd.ContainerUUID = d.StorageConfig.StorageContainerReference.UUID
		}
		if d.DataSourceReference != nil && d.DataSourceReference.Kind == "image" {
			nd.ImageUUID = d.DataSourceReference.UUID
		}
		out.Disks = append(out.Disks, nd)
	}
	sortDisks(out.Disks)
	for _, n := range r.NicList {
		nn := NIC{UUID: n.UUID, MAC: n.MacAddress, Model: strings.ToUpper(n.Model), IsConnected: n.IsConnected == nil || *n.IsConnected}
		if nn.Model == "" {
			nn.Model = "VIRTIO"
		}
		if n.SubnetReference != nil {
			nn.SubnetUUID, nn.SubnetName = n.SubnetReference.UUID, n.SubnetReference.Name
		}
		out.NICs = append(out.NICs, nn)
	}
	if g := r.GuestTools; g != nil && g.NutanixGuestTools != nil {
		n := g.NutanixGuestTools
		out.NGT.Installed = strings.EqualFold(n.NgtState, "INSTALLED")
		out.NGT.Enabled = strings.EqualFold(n.State, "ENABLED")
		out.NGT.Version = n.Version
		out.NGT.Reachable = n.IsReachable != nil && *n.IsReachable
		out.NGT.VSSCapable = n.VssSnapshotCapable != nil && *n.VssSnapshotCapable
		if n.VssSnapshotCapable == nil {
			for _, c := range n.EnabledCapabilityList {
				if c == "VSS_SNAPSHOT" {
					out.NGT.VSSCapable = true
				}
			}
		}
	}
	return out
}

type v3Cluster struct {
	Metadata v3Metadata `json:"metadata"`
	Status   struct {
		Name      string `json:"name"`
		Resources struct {
			Config struct {
				ServiceList []string `json:"service_list"`
				Build       struct {
					Version string `json:"version"`
				} `json:"build"`
			} `json:"config"`
			Network struct {
				ExternalIP             string `json:"external_ip"`
				ExternalDataServicesIP string `json:"external_data_services_ip"`
			} `json:"network"`
		} `json:"resources"`
	} `json:"status"`
}

func (c v3Cluster) isPrismCentral() bool {
	for _, s := range c.Status.Resources.Config.ServiceList {
		if strings.EqualFold(s, "PRISM_CENTRAL") {
			return true
		}
	}
	return false
}

type v3Subnet struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name             string `json:"name"`
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			SubnetType string `json:"subnet_type"`
			VlanID     int    `json:"vlan_id"`
		} `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name             string `json:"name"`
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			SubnetType string `json:"subnet_type"`
			VlanID     int    `json:"vlan_id"`
		} `json:"resources"`
	} `json:"status"`
}

func (s v3Subnet) neutral() Subnet {
	out := Subnet{UUID: s.Metadata.UUID, Name: firstNonEmpty(s.Status.Name, s.Spec.Name),
		Type: firstNonEmpty(s.Status.Resources.SubnetType, s.Spec.Resources.SubnetType), VLANID: s.Status.Resources.VlanID}
	if out.VLANID == 0 {
		out.VLANID = s.Spec.Resources.VlanID
	}
	if cr := firstRef(s.Status.ClusterReference, s.Spec.ClusterReference); cr != nil {
		out.ClusterUUID = cr.UUID
	}
	return out
}

func (b *v3Backend) ListVMs(ctx context.Context) ([]VM, error) {
	return v3List(ctx, b, "vm", "list VMs", func(v v3VM) (VM, bool) { return v.neutral(), true })
}

func (b *v3Backend) GetVM(ctx context.Context, uuid string) (VM, error) {
	var v v3VM
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/vms/" + url.PathEscape(uuid), out: &v}); err != nil {
		return VM{}, fmt.Errorf("get VM %s: %w", uuid, err)
	}
	return v.neutral(), nil
}

func (b *v3Backend) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	out, err := v3List(ctx, b, "cluster", "list clusters", func(c v3Cluster) (ClusterInfo, bool) {
		return ClusterInfo{UUID: c.Metadata.UUID, Name: c.Status.Name,
			ExternalIP: c.Status.Resources.Network.ExternalIP, DataServicesIP: c.Status.Resources.Network.ExternalDataServicesIP,
			ISCSIPort: 3260, Version: c.Status.Resources.Config.Build.Version}, !c.isPrismCentral()
	})
	if err != nil {
		return nil, err
	}
	// Fill a missing Data Services IP from v2 (PE-direct).
	for i := range out {
		if out[i].DataServicesIP == "" && b.v2base != "" {
			if c2, err := b.v2Cluster(ctx); err == nil && (c2.UUID == out[i].UUID || len(out) == 1) {
				out[i].DataServicesIP = c2.DataServicesIP
			}
		}
	}
	return out, nil
}

func (b *v3Backend) ListSubnets(ctx context.Context) ([]Subnet, error) {
	return v3List(ctx, b, "subnet", "list subnets", func(s v3Subnet) (Subnet, bool) { return s.neutral(), true })
}
