package prismsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ---------- envelope, errors, request ids ----------

type ctxKey int

const ctxObjType ctxKey = 1

var v4ErrPrefix = map[string]string{"vmm": "VMM", "dataprotection": "DP", "volumes": "VOL", "prism": "PRISM",
	"clustermgmt": "CLU", "networking": "NET"}

func reserved() obj { return obj{"$fv": "v4.r0"} }

func v4Meta(flagsPaginated bool, total int, links []obj) obj {
	m := obj{
		"$objectType": "common.v1.response.ApiResponseMetadata",
		"$reserved":   obj{"$fv": "v1.r0"},
		"flags": []obj{
			{"$objectType": "common.v1.config.Flag", "$reserved": obj{"$fv": "v1.r0"}, "name": "hasError", "value": false},
			{"$objectType": "common.v1.config.Flag", "$reserved": obj{"$fv": "v1.r0"}, "name": "isPaginated", "value": flagsPaginated},
		},
		"totalAvailableResults": total,
	}
	if links != nil {
		m["links"] = links
	}
	return m
}

// v4JSON writes the v4 envelope. meta nil gives the single-object metadata.
func v4JSON(w http.ResponseWriter, _ *http.Request, code int, objType string, data any, meta obj) {
	if meta == nil {
		meta = v4Meta(false, 1, nil)
	}
	writeJSON(w, code, obj{"$objectType": objType, "$reserved": reserved(), "data": data, "metadata": meta})
}

func v4Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	ns := v4Namespace(r.URL.Path)
	objType, _ := r.Context().Value(ctxObjType).(string)
	if objType == "" {
		objType = ns + ".v4.error.ErrorResponse"
	}
	num := map[int]string{400: "10001", 401: "10401", 404: "20005", 409: "30009", 412: "30012", 428: "30028",
		422: "10022", 429: "40029", 500: "50000", 503: "50003"}[code]
	if num == "" {
		num = strconv.Itoa(code)
	}
	prefix := v4ErrPrefix[ns]
	if prefix == "" {
		prefix = strings.ToUpper(ns)
	}
	meta := v4Meta(false, 0, nil)
	meta["flags"].([]obj)[0]["value"] = true
	writeJSON(w, code, obj{
		"$objectType": objType,
		"$reserved":   reserved(),
		"data": obj{
			"$objectType": ns + ".v4.error.ErrorResponse",
			"$reserved":   reserved(),
			"error": []obj{{
				"$objectType": ns + ".v4.error.AppMessage",
				"$reserved":   reserved(),
				"message":     msg,
				"severity":    "ERROR",
				"code":        prefix + "-" + num,
				"locale":      "en_US",
				"errorGroup":  http.StatusText(code),
			}},
			"$errorItemDiscriminator": "List<" + ns + ".v4.error.AppMessage>",
		},
		"metadata": meta,
	})
}

// idemCache replays the answer of a mutating v4 request whose
// NTNX-Request-Id was seen before.
type idemCache struct {
	mu sync.Mutex
	m  map[string]*recorded
}

type recorded struct {
	code   int
	header http.Header
	body   []byte
}

func (c *idemCache) init() { c.m = map[string]*recorded{} }

type recorder struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

// v4 registers a v4 handler for every served revision.
func (s *Sim) v4(mux *http.ServeMux, method, ns, suffix, objType string, h http.HandlerFunc) {
	mutating := method == "POST" || method == "PUT" || method == "DELETE" || method == "PATCH"
	mux.HandleFunc(method+" /api/"+ns+"/{rev}/"+suffix, func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), ctxObjType, objType))
		if !slices.Contains(s.opts.V4Revisions, r.PathValue("rev")) {
			v4Error(w, r, http.StatusNotFound, "API revision "+r.PathValue("rev")+" of "+ns+" is not served (served: "+strings.Join(s.opts.V4Revisions, ", ")+")")
			return
		}
		if !mutating {
			h(w, r)
			return
		}
		id := r.Header.Get("NTNX-Request-Id")
		if id == "" {
			v4Error(w, r, http.StatusBadRequest, "The NTNX-Request-Id header is required for this operation")
			return
		}
		key := method + " " + r.URL.Path + " " + id
		s.idem.mu.Lock()
		if rec := s.idem.m[key]; rec != nil {
			s.idem.mu.Unlock()
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body)
			return
		}
		s.idem.mu.Unlock()
		rw := &recorder{ResponseWriter: w}
		h(rw, r)
		if rw.code >= 200 && rw.code < 300 {
			s.idem.mu.Lock()
			s.idem.m[key] = &recorded{code: rw.code, header: w.Header().Clone(), body: rw.buf.Bytes()}
			s.idem.mu.Unlock()
		}
	})
}

// decodeV4 decodes a v4 body; errors answer 400 with the v4 envelope.
func (s *Sim) decodeV4(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.decodeJSON(w, r, v, true)
}

func etagOf(id string, version int64) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", id, version)))
	return `"` + hex.EncodeToString(h[:12]) + `"`
}

// checkIfMatch enforces If-Match for updates and deletes: 428 when missing,
// 412 on mismatch.
func checkIfMatch(w http.ResponseWriter, r *http.Request, etag string) bool {
	im := r.Header.Get("If-Match")
	if im == "" {
		v4Error(w, r, http.StatusPreconditionRequired, "The If-Match header with the entity's ETag is required")
		return false
	}
	norm := func(s string) string { return strings.Trim(strings.TrimPrefix(strings.TrimSpace(s), "W/"), `"`) }
	if norm(im) != norm(etag) {
		v4Error(w, r, http.StatusPreconditionFailed, "The entity was modified: If-Match "+im+" does not match the current ETag")
		return false
	}
	return true
}

// v4Page applies $page/$limit and returns bounds and metadata.
func (s *Sim) v4Page(w http.ResponseWriter, r *http.Request, n int) (lo, hi int, meta obj, ok bool) {
	q := r.URL.Query()
	page, limit := 0, 50
	var err error
	if v := q.Get("$page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 0 {
			v4Error(w, r, http.StatusBadRequest, "$page must be a non-negative integer")
			return 0, 0, nil, false
		}
	}
	if v := q.Get("$limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			v4Error(w, r, http.StatusBadRequest, "$limit must be an integer between 1 and 100")
			return 0, 0, nil, false
		}
	}
	lo, hi = min(page*limit, n), min(page*limit+limit, n)
	link := func(p int) string {
		u := *r.URL
		qq := u.Query()
		qq.Set("$page", strconv.Itoa(p))
		qq.Set("$limit", strconv.Itoa(limit))
		u.RawQuery = qq.Encode()
		return s.url + u.RequestURI()
	}
	last := max(0, (n+limit-1)/limit-1)
	links := []obj{
		{"$objectType": "common.v1.response.ApiLink", "href": link(page), "rel": "self"},
		{"$objectType": "common.v1.response.ApiLink", "href": link(0), "rel": "first"},
		{"$objectType": "common.v1.response.ApiLink", "href": link(last), "rel": "last"},
	}
	if page > 0 {
		links = append(links, obj{"$objectType": "common.v1.response.ApiLink", "href": link(page - 1), "rel": "prev"})
	}
	if page < last {
		links = append(links, obj{"$objectType": "common.v1.response.ApiLink", "href": link(page + 1), "rel": "next"})
	}
	return lo, hi, v4Meta(true, n, links), true
}

