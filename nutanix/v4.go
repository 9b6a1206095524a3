package nutanix

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// v4PageSize is $limit for v4 lists (the server maximum is 100).
var v4PageSize = 100

// ---- envelope ----

type v4Response[T any] struct {
	Data     T          `json:"data"`
	Metadata v4Metadata `json:"metadata"`
}

type v4Metadata struct {
	TotalAvailableResults int `json:"totalAvailableResults"`
	Links                 []struct {
		Href string `json:"href"`
		Rel  string `json:"rel"`
	} `json:"links"`
	ExtraInfo []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	} `json:"extraInfo"`
}

func (m v4Metadata) extra(name string) (int64, bool) {
	for _, e := range m.ExtraInfo {
		if strings.EqualFold(e.Name, name) {
			s := kvString(e.Value)
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

type v4Ref struct {
	ExtID string `json:"extId,omitempty"`
}

type v4IP struct {
	IPv4 *struct {
		Value string `json:"value"`
	} `json:"ipv4"`
	IPv6 *struct {
		Value string `json:"value"`
	} `json:"ipv6"`
}

func (ip *v4IP) String() string {
	switch {
	case ip == nil:
		return ""
	case ip.IPv4 != nil && ip.IPv4.Value != "":
		return ip.IPv4.Value
	case ip.IPv6 != nil:
		return ip.IPv6.Value
	}
	return ""
}

// ---- vmm ----

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
				ObjectType string `json:"$objectType"`
				ImageExtID string `json:"imageExtId"`
			} `json:"reference"`
		} `json:"dataSource"`
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
				nd.ImageUUID = bi.DataSource.Reference.ImageExtID
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

// ---- dataprotection ----

type v4RecoveryPoint struct {
	ExtID              string `json:"extId"`
	Name               string `json:"name"`
	Status             string `json:"status"`
	RecoveryPointType  string `json:"recoveryPointType"`
	CreationTime       string `json:"creationTime"`
	ExpirationTime     string `json:"expirationTime"`
	LocationReferences []struct {
		LocationExtID string `json:"locationExtId"`
	} `json:"locationReferences"`
	VMRecoveryPoints []struct {
		ExtID              string `json:"extId"`
		VMExtID            string `json:"vmExtId"`
		RecoveryPointType  string `json:"recoveryPointType"`
		ConsistencyGroupID string `json:"consistencyGroupExtId"`
		DiskRecoveryPoints []struct {
			DiskRecoveryPointExtID string `json:"diskRecoveryPointExtId"`
			DiskExtID              string `json:"diskExtId"`
		} `json:"diskRecoveryPoints"`
	} `json:"vmRecoveryPoints"`
}

func (rp v4RecoveryPoint) neutral() Snapshot {
	s := Snapshot{ID: rp.ExtID, Name: rp.Name, API: APIV4, State: rp.Status,
		Consistency: Consistency(strings.ToUpper(firstNonEmpty(rp.RecoveryPointType, string(CrashConsistent))))}
	if t, err := time.Parse(time.RFC3339, rp.CreationTime); err == nil {
		s.CreatedAt = t.UTC()
	}
	if t, err := time.Parse(time.RFC3339, rp.ExpirationTime); err == nil && t.Year() > 1970 {
		s.ExpiresAt = t.UTC()
	}
	if len(rp.LocationReferences) > 0 {
		s.ClusterUUID = rp.LocationReferences[0].LocationExtID
	}
	if len(rp.VMRecoveryPoints) > 0 {
		v := rp.VMRecoveryPoints[0]
		s.VMUUID, s.VMRecoveryPointID, s.ConsistencyGroupUUID = v.VMExtID, v.ExtID, v.ConsistencyGroupID
		if v.RecoveryPointType != "" {
			s.Consistency = Consistency(strings.ToUpper(v.RecoveryPointType))
		}
		for _, d := range v.DiskRecoveryPoints {
			s.Disks = append(s.Disks, SnapshotDisk{DiskUUID: d.DiskExtID, ID: d.DiskRecoveryPointExtID})
		}
	}
	return s
}

type v4ChangedRegion struct {
	Offset     int64  `json:"offset"`
	Length     int64  `json:"length"`
	RegionType string `json:"regionType"`
}

// V4ChangedRegions is the compute-changed-regions response.
type V4ChangedRegions = v4Response[[]v4ChangedRegion]

// ---- backend ----

// v4Backend implements Cluster with the v4 namespaces. Image upload (and
// subnets without networking) go through v3 on the same Prism Central.
type v4Backend struct {
	r   *rest
	o   Options
	rev map[string]string
	v3  *v3Backend // nil when v3 is not served
}

var _ Cluster = (*v4Backend)(nil)

func (b *v4Backend) API() APIVersion { return APIV4 }

func (b *v4Backend) p(ns, rest string) string { return "/api/" + ns + "/" + b.rev[ns] + rest }

func v4ListAll[T any](ctx context.Context, b *v4Backend, path string, q url.Values, each func(T) error) error {
	seen := 0
	for page := 0; ; page++ {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("$page", strconv.Itoa(page))
		qq.Set("$limit", strconv.Itoa(v4PageSize))
		var r v4Response[[]T]
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: path, query: qq, out: &r}); err != nil {
			return err
		}
		for _, e := range r.Data {
			if err := each(e); err != nil {
				return err
			}
		}
		seen += len(r.Data)
		total := r.Metadata.TotalAvailableResults
		if len(r.Data) == 0 || len(r.Data) < v4PageSize || (total > 0 && seen >= total) {
			return nil
		}
	}
}

