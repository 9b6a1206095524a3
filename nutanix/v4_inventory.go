package nutanix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The v4 backend's inventory: VMs (vmm), clusters and storage containers
// (clustermgmt), subnets (networking).

type v4VM struct {
	ExtID             string          `json:"extId"`
	Name              string          `json:"name"`
	Description       string          `json:"description"`
	NumSockets        int             `json:"numSockets"`
	NumCoresPerSocket int             `json:"numCoresPerSocket"`
	NumThreadsPerCore int             `json:"numThreadsPerCore"`
	MemorySizeBytes   int64           `json:"memorySizeBytes"`
	PowerState        string          `json:"powerState"`
	MachineType       string          `json:"machineType"`
	BootConfig        json.RawMessage `json:"bootConfig"`
	Cluster           *v4Ref          `json:"cluster"`
	Disks             []v4Disk        `json:"disks"`
	CdRoms            []v4Disk        `json:"cdRoms"`
	Nics              []v4NIC         `json:"nics"`
	GuestTools        *v4GuestTools   `json:"guestTools"`
	Categories        []v4Ref         `json:"categories"`
}

type v4Disk struct {
	ExtID       string `json:"extId"`
	DiskAddress *struct {
		BusType string `json:"busType"`
		Index   int    `json:"index"`
	} `json:"diskAddress"`
	BackingInfo *struct {
		ObjectType       string `json:"$objectType"`
		DiskExtID        string `json:"diskExtId"`
		DiskSizeBytes    int64  `json:"diskSizeBytes"`
		StorageContainer *v4Ref `json:"storageContainer"`
		VolumeGroupExtID string `json:"volumeGroupExtId"`
		DataSource       *struct {
			Reference *struct {
				ObjectType                      string `json:"$objectType"`
				ImageExtID                      string `json:"imageExtId"`
				ExternalRepositoryExtID         string `json:"externalRepositoryExtId"`
				ExternalDiskRelativePath        string `json:"externalDiskRelativePath"`
				ShouldEnableBackgroundHydration bool   `json:"shouldEnableBackgroundHydration"`
			} `json:"reference"`
		} `json:"dataSource"`
		VMDiskHydrationInfo *struct {
			DiskHydrationRemainingBytes int64  `json:"diskHydrationRemainingBytes"`
			DiskHydrationStatus         string `json:"diskHydrationStatus"`
		} `json:"vmDiskHydrationInfo"`
	} `json:"backingInfo"`
}

type v4NICBacking struct {
	Model       string `json:"model"`
	MacAddress  string `json:"macAddress"`
	IsConnected *bool  `json:"isConnected"`
}

type v4NICNetwork struct {
	Subnet *struct {
		ExtID string `json:"extId"`
		Name  string `json:"name"`
	} `json:"subnet"`
}

type v4NIC struct {
	ExtID          string        `json:"extId"`
	BackingInfo    *v4NICBacking `json:"backingInfo"`
	NetworkInfo    *v4NICNetwork `json:"networkInfo"`
	NicBackingInfo *v4NICBacking `json:"nicBackingInfo"` // newer revisions
	NicNetworkInfo *v4NICNetwork `json:"nicNetworkInfo"`
}

type v4GuestTools struct {
	IsInstalled          bool     `json:"isInstalled"`
	IsEnabled            bool     `json:"isEnabled"`
	IsReachable          bool     `json:"isReachable"`
	IsVssSnapshotCapable bool     `json:"isVssSnapshotCapable"`
	Capabilities         []string `json:"capabilities"`
	Version              string   `json:"version"`
}

func (g *v4GuestTools) neutral() NGT {
	if g == nil {
		return NGT{}
	}
	n := NGT{Installed: g.IsInstalled, Enabled: g.IsEnabled, Reachable: g.IsReachable, VSSCapable: g.IsVssSnapshotCapable, Version: g.Version}
	for _, c := range g.Capabilities {
		n.VSSCapable = n.VSSCapable || c == "VSS_SNAPSHOT"
	}
	return n
}