// odataEq evaluates the simple "$filter=field eq 'value'" form (terms joined
// with " and "); other filters match everything.
func odataEq(r *http.Request, attr func(string) string) bool {
	f := r.URL.Query().Get("$filter")
	if f == "" {
		return true
	}
	for _, term := range strings.Split(f, " and ") {
		parts := strings.SplitN(strings.TrimSpace(term), " eq ", 2)
		if len(parts) != 2 {
			continue
		}
		want := strings.Trim(strings.TrimSpace(parts[1]), "'")
		if attr(strings.TrimSpace(parts[0])) != want {
			return false
		}
	}
	return true
}

func (s *Sim) accepted(w http.ResponseWriter, r *http.Request, objType string, t *task) {
	v4JSON(w, r, http.StatusAccepted, objType, v4TaskRef(t), nil)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (s *Sim) routesV4(mux *http.ServeMux) {
	// vmm
	s.v4(mux, "GET", "vmm", "ahv/config/vms", "vmm.v4.ahv.config.ListVmsApiResponse", s.v4ListVMs)
	s.v4(mux, "POST", "vmm", "ahv/config/vms", "vmm.v4.ahv.config.CreateVmApiResponse", s.v4CreateVM)
	s.v4(mux, "GET", "vmm", "ahv/config/vms/{extId}", "vmm.v4.ahv.config.GetVmApiResponse", s.v4GetVM)
	s.v4(mux, "PUT", "vmm", "ahv/config/vms/{extId}", "vmm.v4.ahv.config.UpdateVmApiResponse", s.v4UpdateVM)
	s.v4(mux, "DELETE", "vmm", "ahv/config/vms/{extId}", "vmm.v4.ahv.config.DeleteVmApiResponse", s.v4DeleteVM)
	s.v4(mux, "GET", "vmm", "ahv/config/vms/{extId}/guest-tools", "vmm.v4.ahv.config.GetGuestToolsApiResponse", s.v4GuestTools)
	s.v4(mux, "GET", "vmm", "ahv/config/vms/{extId}/disks", "vmm.v4.ahv.config.ListDisksApiResponse", s.v4ListVMDisks)
	for _, a := range []string{"power-on", "power-off", "shutdown", "guest-shutdown"} {
		s.v4(mux, "POST", "vmm", "ahv/config/vms/{extId}/$actions/"+a, "vmm.v4.ahv.config.PowerOnVmApiResponse", s.v4Power(a))
	}
	s.v4(mux, "GET", "vmm", "content/images", "vmm.v4.content.ListImagesApiResponse", s.v4ListImages)
	s.v4(mux, "POST", "vmm", "content/images", "vmm.v4.content.CreateImageApiResponse", s.v4CreateImage)
	s.v4(mux, "GET", "vmm", "content/images/{extId}", "vmm.v4.content.GetImageApiResponse", s.v4GetImage)
	s.v4(mux, "GET", "vmm", "content/images/{extId}/file", "vmm.v4.content.GetFileByImageIdApiResponse", s.imageDownload)
	s.v4(mux, "DELETE", "vmm", "content/images/{extId}", "vmm.v4.content.DeleteImageApiResponse", s.v4DeleteImage)
	// dataprotection
	s.v4(mux, "POST", "dataprotection", "config/recovery-points", "dataprotection.v4.config.CreateRecoveryPointApiResponse", s.v4CreateRP)
	s.v4(mux, "GET", "dataprotection", "config/recovery-points", "dataprotection.v4.config.ListRecoveryPointsApiResponse", s.v4ListRPs)
	s.v4(mux, "GET", "dataprotection", "config/recovery-points/{extId}", "dataprotection.v4.config.GetRecoveryPointApiResponse", s.v4GetRP)
	s.v4(mux, "DELETE", "dataprotection", "config/recovery-points/{extId}", "dataprotection.v4.config.DeleteRecoveryPointApiResponse", s.v4DeleteRP)
	s.v4(mux, "GET", "dataprotection", "config/recovery-points/{rpExtId}/vm-recovery-points/{extId}", "dataprotection.v4.config.GetVmRecoveryPointApiResponse", s.v4GetVMRP)
	s.v4(mux, "POST", "dataprotection", "config/recovery-points/{extId}/$actions/set-expiration-time", "dataprotection.v4.config.SetExpirationTimeApiResponse", s.v4SetExpiry)
	s.v4(mux, "POST", "dataprotection", "config/recovery-points/{extId}/$actions/discover-cluster", "dataprotection.v4.config.DiscoverClusterApiResponse", s.v4DiscoverCluster)
	s.v4(mux, "POST", "dataprotection", "content/recovery-points/{rpExtId}/vm-recovery-points/{vmRpExtId}/disk-recovery-points/{extId}/$actions/compute-changed-regions",
		"dataprotection.v4.content.ChangedVmRegionsApiResponse", s.v4ComputeChangedRegions)
	// volumes
	s.v4(mux, "GET", "volumes", "config/volume-groups", "volumes.v4.config.ListVolumeGroupsApiResponse", s.v4ListVGs)
	s.v4(mux, "POST", "volumes", "config/volume-groups", "volumes.v4.config.CreateVolumeGroupApiResponse", s.v4CreateVG)
	s.v4(mux, "GET", "volumes", "config/volume-groups/{extId}", "volumes.v4.config.GetVolumeGroupApiResponse", s.v4GetVG)
	s.v4(mux, "DELETE", "volumes", "config/volume-groups/{extId}", "volumes.v4.config.DeleteVolumeGroupApiResponse", s.v4DeleteVG)
	s.v4(mux, "GET", "volumes", "config/volume-groups/{extId}/disks", "volumes.v4.config.ListVolumeDisksApiResponse", s.v4ListVGDisks)
	s.v4(mux, "POST", "volumes", "config/volume-groups/{extId}/disks", "volumes.v4.config.CreateVolumeDiskApiResponse", s.v4AddVGDisk)
	s.v4(mux, "POST", "volumes", "config/volume-groups/{extId}/$actions/attach-iscsi-client", "volumes.v4.config.AttachIscsiClientApiResponse", s.v4AttachISCSI)
	s.v4(mux, "POST", "volumes", "config/volume-groups/{extId}/$actions/detach-iscsi-client", "volumes.v4.config.DetachIscsiClientApiResponse", s.v4DetachISCSI)
	s.v4(mux, "GET", "volumes", "config/volume-groups/{extId}/external-iscsi-attachments", "volumes.v4.config.ListExternalIscsiAttachmentsApiResponse", s.v4ListAttachments)
	s.v4(mux, "GET", "volumes", "config/iscsi-clients", "volumes.v4.config.ListIscsiClientsApiResponse", s.v4ListISCSIClients)
	s.v4(mux, "GET", "volumes", "config/iscsi-clients/{extId}", "volumes.v4.config.GetIscsiClientApiResponse", s.v4GetISCSIClient)
	// prism, clustermgmt, networking
	s.v4(mux, "GET", "prism", "config/tasks/{extId}", "prism.v4.config.GetTaskApiResponse", s.v4GetTask)
	s.v4(mux, "GET", "clustermgmt", "config/clusters", "clustermgmt.v4.config.ListClustersApiResponse", s.v4ListClusters)
	s.v4(mux, "GET", "clustermgmt", "config/clusters/{extId}", "clustermgmt.v4.config.GetClusterApiResponse", s.v4GetCluster)
	s.v4(mux, "GET", "clustermgmt", "config/storage-containers", "clustermgmt.v4.config.ListStorageContainersApiResponse", s.v4ListContainers)
	s.v4(mux, "GET", "networking", "config/subnets", "networking.v4.config.ListSubnetsApiResponse", s.v4ListSubnets)
	mux.HandleFunc("OPTIONS /api/{ns}/unversioned/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, obj{"data": s.opts.V4Revisions[len(s.opts.V4Revisions)-1]})
	})
}