// taskRef decodes a mutation's data = TaskReference{extId}.
type v4TaskRef = v4Response[struct {
	ExtID string `json:"extId"`
}]

// mutate sends a v4 mutation and waits for the task it returns.
func (b *v4Backend) mutate(ctx context.Context, op string, rq request) (Task, error) {
	var tr v4TaskRef
	rq.out = &tr
	if _, err := b.r.do(ctx, rq); err != nil {
		return Task{}, fmt.Errorf("%s: %w", op, err)
	}
	t, err := b.WaitTask(ctx, tr.Data.ExtID)
	if err != nil {
		return t, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// etag GETs path and returns its ETag (for If-Match).
func (b *v4Backend) etag(ctx context.Context, path string) (string, error) {
	resp, err := b.r.do(ctx, request{method: http.MethodGet, path: path, out: new(map[string]any)})
	if err != nil {
		return "", err
	}
	return resp.Header.Get("ETag"), nil
}

// deleteWithETag GETs the entity for its ETag, DELETEs with If-Match and
// waits for the task. Missing entities count as deleted.
func (b *v4Backend) deleteWithETag(ctx context.Context, path, op string) error {
	tag, err := b.etag(ctx, path)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	h := http.Header{}
	if tag != "" {
		h.Set("If-Match", tag)
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodDelete, path: path, header: h})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (b *v4Backend) ListVMs(ctx context.Context) ([]VM, error) {
	var out []VM
	err := v4ListAll(ctx, b, b.p("vmm", "/ahv/config/vms"), nil, func(v v4VM) error {
		out = append(out, v.neutral())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	return out, nil
}

func (b *v4Backend) GetVM(ctx context.Context, uuid string) (VM, error) {
	var r v4Response[v4VM]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("vmm", "/ahv/config/vms/"+url.PathEscape(uuid)), out: &r}); err != nil {
		return VM{}, fmt.Errorf("get VM %s: %w", uuid, err)
	}
	vm := r.Data.neutral()
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

// ---- recovery points ----

func (b *v4Backend) CreateSnapshot(ctx context.Context, vmUUID, name string, appConsistent bool) (Snapshot, error) {
	typ := CrashConsistent
	vmrp := map[string]any{"vmExtId": vmUUID}
	if appConsistent {
		typ = ApplicationConsistent
		vmrp["applicationConsistentProperties"] = map[string]any{
			"$objectType": "dataprotection.v4.common.VssProperties",
			// COPY_BACKUP leaves the guest's own backup history alone (§5)
			"backupType":             "COPY_BACKUP",
			"shouldStoreVssMetadata": false,
		}
	}
	vmrp["recoveryPointType"] = string(typ) // set both (§5: which one is honoured is unconfirmed)
	body := map[string]any{"name": name, "recoveryPointType": string(typ), "vmRecoveryPoints": []any{vmrp}}
	op := "create recovery point of VM " + vmUUID
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("dataprotection", "/config/recovery-points"), in: body})
	if err != nil {
		return Snapshot{}, err
	}
	id := t.Details["recoveryPointExtId"]
	if id == "" {
		id = t.entity("recovery-point", "recoverypoint", "recovery_point")
	}
	if id == "" {
		return Snapshot{}, fmt.Errorf("%s: task %s names no recovery point", op, t.ID)
	}
	return b.GetSnapshot(ctx, id)
}

func (b *v4Backend) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	var r v4Response[v4RecoveryPoint]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("dataprotection", "/config/recovery-points/"+url.PathEscape(id)), out: &r}); err != nil {
		return Snapshot{}, fmt.Errorf("get recovery point %s: %w", id, err)
	}
	s := r.Data.neutral()
	if s.ID == "" {
		s.ID = id
	}
	b.fillDiskSizes(ctx, &s)
	return s, nil
}