func (v v4VM) neutral() VM {
	out := VM{UUID: v.ExtID, Name: v.Name, Description: v.Description, NumSockets: v.NumSockets,
		CoresPerSocket: max(v.NumCoresPerSocket, 1), ThreadsPerCore: v.NumThreadsPerCore, MemoryBytes: v.MemorySizeBytes,
		MachineType: v.MachineType, PowerState: PowerState(strings.ToUpper(v.PowerState)), BootType: BootLegacy, NGT: v.GuestTools.neutral()}
	out.VCPUs = out.NumSockets * out.CoresPerSocket
	if v.Cluster != nil {
		out.ClusterUUID = v.Cluster.ExtID
	}
	if len(v.BootConfig) > 0 {
		var bc struct {
			ObjectType          string `json:"$objectType"`
			IsSecureBootEnabled bool   `json:"isSecureBootEnabled"`
		}
		if json.Unmarshal(v.BootConfig, &bc) == nil && strings.HasSuffix(bc.ObjectType, "UefiBoot") {
			out.BootType = BootUEFI
			if bc.IsSecureBootEnabled {
				out.BootType = BootSecureBoot
			}
		}
	}
	add := func(d v4Disk, cdrom bool) {
		nd := Disk{UUID: d.ExtID, IsCDROM: cdrom}
		if d.DiskAddress != nil {
			nd.Bus, nd.Index = strings.ToUpper(d.DiskAddress.BusType), d.DiskAddress.Index
		}
		if bi := d.BackingInfo; bi != nil {
			nd.SizeBytes = bi.DiskSizeBytes
			if bi.StorageContainer != nil {
				nd.ContainerUUID = bi.StorageContainer.ExtID
			}
			if bi.VolumeGroupExtID != "" || strings.HasSuffix(bi.ObjectType, "ADSFVolumeGroupReference") {
				nd.VolumeGroupUUID = firstNonEmpty(bi.VolumeGroupExtID, "unknown")
			}
			if bi.DataSource != nil && bi.DataSource.Reference != nil {
				ref := bi.DataSource.Reference
				nd.ImageUUID = ref.ImageExtID
				if strings.HasSuffix(ref.ObjectType, "ExternalDataSourceDiskReference") {
					nd.External = &ExternalDisk{RepositoryID: ref.ExternalRepositoryExtID, Path: ref.ExternalDiskRelativePath,
						Hydrate: ref.ShouldEnableBackgroundHydration}
				}
			}
			if h := bi.VMDiskHydrationInfo; h != nil {
				nd.Hydration = &Hydration{Status: strings.ToUpper(h.DiskHydrationStatus), RemainingBytes: h.DiskHydrationRemainingBytes}
			}
			if nd.UUID == "" {
				nd.UUID = bi.DiskExtID
			}
		}
		out.Disks = append(out.Disks, nd)
	}
	for _, d := range v.Disks {
		add(d, false)
	}
	for _, d := range v.CdRoms {
		add(d, true)
	}
	sortDisks(out.Disks)
	for _, n := range v.Nics {
		nn := NIC{UUID: n.ExtID, IsConnected: true}
		bk, nw := n.BackingInfo, n.NetworkInfo
		if bk == nil {
			bk = n.NicBackingInfo
		}
		if nw == nil {
			nw = n.NicNetworkInfo
		}
		if bk != nil {
			nn.MAC, nn.Model = bk.MacAddress, strings.ToUpper(bk.Model)
			nn.IsConnected = bk.IsConnected == nil || *bk.IsConnected
		}
		if nn.Model == "" {
			nn.Model = "VIRTIO"
		}
		if nw != nil && nw.Subnet != nil {
			nn.SubnetUUID, nn.SubnetName = nw.Subnet.ExtID, nw.Subnet.Name
		}
		out.NICs = append(out.NICs, nn)
	}
	return out
}

func (b *v4Backend) ListVMs(ctx context.Context) ([]VM, error) {
	var out []VM
	var cats [][]v4Ref
	err := v4ListAll(ctx, b, b.p("vmm", "/ahv/config/vms"), nil, func(v v4VM) error {
		out = append(out, v.neutral())
		cats = append(cats, v.Categories)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	b.resolveCategories(ctx, out, cats)
	return out, nil
}

func (b *v4Backend) GetVM(ctx context.Context, uuid string) (VM, error) {
	var r v4Response[v4VM]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("vmm", "/ahv/config/vms/"+url.PathEscape(uuid)), out: &r}); err != nil {
		return VM{}, fmt.Errorf("get VM %s: %w", uuid, err)
	}
	vm := r.Data.neutral()
	vms := []VM{vm}
	b.resolveCategories(ctx, vms, [][]v4Ref{r.Data.Categories})
	vm = vms[0]
	if r.Data.GuestTools == nil {
		var g v4Response[v4GuestTools]
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("vmm", "/ahv/config/vms/"+url.PathEscape(uuid)+"/guest-tools"), out: &g}); err == nil {
			vm.NGT = g.Data.neutral()
		}
	}
	return vm, nil
}