// ---------- vmm: VMs ----------

func ipv4(v string) obj {
	return obj{"$objectType": "common.v1.config.IPAddress", "ipv4": obj{"$objectType": "common.v1.config.IPv4Address", "value": v, "prefixLength": 32}}
}

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
		"categories": []obj{}, "hardwareClockTimezone": "UTC",
	}
}

func vmETag(v *vm) string { return etagOf(v.UUID, v.SpecVersion) }

func (s *Sim) v4ListVMs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*vm
	for _, v := range s.m.sortedVMs() {
		if odataEq(r, func(k string) string {
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
		}) {
			all = append(all, v)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, v := range all[lo:hi] {
		data = append(data, s.v4VM(v))
	}
	v4JSON(w, r, http.StatusOK, "vmm.v4.ahv.config.ListVmsApiResponse", data, meta)
}

func (s *Sim) v4GetVM(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("extId")]
	if v == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	w.Header().Set("ETag", vmETag(v))
	v4JSON(w, r, http.StatusOK, "vmm.v4.ahv.config.GetVmApiResponse", s.v4VM(v), nil)
}

func (s *Sim) v4GuestTools(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("extId")]
	if v == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	w.Header().Set("ETag", vmETag(v))
	v4JSON(w, r, http.StatusOK, "vmm.v4.ahv.config.GetGuestToolsApiResponse", v4GuestTools(v), nil)
}

func (s *Sim) v4ListVMDisks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("extId")]
	if v == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(v.Disks))
	if !ok {
		return
	}
	data := []obj{}
	for _, d := range v.Disks[lo:hi] {
		data = append(data, s.v4Disk(d))
	}
	v4JSON(w, r, http.StatusOK, "vmm.v4.ahv.config.ListDisksApiResponse", data, meta)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := s.taskFailure("CreateVm")
	id := newUUID()
	var v *vm
	if fail == "" {
		var err error
		if v, err = s.createVMLocked(sp); err != nil {
			s.writeErr(w, r, err)
			return
		}
		id = v.UUID
	}
	t := s.startTask("CreateVm", sp.ClusterUUID, []taskEntity{{Kind: "vm", UUID: id, Name: sp.Name}}, fail, func() {
		if v != nil {
			v.State = "COMPLETE"
		}
	})
	t.Details = map[string]string{"vmExtId": id}
	s.save()
	s.accepted(w, r, "vmm.v4.ahv.config.CreateVmApiResponse", t)
}

func (s *Sim) v4UpdateVM(w http.ResponseWriter, r *http.Request) {
	var in v4VMIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("extId")]
	if v == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
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
}

func (s *Sim) v4DeleteVM(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("extId")]
	if v == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	if !checkIfMatch(w, r, vmETag(v)) {
		return
	}
	t := s.startTask("DeleteVm", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}},
		s.taskFailure("DeleteVm"), func() { s.deleteVMLocked(v) })
	s.accepted(w, r, "vmm.v4.ahv.config.DeleteVmApiResponse", t)
}

func (s *Sim) v4Power(action string) http.HandlerFunc {
	want := "ON"
	if action != "power-on" {
		want = "OFF"
	}
	op := map[string]string{"power-on": "PowerOnVm", "power-off": "PowerOffVm", "shutdown": "ShutdownVm", "guest-shutdown": "GuestShutdownVm"}[action]
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		v := s.m.VMs[r.PathValue("extId")]
		if v == nil {
			v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
			return
		}
		if r.Header.Get("If-Match") != "" && !checkIfMatch(w, r, vmETag(v)) {
			return
		}
		if action == "guest-shutdown" && (v.NGT == NGTAbsent || v.NGT == "") {
			v4Error(w, r, http.StatusBadRequest, "Guest shutdown needs Nutanix Guest Tools")
			return
		}
		t := s.startTask(op, v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, s.taskFailure(op), func() {
			v.PowerState = want
			v.SpecVersion++
			v.Updated = time.Now()
		})
		s.accepted(w, r, "vmm.v4.ahv.config."+op+"ApiResponse", t)
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
	var all []*image
	for _, im := range s.m.sortedImages() {
		if odataEq(r, func(k string) string {
			if k == "name" {
				return im.Name
			}
			return ""
		}) {
			all = append(all, im)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, im := range all[lo:hi] {
		data = append(data, s.v4Image(im))
	}
	v4JSON(w, r, http.StatusOK, "vmm.v4.content.ListImagesApiResponse", data, meta)
}

func (s *Sim) v4GetImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.m.Images[r.PathValue("extId")]
	if im == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	w.Header().Set("ETag", etagOf(im.UUID, im.SpecVersion))
	v4JSON(w, r, http.StatusOK, "vmm.v4.content.GetImageApiResponse", s.v4Image(im), nil)
}

func (s *Sim) v4DeleteImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.m.Images[r.PathValue("extId")]
	if im == nil {
		v4Error(w, r, http.StatusNotFound, "Failed to perform the operation as the backend service could not find the entity.")
		return
	}
	if !checkIfMatch(w, r, etagOf(im.UUID, im.SpecVersion)) {
		return
	}
	t := s.startTask("DeleteImage", im.ClusterUUID, []taskEntity{{Kind: "image", UUID: im.UUID, Name: im.Name}},
		s.taskFailure("DeleteImage"), func() {
			delete(s.m.Images, im.UUID)
			os.Remove(s.abs(im.File))
		})
	s.accepted(w, r, "vmm.v4.content.DeleteImageApiResponse", t)
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
	fail := s.taskFailure("CreateImage")
	id := newUUID()
	var im *image
	if fail == "" {
		var err error
		if im, err = s.createImageLocked(ii); err != nil {
			s.writeErr(w, r, err)
			return
		}
		id = im.UUID
	}
	t := s.startTask("CreateImage", ii.ClusterUUID, []taskEntity{{Kind: "image", UUID: id, Name: ii.Name}}, fail, func() {
		if im != nil {
			im.State = "COMPLETE"
		}
	})
	t.Details = map[string]string{"imageExtId": id}
	s.save()
	s.accepted(w, r, "vmm.v4.content.CreateImageApiResponse", t)
}