// fillDiskSizes adds disk sizes and containers from the VM, if it exists.
func (b *v4Backend) fillDiskSizes(ctx context.Context, s *Snapshot) {
	if s.VMUUID == "" {
		return
	}
	vm, err := b.GetVM(ctx, s.VMUUID)
	if err != nil {
		return
	}
	if s.ClusterUUID == "" {
		s.ClusterUUID = vm.ClusterUUID
	}
	for i, sd := range s.Disks {
		for _, d := range vm.Disks {
			if d.UUID == sd.DiskUUID {
				s.Disks[i].SizeBytes, s.Disks[i].ContainerUUID = d.SizeBytes, d.ContainerUUID
			}
		}
	}
}

func (b *v4Backend) ListSnapshots(ctx context.Context, vmUUID string) ([]Snapshot, error) {
	var out []Snapshot
	err := v4ListAll(ctx, b, b.p("dataprotection", "/config/recovery-points"), nil, func(rp v4RecoveryPoint) error {
		s := rp.neutral()
		if vmUUID == "" || s.VMUUID == vmUUID {
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list recovery points: %w", err)
	}
	return out, nil
}

func (b *v4Backend) DeleteSnapshot(ctx context.Context, id string) error {
	return b.deleteWithETag(ctx, b.p("dataprotection", "/config/recovery-points/"+url.PathEscape(id)), "delete recovery point "+id)
}

// ---- changed regions: discover-cluster on PC, compute on PE ----

type v4DiskRPRef struct {
	ObjectType             string `json:"$objectType"`
	RecoveryPointExtID     string `json:"recoveryPointExtId"`
	VMRecoveryPointExtID   string `json:"vmRecoveryPointExtId"`
	DiskRecoveryPointExtID string `json:"diskRecoveryPointExtId"`
}

type v4Discovered struct {
	base  string // https://clusterIp:port
	rev   string // revision the JWT is scoped to
	token string
}

func (b *v4Backend) diskRef(s Snapshot, diskUUID string) (v4DiskRPRef, error) {
	if s.API != APIV4 {
		return v4DiskRPRef{}, fmt.Errorf("snapshot %s was made with %s, not v4: %w", s.ID, s.API, ErrUnsupported)
	}
	d, ok := s.Disk(diskUUID)
	if !ok || d.ID == "" || s.VMRecoveryPointID == "" {
		return v4DiskRPRef{}, fmt.Errorf("disk %s is not in recovery point %s: %w", diskUUID, s.ID, ErrNotFound)
	}
	return v4DiskRPRef{ObjectType: "dataprotection.v4.content.VmDiskRecoveryPointReference",
		RecoveryPointExtID: s.ID, VMRecoveryPointExtID: s.VMRecoveryPointID, DiskRecoveryPointExtID: d.ID}, nil
}

func (b *v4Backend) discover(ctx context.Context, disk v4DiskRPRef, ref *v4DiskRPRef) (v4Discovered, error) {
	spec := map[string]any{
		"$objectType":       "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec",
		"diskRecoveryPoint": disk,
	}
	if ref != nil {
		spec["referenceDiskRecoveryPoint"] = *ref
	}
	body := map[string]any{
		"$objectType":            "dataprotection.v4.content.ClusterDiscoverSpec",
		"operation":              "COMPUTE_CHANGED_REGIONS",
		"$specItemDiscriminator": "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec",
		"spec":                   spec,
	}
	var r v4Response[struct {
		ClusterIP *v4IP  `json:"clusterIp"`
		JWTToken  string `json:"jwtToken"`
	}]
	op := "discover cluster of recovery point " + disk.RecoveryPointExtID
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: b.p("dataprotection", "/config/recovery-points/"+url.PathEscape(disk.RecoveryPointExtID)+"/$actions/discover-cluster"), in: body, out: &r}); err != nil {
		return v4Discovered{}, fmt.Errorf("%s: %w", op, err)
	}
	if r.Data.JWTToken == "" {
		return v4Discovered{}, fmt.Errorf("%s: no token in the answer", op)
	}
	host := r.Data.ClusterIP.String()
	port := b.r.base.Port()
	if host == "" {
		host = b.r.base.Hostname()
	}
	d := v4Discovered{base: "https://" + net.JoinHostPort(host, port), token: r.Data.JWTToken,
		rev: jwtRevision(r.Data.JWTToken, b.rev["dataprotection"])}
	// A redirection link, when given, names the PE endpoint exactly.
	for _, l := range r.Metadata.Links {
		if u, err := url.Parse(l.Href); err == nil && u.Scheme == "https" && strings.Contains(u.Path, "compute-changed-regions") {
			d.base = u.Scheme + "://" + u.Host
		}
	}
	return d, nil
}

