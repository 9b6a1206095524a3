// Package restoretest gives tests and benchmarks the iSCSI restore path
// against the Prism simulator before nutanix.Client offers it: Cluster
// wraps a nutanix.Cluster and implements restore.VolumeProvisioner with
// the two v4 calls the client lacks (a volume group of blank disks, and a
// VM whose disks are cloned from volume group disks), spoken directly to
// the simulator's v4 API. It is a stand-in to delete once the client has
// these calls; production code must not use it.
package restoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
)

// Cluster is a nutanix.Cluster with the iSCSI restore calls.
type Cluster struct {
	nutanix.Cluster
	base, user, pass string
	hc               *http.Client
}

var _ restore.VolumeProvisioner = (*Cluster)(nil)

// New wraps c for the simulator at baseURL (https://host:port) with the
// given credentials and CA file.
func New(c nutanix.Cluster, baseURL, user, password, caFile string) (*Cluster, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &Cluster{Cluster: c, base: strings.TrimRight(baseURL, "/"), user: user, pass: password,
		hc: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}, nil
}

func (c *Cluster) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	rq, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	rq.SetBasicAuth(c.user, c.pass)
	rq.Header.Set("Content-Type", "application/json")
	var id [16]byte
	rand.Read(id[:])
	rq.Header.Set("NTNX-Request-Id", fmt.Sprintf("%x-%x-%x-%x-%x", id[:4], id[4:6], id[6:8], id[8:10], id[10:]))
	resp, err := c.hc.Do(rq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// mutate sends a v4 mutation and waits for its task.
func (c *Cluster) mutate(ctx context.Context, method, path string, in any) (nutanix.Task, error) {
	var acc struct {
		Data struct {
			ExtID string `json:"extId"`
		} `json:"data"`
	}
	if err := c.do(ctx, method, path, in, &acc); err != nil {
		return nutanix.Task{}, err
	}
	return c.WaitTask(ctx, acc.Data.ExtID)
}

// CreateBlankVolumeGroup implements restore.VolumeProvisioner.
func (c *Cluster) CreateBlankVolumeGroup(ctx context.Context, spec restore.VolumeGroupSpec) (nutanix.VolumeGroup, error) {
	var disks []map[string]any
	for i, sz := range spec.DiskSizes {
		d := map[string]any{"index": i, "diskSizeBytes": sz}
		if spec.ContainerUUID != "" {
			d["diskDataSourceReference"] = map[string]any{"extId": spec.ContainerUUID, "entityType": "STORAGE_CONTAINER"}
		}
		disks = append(disks, d)
	}
	t, err := c.mutate(ctx, "POST", "/api/volumes/v4.0/config/volume-groups", map[string]any{
		"name": spec.Name, "clusterReference": spec.ClusterUUID, "usageType": "USER", "disks": disks})
	vg := nutanix.VolumeGroup{Name: spec.Name, ClusterUUID: spec.ClusterUUID}
	vg.UUID = t.Details["volumeGroupExtId"]
	if err != nil {
		return vg, err
	}
	var list struct {
		Data []struct {
			ExtID         string `json:"extId"`
			Index         int    `json:"index"`
			DiskSizeBytes int64  `json:"diskSizeBytes"`
		} `json:"data"`
	}
	if err := c.do(ctx, "GET", "/api/volumes/v4.0/config/volume-groups/"+vg.UUID+"/disks", nil, &list); err != nil {
		return vg, err
	}
	for _, d := range list.Data {
		vg.Disks = append(vg.Disks, nutanix.VolumeGroupDisk{UUID: d.ExtID, Index: d.Index, SizeBytes: d.DiskSizeBytes})
	}
	return vg, nil
}

// CreateVMFromVolumeDisks implements restore.VolumeProvisioner.
func (c *Cluster) CreateVMFromVolumeDisks(ctx context.Context, spec nutanix.VMSpec, vgDisks []string) (string, error) {
	boot := map[string]any{"$objectType": "vmm.v4.ahv.config.LegacyBoot"}
	switch spec.BootType {
	case nutanix.BootUEFI:
		boot = map[string]any{"$objectType": "vmm.v4.ahv.config.UefiBoot"}
	case nutanix.BootSecureBoot:
		boot = map[string]any{"$objectType": "vmm.v4.ahv.config.UefiBoot", "isSecureBootEnabled": true}
	}
	body := map[string]any{"name": spec.Name, "description": spec.Description, "numSockets": max(spec.NumSockets, 1),
		"numCoresPerSocket": max(spec.CoresPerSocket, 1), "memorySizeBytes": spec.MemoryBytes, "machineType": spec.MachineType,
		"bootConfig": boot, "powerState": "OFF", "cluster": map[string]any{"extId": spec.ClusterUUID}}
	var disks []map[string]any
	for i, d := range spec.Disks {
		bi := map[string]any{"$objectType": "vmm.v4.ahv.config.VmDisk", "diskSizeBytes": d.SizeBytes,
			"dataSource": map[string]any{"reference": map[string]any{"$objectType": "vmm.v4.ahv.config.VolumeDiskReference", "volumeDiskExtId": vgDisks[i]}}}
		if d.ContainerUUID != "" {
			bi["storageContainer"] = map[string]any{"extId": d.ContainerUUID}
		}
		disks = append(disks, map[string]any{"diskAddress": map[string]any{"busType": d.Bus, "index": d.Index}, "backingInfo": bi})
	}
	body["disks"] = disks
	var nics []map[string]any
	for _, n := range spec.NICs {
		bk := map[string]any{"model": n.Model}
		if n.Model == "" {
			bk["model"] = "VIRTIO"
		}
		if n.MAC != "" {
			bk["macAddress"] = n.MAC
		}
		nics = append(nics, map[string]any{"backingInfo": bk, "networkInfo": map[string]any{"subnet": map[string]any{"extId": n.SubnetUUID}}})
	}
	if len(nics) > 0 {
		body["nics"] = nics
	}
	t, err := c.mutate(ctx, "POST", "/api/vmm/v4.0/ahv/config/vms", body)
	for _, e := range t.Entities {
		if strings.Contains(e.Kind, "vm") && e.UUID != "" {
			return e.UUID, err
		}
	}
	return "", err
}