// ---------- dataprotection ----------

func (s *Sim) v4VMRP(sn *snapshot) obj {
	disks := []obj{}
	for _, d := range sn.Disks {
		disks = append(disks, obj{"$objectType": "dataprotection.v4.common.DiskRecoveryPoint", "$reserved": reserved(),
			"diskRecoveryPointExtId": d.DiskRPUUID, "diskExtId": d.DiskUUID})
	}
	o := obj{"$objectType": "dataprotection.v4.config.VmRecoveryPoint", "$reserved": reserved(),
		"extId": sn.UUID, "vmExtId": sn.VMUUID, "name": sn.Name, "creationTime": ts(sn.Created),
		"status": "COMPLETE", "recoveryPointType": sn.Type, "consistencyGroupExtId": sn.GroupUUID,
		"locationAgnosticId": sn.LocationUUID, "diskRecoveryPoints": disks, "vmCategories": []string{}}
	if sn.Type == AppConsistent {
		o["applicationConsistentProperties"] = obj{"$objectType": "dataprotection.v4.common.VssProperties",
			"backupType": "COPY_BACKUP", "shouldIncludeWriters": false, "shouldStoreVssMetadata": false}
		o["$applicationConsistentPropertiesItemDiscriminator"] = "dataprotection.v4.common.VssProperties"
	}
	return o
}

func (s *Sim) v4RP(rp *recoveryPoint) obj {
	vmrps := []obj{}
	locs := []obj{}
	seen := map[string]bool{}
	for _, id := range rp.Snapshots {
		sn := s.m.Snapshots[id]
		if sn == nil {
			continue
		}
		vmrps = append(vmrps, s.v4VMRP(sn))
		if v := s.m.VMs[sn.VMUUID]; v != nil && !seen[v.ClusterUUID] {
			seen[v.ClusterUUID] = true
			locs = append(locs, obj{"$objectType": "dataprotection.v4.config.LocationReference", "locationExtId": v.ClusterUUID})
		} else if v == nil && !seen[sn.VM.ClusterUUID] {
			seen[sn.VM.ClusterUUID] = true
			locs = append(locs, obj{"$objectType": "dataprotection.v4.config.LocationReference", "locationExtId": sn.VM.ClusterUUID})
		}
	}
	o := obj{"$objectType": "dataprotection.v4.config.RecoveryPoint", "$reserved": reserved(),
		"extId": rp.UUID, "name": rp.Name, "creationTime": ts(rp.Created), "status": rp.State,
		"recoveryPointType": rp.Type, "locationAgnosticId": rp.UUID, "locationReferences": locs,
		"vmRecoveryPoints": vmrps, "volumeGroupRecoveryPoints": []obj{}, "ownerExtId": "00000000-0000-0000-0000-000000000000"}
	if !rp.Expiry.IsZero() {
		o["expirationTime"] = ts(rp.Expiry)
	}
	return o
}

func rpETag(rp *recoveryPoint) string { return etagOf(rp.UUID, rp.Version) }