var revInScope = regexp.MustCompile(`/api/dataprotection/(v4\.\d+)`)

// jwtRevision reads the dataprotection revision the token is scoped to
// (PE answers 401 "Scope claim value does not match API base path"
// otherwise, [N2K]); def when the token says nothing.
func jwtRevision(token, def string) string {
	parts := strings.Split(token, ".")
	if len(parts) < 2 {
		return def
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return def
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return def
	}
	for _, k := range []string{"scope", "scp", "aud"} {
		if m := revInScope.FindStringSubmatch(fmt.Sprint(claims[k])); m != nil {
			return m[1]
		}
	}
	return def
}

func (b *v4Backend) ChangedRegions(ctx context.Context, q RegionQuery, fn func(Region) error) error {
	disk, err := b.diskRef(q.Snapshot, q.DiskUUID)
	if err != nil {
		return fmt.Errorf("changed regions: %w", err)
	}
	var ref *v4DiskRPRef
	if q.Reference != nil {
		r, err := b.diskRef(*q.Reference, q.DiskUUID)
		if err != nil {
			return fmt.Errorf("changed regions (reference): %w", err)
		}
		ref = &r
	}
	switch q.BlockSize {
	case 0, 32768, 65536, 131072, 262144:
	default:
		return fmt.Errorf("changed regions: block size %d not one of 32768, 65536, 131072, 262144", q.BlockSize)
	}
	d, err := b.discover(ctx, disk, ref)
	if err != nil {
		return err
	}
	end := int64(0)
	if q.Length > 0 {
		end = q.Offset + q.Length
	}
	w := regionWalker{start: q.Offset, end: end, fn: fn}
	offset, rediscovered := q.Offset, false
	for {
		body := map[string]any{"$objectType": "dataprotection.v4.content.VmRecoveryPointChangedRegionsComputeSpec", "offset": offset}
		if end > 0 {
			body["length"] = end - offset
		}
		if q.BlockSize > 0 {
			body["blockSizeByte"] = q.BlockSize
		}
		if ref != nil {
			body["referenceRecoveryPointExtId"] = ref.RecoveryPointExtID
			body["referenceVmRecoveryPointExtId"] = ref.VMRecoveryPointExtID
			body["referenceDiskRecoveryPointExtId"] = ref.DiskRecoveryPointExtID
		}
		path := d.base + "/api/dataprotection/" + d.rev + "/content/recovery-points/" + url.PathEscape(disk.RecoveryPointExtID) +
			"/vm-recovery-points/" + url.PathEscape(disk.VMRecoveryPointExtID) + "/disk-recovery-points/" +
			url.PathEscape(disk.DiskRecoveryPointExtID) + "/$actions/compute-changed-regions"
		h := http.Header{"Cookie": {"NTNX_IGW_SESSION=" + d.token}}
		var raw json.RawMessage
		_, err := b.r.do(ctx, request{method: http.MethodPost, path: path, in: body, out: &raw, header: h, noAuth: true,
			op: "compute changed regions of disk " + q.DiskUUID})
		if errors.Is(err, ErrUnauthorized) && !rediscovered { // token expired: discover again, once
			rediscovered = true
			if d, err = b.discover(ctx, disk, ref); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("changed regions of disk %s at %d: %w", q.DiskUUID, offset, err)
		}
		page, err := DecodeV4ChangedRegions(raw)
		if err != nil {
			return err
		}
		done, err := w.take(page)
		if err != nil || done {
			return err
		}
		offset = page.NextOffset
	}
}