type v4Cluster struct {
	ExtID   string `json:"extId"`
	Name    string `json:"name"`
	Network *struct {
		ExternalAddress       *v4IP `json:"externalAddress"`
		ExternalDataServiceIP *v4IP `json:"externalDataServiceIp"`
	} `json:"network"`
	Config *struct {
		ClusterFunction []string `json:"clusterFunction"`
		BuildInfo       *struct {
			Version string `json:"version"`
		} `json:"buildInfo"`
	} `json:"config"`
}

func (c v4Cluster) neutral() (ClusterInfo, bool) {
	out := ClusterInfo{UUID: c.ExtID, Name: c.Name, ISCSIPort: 3260}
	if c.Config != nil {
		for _, f := range c.Config.ClusterFunction {
			if strings.EqualFold(f, "PRISM_CENTRAL") {
				return out, false
			}
		}
		if c.Config.BuildInfo != nil {
			out.Version = c.Config.BuildInfo.Version
		}
	}
	if c.Network != nil {
		out.ExternalIP, out.DataServicesIP = c.Network.ExternalAddress.String(), c.Network.ExternalDataServiceIP.String()
	}
	return out, true
}

func (b *v4Backend) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	var out []ClusterInfo
	err := v4ListAll(ctx, b, b.p("clustermgmt", "/config/clusters"), nil, func(c v4Cluster) error {
		if ci, ok := c.neutral(); ok {
			out = append(out, ci)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return out, nil
}

func (b *v4Backend) getCluster(ctx context.Context, id string) (ClusterInfo, error) {
	var r v4Response[v4Cluster]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("clustermgmt", "/config/clusters/"+url.PathEscape(id)), out: &r}); err != nil {
		return ClusterInfo{}, fmt.Errorf("get cluster %s: %w", id, err)
	}
	ci, _ := r.Data.neutral()
	return ci, nil
}

func (b *v4Backend) ListSubnets(ctx context.Context) ([]Subnet, error) {
	if b.rev["networking"] == "" {
		if b.v3 == nil {
			return nil, fmt.Errorf("list subnets: neither v4 networking nor v3 is served: %w", ErrUnsupported)
		}
		return b.v3.ListSubnets(ctx)
	}
	var out []Subnet
	err := v4ListAll(ctx, b, b.p("networking", "/config/subnets"), nil, func(s struct {
		ExtID            string `json:"extId"`
		Name             string `json:"name"`
		SubnetType       string `json:"subnetType"`
		NetworkID        int    `json:"networkId"`
		ClusterReference string `json:"clusterReference"`
	}) error {
		out = append(out, Subnet{UUID: s.ExtID, Name: s.Name, Type: s.SubnetType, VLANID: s.NetworkID, ClusterUUID: s.ClusterReference})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list subnets: %w", err)
	}
	return out, nil
}

// ---- storage containers ----

// v4StorageContainer is clustermgmt's StorageContainer; its id is
// containerExtId (extId on some revisions).
type v4StorageContainer struct {
	ExtID          string `json:"extId"`
	ContainerExtID string `json:"containerExtId"`
	Name           string `json:"name"`
	ClusterExtID   string `json:"clusterExtId"`
}

func (b *v4Backend) ListStorageContainers(ctx context.Context) ([]StorageContainer, error) {
	var out []StorageContainer
	err := v4ListAll(ctx, b, b.p("clustermgmt", "/config/storage-containers"), nil, func(c v4StorageContainer) error {
		out = append(out, StorageContainer{UUID: firstNonEmpty(c.ContainerExtID, c.ExtID), Name: c.Name, ClusterUUID: c.ClusterExtID})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list storage containers: %w", err)
	}
	return out, nil
}