func (s *Sim) v4CreateRP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name              string `json:"name"`
		ExpirationTime    string `json:"expirationTime"`
		RecoveryPointType string `json:"recoveryPointType"`
		VMRecoveryPoints  []struct {
			VMExtID           string `json:"vmExtId"`
			RecoveryPointType string `json:"recoveryPointType"`
		} `json:"vmRecoveryPoints"`
		VolumeGroupRecoveryPoints []json.RawMessage `json:"volumeGroupRecoveryPoints"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	if len(in.VMRecoveryPoints) == 0 {
		v4Error(w, r, http.StatusBadRequest, "vmRecoveryPoints must name at least one VM")
		return
	}
	if len(in.VolumeGroupRecoveryPoints) > 0 {
		v4Error(w, r, http.StatusBadRequest, "volume group recovery points are not simulated")
		return
	}
	if len(in.VMRecoveryPoints) > 32 {
		v4Error(w, r, http.StatusBadRequest, "a recovery point holds at most 32 entities")
		return
	}
	var expiry time.Time
	if in.ExpirationTime != "" {
		t, err := time.Parse(time.RFC3339, in.ExpirationTime)
		if err != nil {
			v4Error(w, r, http.StatusBadRequest, "expirationTime: "+err.Error())
			return
		}
		expiry = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range in.VMRecoveryPoints {
		if s.m.VMs[x.VMExtID] == nil {
			v4Error(w, r, http.StatusNotFound, "VM "+x.VMExtID+" not found")
			return
		}
	}
	rpType := cmpOr(in.RecoveryPointType, CrashConsistent)
	fail := s.taskFailure("CreateRecoveryPoint")
	rp := &recoveryPoint{UUID: newUUID(), Name: in.Name, Type: rpType, Created: time.Now(), Expiry: expiry, State: "PENDING", Version: 1}
	var ents []taskEntity
	if fail == "" {
		group := newUUID()
		for _, x := range in.VMRecoveryPoints {
			t := cmpOr(x.RecoveryPointType, rpType)
			sn, err := s.snapshotVMLocked(s.m.VMs[x.VMExtID], in.Name, t, "v4")
			if err != nil {
				for _, id := range rp.Snapshots {
					s.removeSnapshotLocked(id)
				}
				s.writeErr(w, r, err)
				return
			}
			sn.RPUUID, sn.GroupUUID = rp.UUID, group
			if !expiry.IsZero() {
				sn.ExpiryMsecs = expiry.UnixMilli()
			}
			rp.Snapshots = append(rp.Snapshots, sn.UUID)
			if sn.Type != AppConsistent {
				rp.Type = CrashConsistent // what was actually taken
			}
		}
		s.m.RecoveryPoints[rp.UUID] = rp
		ents = append(ents, taskEntity{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name})
	}
	t := s.startTask("CreateRecoveryPoint", "", ents, fail, func() {
		rp.State = "COMPLETE"
		for _, id := range rp.Snapshots {
			if sn := s.m.Snapshots[id]; sn != nil {
				sn.State = "COMPLETE"
			}
		}
	})
	if fail == "" {
		t.Details = map[string]string{"recoveryPointExtId": rp.UUID}
	}
	s.save()
	s.accepted(w, r, "dataprotection.v4.config.CreateRecoveryPointApiResponse", t)
}

func (s *Sim) v4ListRPs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*recoveryPoint
	for _, rp := range s.m.sortedRPs() {
		if rp.State == "COMPLETE" && odataEq(r, func(k string) string {
			switch k {
			case "name":
				return rp.Name
			case "extId":
				return rp.UUID
			}
			return ""
		}) {
			all = append(all, rp)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, rp := range all[lo:hi] {
		data = append(data, s.v4RP(rp))
	}
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.config.ListRecoveryPointsApiResponse", data, meta)
}

func (s *Sim) rpOr404(w http.ResponseWriter, r *http.Request, id string) *recoveryPoint {
	rp := s.m.RecoveryPoints[id]
	if rp == nil || rp.State != "COMPLETE" {
		v4Error(w, r, http.StatusNotFound, "Recovery point "+id+" not found")
		return nil
	}
	return rp
}

func (s *Sim) v4GetRP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.rpOr404(w, r, r.PathValue("extId"))
	if rp == nil {
		return
	}
	w.Header().Set("ETag", rpETag(rp))
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.config.GetRecoveryPointApiResponse", s.v4RP(rp), nil)
}

func (s *Sim) v4GetVMRP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.rpOr404(w, r, r.PathValue("rpExtId"))
	if rp == nil {
		return
	}
	id := r.PathValue("extId")
	if !slices.Contains(rp.Snapshots, id) || s.m.Snapshots[id] == nil {
		v4Error(w, r, http.StatusNotFound, "VM recovery point "+id+" not found in recovery point "+rp.UUID)
		return
	}
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.config.GetVmRecoveryPointApiResponse", s.v4VMRP(s.m.Snapshots[id]), nil)
}

func (s *Sim) v4DeleteRP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.rpOr404(w, r, r.PathValue("extId"))
	if rp == nil {
		return
	}
	if !checkIfMatch(w, r, rpETag(rp)) {
		return
	}
	t := s.startTask("DeleteRecoveryPoint", "", []taskEntity{{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name}},
		s.taskFailure("DeleteRecoveryPoint"), func() {
			for _, id := range slices.Clone(rp.Snapshots) {
				s.removeSnapshotLocked(id)
			}
			delete(s.m.RecoveryPoints, rp.UUID)
		})
	s.accepted(w, r, "dataprotection.v4.config.DeleteRecoveryPointApiResponse", t)
}

func (s *Sim) v4SetExpiry(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExpirationTime string `json:"expirationTime"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	exp, err := time.Parse(time.RFC3339, in.ExpirationTime)
	if err != nil {
		v4Error(w, r, http.StatusBadRequest, "expirationTime: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.rpOr404(w, r, r.PathValue("extId"))
	if rp == nil {
		return
	}
	if r.Header.Get("If-Match") != "" && !checkIfMatch(w, r, rpETag(rp)) {
		return
	}
	rp.Expiry = exp
	rp.Version++
	t := s.startTask("SetRecoveryPointExpirationTime", "", []taskEntity{{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name}}, "", nil)
	s.save()
	s.accepted(w, r, "dataprotection.v4.config.SetExpirationTimeApiResponse", t)
}

type v4DiskRPRef struct {
	ObjectType             string `json:"$objectType"`
	RecoveryPointExtID     string `json:"recoveryPointExtId"`
	VMRecoveryPointExtID   string `json:"vmRecoveryPointExtId"`
	DiskRecoveryPointExtID string `json:"diskRecoveryPointExtId"`
}

// findDiskRP resolves an rp/vmrp/diskrp triple.
func (s *Sim) findDiskRP(rpID, vmrpID, diskID string) (*snapshot, *snapDisk, string) {
	rp := s.m.RecoveryPoints[rpID]
	if rp == nil || rp.State != "COMPLETE" {
		return nil, nil, "recovery point " + rpID + " not found"
	}
	if !slices.Contains(rp.Snapshots, vmrpID) {
		return nil, nil, "VM recovery point " + vmrpID + " not found in recovery point " + rpID
	}
	sn := s.m.Snapshots[vmrpID]
	if sn == nil {
		return nil, nil, "VM recovery point " + vmrpID + " not found"
	}
	for _, d := range sn.Disks {
		if d.DiskRPUUID == diskID {
			return sn, d, ""
		}
	}
	return nil, nil, "disk recovery point " + diskID + " not found in VM recovery point " + vmrpID
}

func (s *Sim) v4DiscoverCluster(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ObjectType string `json:"$objectType"`
		Operation  string `json:"operation"`
		Spec       *struct {
			ObjectType                 string       `json:"$objectType"`
			DiskRecoveryPoint          *v4DiskRPRef `json:"diskRecoveryPoint"`
			ReferenceDiskRecoveryPoint *v4DiskRPRef `json:"referenceDiskRecoveryPoint"`
			VMRecoveryPointExtID       string       `json:"vmRecoveryPointExtId"`
		} `json:"spec"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	if in.ObjectType != "dataprotection.v4.content.ClusterDiscoverSpec" {
		v4Error(w, r, http.StatusBadRequest, "$objectType must be dataprotection.v4.content.ClusterDiscoverSpec")
		return
	}
	if in.Operation != "COMPUTE_CHANGED_REGIONS" && in.Operation != "GET_VSS_METADATA" {
		v4Error(w, r, http.StatusBadRequest, "operation must be COMPUTE_CHANGED_REGIONS or GET_VSS_METADATA")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rpID := r.PathValue("extId")
	rp := s.rpOr404(w, r, rpID)
	if rp == nil {
		return
	}
	var links []obj
	if in.Operation == "COMPUTE_CHANGED_REGIONS" {
		if in.Spec == nil || in.Spec.ObjectType != "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec" || in.Spec.DiskRecoveryPoint == nil {
			v4Error(w, r, http.StatusBadRequest, "spec must be a dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec with diskRecoveryPoint")
			return
		}
		d := in.Spec.DiskRecoveryPoint
		if d.RecoveryPointExtID == "" {
			d.RecoveryPointExtID = rpID
		}
		if _, _, msg := s.findDiskRP(d.RecoveryPointExtID, d.VMRecoveryPointExtID, d.DiskRecoveryPointExtID); msg != "" {
			v4Error(w, r, http.StatusNotFound, msg)
			return
		}
		if ref := in.Spec.ReferenceDiskRecoveryPoint; ref != nil {
			if _, _, msg := s.findDiskRP(ref.RecoveryPointExtID, ref.VMRecoveryPointExtID, ref.DiskRecoveryPointExtID); msg != "" {
				v4Error(w, r, http.StatusNotFound, "reference: "+msg)
				return
			}
		}
		href := s.url + "/api/dataprotection/v4.0/content/recovery-points/" + url.PathEscape(d.RecoveryPointExtID) +
			"/vm-recovery-points/" + url.PathEscape(d.VMRecoveryPointExtID) + "/disk-recovery-points/" +
			url.PathEscape(d.DiskRecoveryPointExtID) + "/$actions/compute-changed-regions"
		links = []obj{{"$objectType": "common.v1.response.ApiLink", "href": href, "rel": "compute-changed-regions"}}
	}
	data := obj{"$objectType": "dataprotection.v4.common.ClusterInfo", "$reserved": reserved(),
		"clusterIp": ipv4(s.host), "jwtToken": s.makeJWT(rpID)}
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.config.DiscoverClusterApiResponse", data, v4Meta(false, 1, links))
}

var validBlockSizes = []int64{32768, 65536, 131072, 262144}

func (s *Sim) v4ComputeChangedRegions(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Offset                          *int64 `json:"offset"`
		Length                          *int64 `json:"length"`
		BlockSizeByte                   *int64 `json:"blockSizeByte"`
		ReferenceRecoveryPointExtID     string `json:"referenceRecoveryPointExtId"`
		ReferenceVMRecoveryPointExtID   string `json:"referenceVmRecoveryPointExtId"`
		ReferenceDiskRecoveryPointExtID string `json:"referenceDiskRecoveryPointExtId"`
	}
	if !s.decodeJSON(w, r, &in, false) {
		return
	}
	refs := []string{in.ReferenceRecoveryPointExtID, in.ReferenceVMRecoveryPointExtID, in.ReferenceDiskRecoveryPointExtID}
	nref := 0
	for _, x := range refs {
		if x != "" {
			nref++
		}
	}
	if nref != 0 && nref != 3 {
		v4Error(w, r, http.StatusBadRequest, "referenceRecoveryPointExtId, referenceVmRecoveryPointExtId and referenceDiskRecoveryPointExtId go together")
		return
	}
	bs := s.opts.RegionBlockSize
	if in.BlockSizeByte != nil {
		if !slices.Contains(validBlockSizes, *in.BlockSizeByte) {
			v4Error(w, r, http.StatusBadRequest, "blockSizeByte must be one of 32768, 65536, 131072, 262144")
			return
		}
		bs = *in.BlockSizeByte
	}
	var off, end int64
	if in.Offset != nil {
		off = *in.Offset
	}
	if in.Length != nil {
		if *in.Length <= 0 {
			v4Error(w, r, http.StatusBadRequest, "length must be positive")
			return
		}
		end = off + *in.Length
	}
	if off < 0 {
		v4Error(w, r, http.StatusBadRequest, "offset must not be negative")
		return
	}
	s.mu.Lock()
	_, sd, msg := s.findDiskRP(r.PathValue("rpExtId"), r.PathValue("vmRpExtId"), r.PathValue("extId"))
	var rd *snapDisk
	if msg == "" && nref == 3 {
		var m2 string
		_, rd, m2 = s.findDiskRP(refs[0], refs[1], refs[2])
		if m2 != "" {
			msg = "reference: " + m2
		} else if rd.VDiskUUID != sd.VDiskUUID {
			s.mu.Unlock()
			v4Error(w, r, http.StatusBadRequest, "the reference disk recovery point is not of the same disk")
			return
		}
	}
	s.mu.Unlock()
	if msg != "" {
		v4Error(w, r, http.StatusNotFound, msg)
		return
	}
	q := regionQuery{file: s.abs(sd.File), start: off, end: end, block: bs, max: s.opts.MaxRegionsPerPage}
	if rd != nil {
		q.ref = s.abs(rd.File)
	}
	res, err := computeRegions(q)
	if err != nil {
		v4Error(w, r, http.StatusNotFound, "disk recovery point data is gone: "+err.Error())
		return
	}
	data := []obj{}
	for _, rg := range res.regions {
		data = append(data, obj{"$objectType": "dataprotection.v4.content.ChangedRegion", "$reserved": reserved(),
			"offset": rg.Offset, "length": rg.Length, "regionType": rg.Type})
	}
	meta := v4Meta(false, len(data), nil)
	extra := []obj{{"$objectType": "common.v1.config.KVPair", "name": "fileSize", "value": res.fileSize}}
	if res.next >= 0 {
		extra = append(extra, obj{"$objectType": "common.v1.config.KVPair", "name": "nextOffset", "value": res.next})
	}
	meta["extraInfo"] = extra
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.content.ChangedVmRegionsApiResponse", data, meta)
}

// ---------- volumes ----------

func vgETag(g *volumeGroup) string { return etagOf(g.UUID, g.Version) }

func (s *Sim) v4VG(g *volumeGroup) obj {
	auth := "NONE"
	if g.TargetSecret != "" || s.opts.CHAPUser != "" {
		auth = "CHAP"
	}
	return obj{"$objectType": "volumes.v4.config.VolumeGroup", "$reserved": reserved(),
		"extId": g.UUID, "name": g.Name, "description": g.Description, "sharingStatus": "SHARED",
		"targetName": g.TargetName, "targetPrefix": "iqn.2010-06.com.nutanix", "enabledAuthentications": auth,
		"iscsiFeatures": obj{"$objectType": "volumes.v4.config.IscsiFeatures", "enabledAuthentications": auth},
		"usageType":     g.UsageType, "isHidden": false, "clusterReference": g.ClusterUUID,
		"shouldLoadBalanceVmAttachments": false, "protocol": "ISCSI", "createdTime": ts(g.Created)}
}

func (s *Sim) v4VGDisk(g *volumeGroup, d *vgDisk) obj {
	o := obj{"$objectType": "volumes.v4.config.VolumeDisk", "$reserved": reserved(), "extId": d.UUID, "index": d.Index,
		"diskSizeBytes": d.Size, "storageContainerId": d.ContainerUUID}
	et := map[string]string{"snapshot_disk": "DISK_RECOVERY_POINT", "vm_disk": "VM_DISK", "": "STORAGE_CONTAINER"}[d.SourceKind]
	src := d.SourceUUID
	if d.SourceKind == "" {
		src = d.ContainerUUID
	}
	o["diskDataSourceReference"] = obj{"$objectType": "common.v1.config.EntityReference", "extId": src, "entityType": et}
	return o
}

func (s *Sim) v4ListVGs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*volumeGroup
	for _, g := range s.m.sortedVGs() {
		if odataEq(r, func(k string) string {
			switch k {
			case "name":
				return g.Name
			case "extId":
				return g.UUID
			}
			return ""
		}) {
			all = append(all, g)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, g := range all[lo:hi] {
		data = append(data, s.v4VG(g))
	}
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.ListVolumeGroupsApiResponse", data, meta)
}

func (s *Sim) vgOr404(w http.ResponseWriter, r *http.Request) *volumeGroup {
	g := s.m.VGs[r.PathValue("extId")]
	if g == nil {
		v4Error(w, r, http.StatusNotFound, "Volume group "+r.PathValue("extId")+" not found")
	}
	return g
}

func (s *Sim) v4GetVG(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	w.Header().Set("ETag", vgETag(g))
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.GetVolumeGroupApiResponse", s.v4VG(g), nil)
}

type v4VolumeDiskIn struct {
	Index                   *int  `json:"index"`
	DiskSizeBytes           int64 `json:"diskSizeBytes"`
	DiskDataSourceReference *struct {
		ExtID      string `json:"extId"`
		EntityType string `json:"entityType"`
	} `json:"diskDataSourceReference"`
}

func (s *Sim) v4DiskSpec(d v4VolumeDiskIn) (vgDiskSpec, error) {
	ds := vgDiskSpec{Index: -1, Size: d.DiskSizeBytes}
	if d.Index != nil {
		ds.Index = *d.Index
	}
	if ref := d.DiskDataSourceReference; ref != nil {
		switch ref.EntityType {
		case "STORAGE_CONTAINER", "":
			if ref.ExtID != "" && s.m.containerByUUID(ref.ExtID) == nil {
				return ds, errNotFound("storage container %s not found", ref.ExtID)
			}
			ds.ContainerUUID = ref.ExtID
		case "DISK_RECOVERY_POINT":
			ds.SourceKind, ds.SourceUUID = "snapshot_disk", ref.ExtID
		case "VM_DISK":
			ds.SourceKind, ds.SourceUUID = "vm_disk", ref.ExtID
		default:
			return ds, errInvalid("diskDataSourceReference.entityType %q is not supported (STORAGE_CONTAINER, VM_DISK, DISK_RECOVERY_POINT)", ref.EntityType)
		}
	}
	return ds, nil
}

func (s *Sim) v4CreateVG(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name             string `json:"name"`
		Description      string `json:"description"`
		UsageType        string `json:"usageType"`
		ClusterReference string `json:"clusterReference"`
		IscsiFeatures    *struct {
			TargetSecret string `json:"targetSecret"`
		} `json:"iscsiFeatures"`
		Disks []v4VolumeDiskIn `json:"disks"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var specs []vgDiskSpec
	for _, d := range in.Disks {
		ds, err := s.v4DiskSpec(d)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		specs = append(specs, ds)
	}
	fail := s.taskFailure("CreateVolumeGroup")
	id := newUUID()
	if fail == "" {
		g, err := s.createVGLocked(in.Name, in.Description, in.ClusterReference, in.UsageType, "v4", specs)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		if in.IscsiFeatures != nil {
			g.TargetSecret = in.IscsiFeatures.TargetSecret
		}
		id = g.UUID
	}
	t := s.startTask("CreateVolumeGroup", in.ClusterReference, []taskEntity{{Kind: "volume_group", UUID: id, Name: in.Name}}, fail, nil)
	t.Details = map[string]string{"volumeGroupExtId": id}
	s.save()
	s.accepted(w, r, "volumes.v4.config.CreateVolumeGroupApiResponse", t)
}

func (s *Sim) v4DeleteVG(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	if !checkIfMatch(w, r, vgETag(g)) {
		return
	}
	t := s.startTask("DeleteVolumeGroup", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}},
		s.taskFailure("DeleteVolumeGroup"), func() {
			if err := s.deleteVGLocked(g); err != nil {
				s.logf("delete volume group %s: %v", g.UUID, err)
			}
		})
	s.accepted(w, r, "volumes.v4.config.DeleteVolumeGroupApiResponse", t)
}