// ---- volumes ----

type v4VolumeGroup struct {
	ExtID            string `json:"extId"`
	Name             string `json:"name"`
	TargetName       string `json:"targetName"`
	TargetPrefix     string `json:"targetPrefix"`
	ClusterReference string `json:"clusterReference"`
}

type v4VolumeDisk struct {
	ExtID         string `json:"extId"`
	Index         int    `json:"index"`
	DiskSizeBytes int64  `json:"diskSizeBytes"`
}

func (b *v4Backend) getVG(ctx context.Context, id string) (VolumeGroup, error) {
	var r v4Response[v4VolumeGroup]
	p := b.p("volumes", "/config/volume-groups/"+url.PathEscape(id))
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &r}); err != nil {
		return VolumeGroup{}, fmt.Errorf("get volume group %s: %w", id, err)
	}
	if r.Data.ExtID == "" {
		r.Data.ExtID = id
	}
	return b.vgWithDisks(ctx, r.Data)
}

// vgWithDisks converts a volume group and lists its disks, in index order.
func (b *v4Backend) vgWithDisks(ctx context.Context, g v4VolumeGroup) (VolumeGroup, error) {
	vg := VolumeGroup{UUID: g.ExtID, Name: g.Name, ClusterUUID: g.ClusterReference, TargetIQN: g.TargetName}
	p := b.p("volumes", "/config/volume-groups/"+url.PathEscape(g.ExtID)+"/disks")
	err := v4ListAll(ctx, b, p, nil, func(d v4VolumeDisk) error {
		vg.Disks = append(vg.Disks, VolumeGroupDisk{UUID: d.ExtID, Index: d.Index, SizeBytes: d.DiskSizeBytes})
		return nil
	})
	if err != nil {
		return vg, fmt.Errorf("list disks of volume group %s: %w", g.ExtID, err)
	}
	sort.SliceStable(vg.Disks, func(i, j int) bool { return vg.Disks[i].Index < vg.Disks[j].Index })
	return vg, nil
}

// v4NameFilter is the OData $filter selecting entities named name.
func v4NameFilter(name string) url.Values {
	if name == "" {
		return nil
	}
	return url.Values{"$filter": {"name eq '" + strings.ReplaceAll(name, "'", "''") + "'"}}
}

