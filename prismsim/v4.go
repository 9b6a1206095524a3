package prismsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
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
	simkit.WriteJSON(w, code, obj{"$objectType": objType, "$reserved": reserved(), "data": data, "metadata": meta})
}

// v4NotFound is the message of a v4 404 for a VM or an image.
const v4NotFound = "Failed to perform the operation as the backend service could not find the entity."

// v4ObjType is the response $objectType of the handler serving r ("" outside
// of one).
func v4ObjType(r *http.Request) string {
	t, _ := r.Context().Value(ctxObjType).(string)
	return t
}

func v4Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	ns := v4Namespace(r.URL.Path)
	objType := v4ObjType(r)
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
	simkit.WriteJSON(w, code, obj{
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
		s.idempotent(w, r, method+" "+r.URL.Path+" "+id, h)
	})
}

// idempotent runs h once per key: a request whose key was answered with
// success before gets the first answer again, and nothing is done twice
// (v4 NTNX-Request-Id, v3 metadata.uuid).
func (s *Sim) idempotent(w http.ResponseWriter, r *http.Request, key string, h http.HandlerFunc) {
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
		want := strings.TrimSpace(parts[1])
		if len(want) >= 2 && want[0] == '\'' && want[len(want)-1] == '\'' {
			want = strings.ReplaceAll(want[1:len(want)-1], "''", "'") // OData escapes ' as ''
		}
		if attr(strings.TrimSpace(parts[0])) != want {
			return false
		}
	}
	return true
}

// v4List answers a v4 list with its handler's $objectType: the items that
// pass $filter (attr gives an item's value of a field; nil ignores $filter),
// one $page of $limit of them, each rendered by render. The caller holds
// s.mu.
func v4List[T any](s *Sim, w http.ResponseWriter, r *http.Request, items []T, attr func(T, string) string, render func(T) obj) {
	var all []T
	for _, it := range items {
		if attr == nil || odataEq(r, func(k string) string { return attr(it, k) }) {
			all = append(all, it)
		}
	}
	lo, hi, meta, ok := s.v4Page(w, r, len(all))
	if !ok {
		return
	}
	data := []obj{}
	for _, it := range all[lo:hi] {
		data = append(data, render(it))
	}
	v4JSON(w, r, http.StatusOK, v4ObjType(r), data, meta)
}

// v4Get answers a v4 get with its handler's $objectType and, when etag is
// not empty, an ETag header.
func v4Get(w http.ResponseWriter, r *http.Request, etag string, data obj) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	v4JSON(w, r, http.StatusOK, v4ObjType(r), data, nil)
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
	s.v4(mux, "GET", "prism", "config/categories", "prism.v4.config.ListCategoriesApiResponse", s.v4ListCategories)
	s.v4(mux, "GET", "prism", "config/categories/{extId}", "prism.v4.config.GetCategoryApiResponse", s.v4GetCategory)
	s.v4(mux, "GET", "clustermgmt", "config/clusters", "clustermgmt.v4.config.ListClustersApiResponse", s.v4ListClusters)
	s.v4(mux, "GET", "clustermgmt", "config/clusters/{extId}", "clustermgmt.v4.config.GetClusterApiResponse", s.v4GetCluster)
	s.v4(mux, "GET", "clustermgmt", "config/storage-containers", "clustermgmt.v4.config.ListStorageContainersApiResponse", s.v4ListContainers)
	s.v4(mux, "GET", "clustermgmt", "config/clusters/{clusterExtId}/hosts", "clustermgmt.v4.config.ListHostsByClusterIdApiResponse", s.v4ListHosts)
	s.v4(mux, "GET", "clustermgmt", "stats/clusters/{extId}", "clustermgmt.v4.stats.GetClusterStatsApiResponse", s.v4ClusterStats)
	s.v4(mux, "GET", "clustermgmt", "stats/storage-containers/{extId}", "clustermgmt.v4.stats.GetStorageContainerStatsApiResponse", s.v4ContainerStats)
	s.v4(mux, "GET", "networking", "config/subnets", "networking.v4.config.ListSubnetsApiResponse", s.v4ListSubnets)
	s.routesExternal(mux)
	s.routesTransfer(mux)
	mux.HandleFunc("OPTIONS /api/{ns}/unversioned/info", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, obj{"data": s.opts.V4Revisions[len(s.opts.V4Revisions)-1]})
	})
}

func ipv4(v string) obj {
	return obj{"$objectType": "common.v1.config.IPAddress", "ipv4": obj{"$objectType": "common.v1.config.IPv4Address", "value": v, "prefixLength": 32}}
}