func (s *Sim) v4ListVGDisks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(g.Disks))
	if !ok {
		return
	}
	data := []obj{}
	for _, d := range g.Disks[lo:hi] {
		data = append(data, s.v4VGDisk(g, d))
	}
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.ListVolumeDisksApiResponse", data, meta)
}

func (s *Sim) v4AddVGDisk(w http.ResponseWriter, r *http.Request) {
	var in v4VolumeDiskIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	ds, err := s.v4DiskSpec(in)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	fail := s.taskFailure("CreateVolumeDisk")
	if fail == "" {
		tmp, err := s.createVGLocked(g.Name, "", g.ClusterUUID, g.UsageType, "v4", []vgDiskSpec{ds})
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		// Move the new disk into g.
		delete(s.m.VGs, tmp.UUID)
		d := tmp.Disks[0]
		if in.Index == nil {
			d.Index = len(g.Disks)
		}
		g.Disks = append(g.Disks, d)
		g.Version++
		if err := s.exportVGLocked(g); err != nil {
			s.logf("re-export %s: %v", g.Name, err)
		}
	}
	t := s.startTask("CreateVolumeDisk", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}, fail, nil)
	s.save()
	s.accepted(w, r, "volumes.v4.config.CreateVolumeDiskApiResponse", t)
}