// ListVolumeGroups lists volume groups by name ($filter, checked again
// here: a server that ignores the filter returns them all).
func (b *v4Backend) ListVolumeGroups(ctx context.Context, name string) ([]VolumeGroup, error) {
	var groups []v4VolumeGroup
	err := v4ListAll(ctx, b, b.p("volumes", "/config/volume-groups"), v4NameFilter(name), func(g v4VolumeGroup) error {
		if name == "" || g.Name == name {
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volume groups: %w", err)
	}
	out := make([]VolumeGroup, 0, len(groups))
	for _, g := range groups {
		vg, err := b.vgWithDisks(ctx, g)
		if errors.Is(err, ErrNotFound) { // deleted meanwhile
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, vg)
	}
	return out, nil
}

// checkBlankSpec validates a VolumeGroupSpec.
func checkBlankSpec(spec VolumeGroupSpec) error {
	if strings.TrimSpace(spec.Name) == "" {
		return errors.New("volume group name is empty")
	}
	if len(spec.DiskSizes) == 0 {
		return errors.New("no disk sizes")
	}
	for i, sz := range spec.DiskSizes {
		if sz <= 0 {
			return fmt.Errorf("disk %d: size %d is not positive", i, sz)
		}
	}
	return nil
}

// checkBlankDisks checks that vg has the disks spec asked for, in order.
func checkBlankDisks(vg VolumeGroup, spec VolumeGroupSpec) error {
	if len(vg.Disks) != len(spec.DiskSizes) {
		return fmt.Errorf("volume group %s has %d disks, want %d", vg.UUID, len(vg.Disks), len(spec.DiskSizes))
	}
	for i, d := range vg.Disks {
		if d.SizeBytes > 0 && d.SizeBytes < spec.DiskSizes[i] {
			return fmt.Errorf("volume group %s disk %d holds %d bytes, want %d", vg.UUID, i, d.SizeBytes, spec.DiskSizes[i])
		}
	}
	return nil
}

// CreateBlankVolumeGroup creates the group (POST volume-groups), then
// adds each disk (POST …/disks with diskDataSourceReference entityType
// STORAGE_CONTAINER, §4.8), waiting for every task. A failure after the
// group exists deletes it again and returns its UUID with the error.
func (b *v4Backend) CreateBlankVolumeGroup(ctx context.Context, spec VolumeGroupSpec) (VolumeGroup, error) {
	op := "create volume group " + spec.Name
	if err := checkBlankSpec(spec); err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	body := map[string]any{"name": spec.Name, "sharingStatus": "NOT_SHARED", "usageType": "USER"}
	if spec.Description != "" {
		body["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		body["clusterReference"] = spec.ClusterUUID
	}
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups"), in: body})
	id := firstNonEmpty(t.entity("volume-group", "volumegroup", "volume_group"), t.Details["volumeGroupExtId"])
	vg := VolumeGroup{UUID: id, Name: spec.Name, ClusterUUID: spec.ClusterUUID}
	if err != nil {
		return vg, err
	}
	if id == "" {
		return vg, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	fail := func(err error) (VolumeGroup, error) {
		if derr := b.DeleteVolumeGroup(context.WithoutCancel(ctx), id); derr != nil {
			err = fmt.Errorf("%w (and deleting the incomplete volume group %s: %v)", err, id, derr)
		}
		return vg, err
	}
	for i, sz := range spec.DiskSizes {
		disk := map[string]any{"index": i, "diskSizeBytes": sz}
		if spec.ContainerUUID != "" {
			disk["diskDataSourceReference"] = map[string]any{"$objectType": "common.v1.config.EntityReference",
				"extId": spec.ContainerUUID, "entityType": "STORAGE_CONTAINER"}
		}
		if _, err := b.mutate(ctx, fmt.Sprintf("%s: add disk %d", op, i), request{method: http.MethodPost,
			path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(id)+"/disks"), in: disk}); err != nil {
			return fail(err)
		}
	}
	got, err := b.getVG(ctx, id)
	if err == nil {
		err = checkBlankDisks(got, spec)
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	return got, nil
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

// CreateVolumeGroupFromSnapshotDisk creates a VG, then adds one disk whose
// data source is the DISK_RECOVERY_POINT (§4.8).
func (b *v4Backend) CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap Snapshot, diskUUID, name string) (VolumeGroup, error) {
	op := fmt.Sprintf("create volume group from disk %s of recovery point %s", diskUUID, snap.ID)
	ref, err := b.diskRef(snap, diskUUID)
	if err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	body := map[string]any{"name": name, "description": "ahvfs temporary clone of " + snap.Name,
		"sharingStatus": "NOT_SHARED", "usageType": "BACKUP_TARGET"}
	if snap.ClusterUUID != "" {
		body["clusterReference"] = snap.ClusterUUID
	}
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups"), in: body})
	if err != nil {
		return VolumeGroup{}, err
	}
	id := t.entity("volume-group", "volumegroup", "volume_group")
	if id == "" {
		return VolumeGroup{}, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	disk := map[string]any{"index": 0, "diskDataSourceReference": map[string]any{
		"$objectType": "common.v1.config.EntityReference", "extId": ref.DiskRecoveryPointExtID, "entityType": "DISK_RECOVERY_POINT"}}
	if sd, ok := snap.Disk(diskUUID); ok && sd.SizeBytes > 0 {
		disk["diskSizeBytes"] = sd.SizeBytes
	}
	if _, err := b.mutate(ctx, op+": add disk", request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(id)+"/disks"), in: disk}); err != nil {
		_ = b.DeleteVolumeGroup(context.WithoutCancel(ctx), id)
		return VolumeGroup{}, err
	}
	return b.getVG(ctx, id)
}

type v4ISCSIClient struct {
	ExtID              string `json:"extId"`
	ISCSIInitiatorName string `json:"iscsiInitiatorName"`
	AttachedTargets    []struct {
		ISCSITargetName string `json:"iscsiTargetName"`
	} `json:"attachedTargets"`
}

func (b *v4Backend) findISCSIClient(ctx context.Context, iqn string) (v4ISCSIClient, bool, error) {
	var found v4ISCSIClient
	ok := false
	err := v4ListAll(ctx, b, b.p("volumes", "/config/iscsi-clients"), nil, func(c v4ISCSIClient) error {
		if strings.EqualFold(c.ISCSIInitiatorName, iqn) {
			found, ok = c, true
		}
		return nil
	})
	return found, ok, err
}

func (b *v4Backend) AttachISCSIClient(ctx context.Context, vgUUID, iqn string) (ISCSITarget, error) {
	op := fmt.Sprintf("attach iSCSI client %s to volume group %s", iqn, vgUUID)
	if _, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)+"/$actions/attach-iscsi-client"),
		in: map[string]any{"$objectType": "volumes.v4.config.IscsiClient", "iscsiInitiatorName": iqn}}); err != nil {
		return ISCSITarget{}, err
	}
	vg, err := b.getVG(ctx, vgUUID)
	if err != nil {
		return ISCSITarget{}, fmt.Errorf("%s: %w", op, err)
	}
	tgt := ISCSITarget{VolumeGroupUUID: vgUUID, TargetIQN: vg.TargetIQN}
	if c, ok, err := b.findISCSIClient(ctx, iqn); err == nil && ok {
		tgt.ClientID = c.ExtID
		if tgt.TargetIQN == "" && len(c.AttachedTargets) > 0 {
			tgt.TargetIQN = c.AttachedTargets[0].ISCSITargetName
		}
	}
	var ci ClusterInfo
	if vg.ClusterUUID != "" {
		ci, err = b.getCluster(ctx, vg.ClusterUUID)
	} else {
		var cs []ClusterInfo
		if cs, err = b.ListClusters(ctx); err == nil && len(cs) > 0 {
			ci = cs[0]
		}
	}
	if err != nil {
		return tgt, fmt.Errorf("%s: %w", op, err)
	}
	if ci.DataServicesIP == "" {
		return tgt, fmt.Errorf("%s: cluster %s has no Data Services IP configured", op, firstNonEmpty(ci.Name, ci.UUID))
	}
	tgt.Portal = ci.Portal()
	return tgt, nil
}