func (s *Sim) v4ISCSIClient(c *iscsiClient) obj {
	var targets []obj
	for _, g := range s.m.sortedVGs() {
		if slices.Contains(g.Clients, c.UUID) {
			targets = append(targets, obj{"$objectType": "volumes.v4.config.TargetParam", "iscsiTargetName": g.TargetName, "numVirtualTargets": 1})
		}
	}
	if targets == nil {
		targets = []obj{}
	}
	auth := "NONE"
	if c.Secret != "" {
		auth = "CHAP"
	}
	o := obj{"$objectType": "volumes.v4.config.IscsiClient", "$reserved": reserved(), "extId": c.UUID,
		"enabledAuthentications": auth, "attachedTargets": targets, "clusterReference": s.m.Clusters[1].UUID}
	if c.IQN != "" {
		o["iscsiInitiatorName"] = c.IQN
	} else {
		o["iscsiInitiatorNetworkId"] = ipv4(c.IP)
	}
	return o
}

func (s *Sim) v4AttachISCSI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExtID                   string `json:"extId"`
		IscsiInitiatorName      string `json:"iscsiInitiatorName"`
		IscsiInitiatorNetworkID *struct {
			IPv4 *struct {
				Value string `json:"value"`
			} `json:"ipv4"`
		} `json:"iscsiInitiatorNetworkId"`
		ClientSecret string `json:"clientSecret"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	ip := ""
	if in.IscsiInitiatorNetworkID != nil && in.IscsiInitiatorNetworkID.IPv4 != nil {
		ip = in.IscsiInitiatorNetworkID.IPv4.Value
	}
	n := 0
	for _, x := range []string{in.ExtID, in.IscsiInitiatorName, ip} {
		if x != "" {
			n++
		}
	}
	if n != 1 {
		v4Error(w, r, http.StatusBadRequest, "exactly one of extId, iscsiInitiatorName and iscsiInitiatorNetworkId must be given")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	if in.ExtID != "" {
		c := s.m.ISCSIClients[in.ExtID]
		if c == nil {
			v4Error(w, r, http.StatusNotFound, "iSCSI client "+in.ExtID+" not found")
			return
		}
		in.IscsiInitiatorName, ip = c.IQN, c.IP
	}
	fail := s.taskFailure("AttachIscsiClient")
	var c *iscsiClient
	if fail == "" {
		var err error
		if c, err = s.attachClientLocked(g, in.IscsiInitiatorName, ip, in.ClientSecret); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	ents := []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}
	if c != nil {
		ents = append(ents, taskEntity{Kind: "iscsi_client", UUID: c.UUID, Name: c.IQN})
	}
	t := s.startTask("AttachIscsiClient", g.ClusterUUID, ents, fail, nil)
	if c != nil {
		t.Details = map[string]string{"iscsiClientExtId": c.UUID}
	}
	s.save()
	s.accepted(w, r, "volumes.v4.config.AttachIscsiClientApiResponse", t)
}

func (s *Sim) v4DetachISCSI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExtID string `json:"extId"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	if !slices.Contains(g.Clients, in.ExtID) {
		v4Error(w, r, http.StatusNotFound, "iSCSI client "+in.ExtID+" is not attached to volume group "+g.UUID)
		return
	}
	fail := s.taskFailure("DetachIscsiClient")
	if fail == "" {
		if err := s.detachClientLocked(g, in.ExtID); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	t := s.startTask("DetachIscsiClient", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}, fail, nil)
	s.save()
	s.accepted(w, r, "volumes.v4.config.DetachIscsiClientApiResponse", t)
}

func (s *Sim) v4ListAttachments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.vgOr404(w, r)
	if g == nil {
		return
	}
	data := []obj{}
	for _, id := range g.Clients {
		data = append(data, obj{"$objectType": "volumes.v4.config.IscsiClientAttachment", "extId": id, "clusterReference": g.ClusterUUID})
	}
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.ListExternalIscsiAttachmentsApiResponse", data, v4Meta(false, len(data), nil))
}

func (s *Sim) v4ListISCSIClients(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*iscsiClient
	for _, c := range s.m.ISCSIClients {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b *iscsiClient) int { return strings.Compare(a.IQN+a.IP, b.IQN+b.IP) })
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, c := range all[lo:hi] {
		data = append(data, s.v4ISCSIClient(c))
	}
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.ListIscsiClientsApiResponse", data, meta)
}

func (s *Sim) v4GetISCSIClient(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.ISCSIClients[r.PathValue("extId")]
	if c == nil {
		v4Error(w, r, http.StatusNotFound, "iSCSI client "+r.PathValue("extId")+" not found")
		return
	}
	v4JSON(w, r, http.StatusOK, "volumes.v4.config.GetIscsiClientApiResponse", s.v4ISCSIClient(c), nil)
}

// ---------- clustermgmt, networking ----------

func (s *Sim) v4Cluster(c *cluster) obj {
	fn := []string{"AOS"}
	network := obj{"$objectType": "clustermgmt.v4.config.ClusterNetworkReference", "externalAddress": ipv4(s.host)}
	if c.PC {
		fn = []string{"PRISM_CENTRAL"}
		network["fqdn"] = "localhost"
	} else {
		network["externalDataServiceIp"] = ipv4(s.DataServicesIP())
		network["nfsSubnetWhitelist"] = []string{}
	}
	return obj{"$objectType": "clustermgmt.v4.config.Cluster", "$reserved": reserved(), "extId": c.UUID, "name": c.Name,
		"network": network,
		"config": obj{"$objectType": "clustermgmt.v4.config.ClusterConfigReference", "clusterFunction": fn,
			"buildInfo":       obj{"$objectType": "clustermgmt.v4.config.BuildReference", "version": "7.3.1.5"},
			"hypervisorTypes": []string{"AHV"}, "redundancyFactor": 2},
		"nodes": obj{"$objectType": "clustermgmt.v4.config.NodeReference", "numberOfNodes": 1}}
}

func (s *Sim) v4ListClusters(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*cluster
	for _, c := range s.m.Clusters {
		if odataEq(r, func(k string) string {
			switch k {
			case "name":
				return c.Name
			case "extId":
				return c.UUID
			}
			return ""
		}) {
			all = append(all, c)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, c := range all[lo:hi] {
		data = append(data, s.v4Cluster(c))
	}
	v4JSON(w, r, http.StatusOK, "clustermgmt.v4.config.ListClustersApiResponse", data, meta)
}

func (s *Sim) v4GetCluster(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.clusterByUUID(r.PathValue("extId"))
	if c == nil {
		v4Error(w, r, http.StatusNotFound, "Cluster "+r.PathValue("extId")+" not found")
		return
	}
	v4JSON(w, r, http.StatusOK, "clustermgmt.v4.config.GetClusterApiResponse", s.v4Cluster(c), nil)
}

func (s *Sim) v4ListSubnets(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*subnet
	for _, sn := range s.m.Subnets {
		if odataEq(r, func(k string) string {
			switch k {
			case "name":
				return sn.Name
			case "extId":
				return sn.UUID
			case "clusterReference":
				return sn.ClusterUUID
			}
			return ""
		}) {
			all = append(all, sn)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, sn := range all[lo:hi] {
		data = append(data, obj{"$objectType": "networking.v4.config.Subnet", "$reserved": reserved(), "extId": sn.UUID,
			"name": sn.Name, "subnetType": "VLAN", "networkId": sn.VLAN, "clusterReference": sn.ClusterUUID,
			"virtualSwitchReference": "br0"})
	}
	v4JSON(w, r, http.StatusOK, "networking.v4.config.ListSubnetsApiResponse", data, meta)
}

// v4ListContainers serves clustermgmt storage-containers (StorageContainer
// is identified by containerExtId).
func (s *Sim) v4ListContainers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*container
	for _, c := range s.m.Containers {
		if odataEq(r, func(k string) string {
			switch k {
			case "name":
				return c.Name
			case "containerExtId", "extId":
				return c.UUID
			case "clusterExtId":
				return c.ClusterUUID
			}
			return ""
		}) {
			all = append(all, c)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, c := range all[lo:hi] {
		cl := s.m.clusterByUUID(c.ClusterUUID)
		o := obj{"$objectType": "clustermgmt.v4.config.StorageContainer", "$reserved": reserved(), "extId": c.UUID,
			"containerExtId": c.UUID, "name": c.Name, "clusterExtId": c.ClusterUUID, "replicationFactor": 2}
		if cl != nil {
			o["clusterName"] = cl.Name
		}
		data = append(data, o)
	}
	v4JSON(w, r, http.StatusOK, "clustermgmt.v4.config.ListStorageContainersApiResponse", data, meta)
}