func (b *v4Backend) DetachISCSIClient(ctx context.Context, vgUUID, iqn string) error {
	op := fmt.Sprintf("detach iSCSI client %s from volume group %s", iqn, vgUUID)
	c, ok, err := b.findISCSIClient(ctx, iqn)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return nil
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)+"/$actions/detach-iscsi-client"),
		in: map[string]any{"$objectType": "volumes.v4.config.IscsiClientAttachment", "extId": c.ExtID}})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (b *v4Backend) DeleteVolumeGroup(ctx context.Context, vgUUID string) error {
	return b.deleteWithETag(ctx, b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)), "delete volume group "+vgUUID)
}

// ---- images ----

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
	return b.deleteWithETag(ctx, b.p("vmm", "/content/images/"+url.PathEscape(uuid)), "delete image "+uuid)
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
		case d.ImageUUID != "" && d.VolumeDiskUUID != "":
			return "", fmt.Errorf("create VM %s: disk %s.%d: both an image and a volume disk source", spec.Name, addr["busType"], d.Index)
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

func (b *v4Backend) SetPowerState(ctx context.Context, vmUUID string, state PowerState) error {
	op := fmt.Sprintf("power %s VM %s", state, vmUUID)
	p := b.p("vmm", "/ahv/config/vms/"+url.PathEscape(vmUUID))
	var r v4Response[v4VM]
	resp, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &r})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if strings.EqualFold(r.Data.PowerState, string(state)) {
		return nil
	}
	action := "power-on"
	if state == PowerOff {
		action = "power-off"
	}
	h := http.Header{}
	if tag := resp.Header.Get("ETag"); tag != "" {
		h.Set("If-Match", tag)
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost, path: p + "/$actions/" + action, header: h})
	return err
}

func (b *v4Backend) DeleteVM(ctx context.Context, uuid string) error {
	return b.deleteWithETag(ctx, b.p("vmm", "/ahv/config/vms/"+url.PathEscape(uuid)), "delete VM "+uuid)
}

// ---- tasks ----

func (b *v4Backend) WaitTask(ctx context.Context, taskID string) (Task, error) {
	return pollTask(ctx, b.o, "task", taskID, func(ctx context.Context, id string) (Task, error) {
		var r v4Response[v4Task]
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("prism", "/config/tasks/"+url.PathEscape(id)), out: &r}); err != nil {
			return Task{}, err
		}
		if r.Data.ExtID == "" {
			r.Data.ExtID = id
		}
		return r.Data.neutral(), nil
	})
}
