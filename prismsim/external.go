package prismsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// External repositories (multidomain v4.2+, API notes §9a): NFS exports
// registered with Prism Central, which VM disks may be backed by
// (external.go: the API; hydrate.go: the disks).

type externalRepo struct {
	UUID       string    `json:"uuid"`
	Name       string    `json:"name"`
	ExportName string    `json:"export_name"`
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	Version    int64     `json:"version"`
	Created    time.Time `json:"created"`
}

func (x *externalRepo) address() string { return fmt.Sprintf("%s:%d", x.Host, x.Port) }

// minInstantRevision is the first revision serving multidomain and
// external-data-source disks.
const minInstantRevision = "v4.2"

// revisionAtLeast compares "v4.N" revisions.
func revisionAtLeast(rev, min string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(rev, "v%d.%d", &a1, &a2)
	fmt.Sscanf(min, "v%d.%d", &b1, &b2)
	return a1 > b1 || a1 == b1 && a2 >= b2
}

// instantServed refuses (404, as a cluster without the namespace does) a
// request for a revision before v4.2.
func instantServed(w http.ResponseWriter, r *http.Request) bool {
	if rev := r.PathValue("rev"); !revisionAtLeast(rev, minInstantRevision) {
		v4Error(w, r, http.StatusNotFound, "API revision "+rev+" does not serve external repositories (from "+minInstantRevision+")")
		return false
	}
	return true
}

func (s *Sim) routesExternal(mux *http.ServeMux) {
	const base = "config/external-repositories"
	s.v4(mux, "GET", "multidomain", base, "multidomain.v4.config.ListExternalRepositoriesApiResponse", s.v4ListExternalRepos)
	s.v4(mux, "POST", "multidomain", base, "multidomain.v4.config.CreateExternalRepositoryApiResponse", s.v4CreateExternalRepo)
	s.v4(mux, "GET", "multidomain", base+"/{extId}", "multidomain.v4.config.GetExternalRepositoryApiResponse", s.v4GetExternalRepo)
	s.v4(mux, "DELETE", "multidomain", base+"/{extId}", "multidomain.v4.config.DeleteExternalRepositoryApiResponse", s.v4DeleteExternalRepo)
}

func externalRepoETag(x *externalRepo) string { return etagOf(x.UUID, x.Version) }

func (s *Sim) v4ExternalRepo(x *externalRepo) obj {
	addr := obj{"$objectType": "common.v1.config.IPAddressOrFQDN", "fqdn": obj{"$objectType": "common.v1.config.FQDN", "value": x.Host}}
	if ip := ipv4(x.Host); isIPv4(x.Host) {
		addr = ip
	}
	return obj{"$objectType": "multidomain.v4.config.ExternalRepository", "$reserved": reserved(), "extId": x.UUID, "name": x.Name,
		"location": obj{"$objectType": "multidomain.v4.config.NfsRepository", "exportName": x.ExportName,
			"addresses": []obj{{"$objectType": "multidomain.v4.config.NFSServerAddress", "address": addr, "port": x.Port}}}}
}

func isIPv4(h string) bool {
	parts := strings.Split(h, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 0 || n > 255 || fmt.Sprint(n) != p {
			return false
		}
	}
	return true
}

func (s *Sim) v4ListExternalRepos(w http.ResponseWriter, r *http.Request) {
	if !instantServed(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	xs := sortedByCreation(s.m.ExternalRepos, func(x *externalRepo) time.Time { return x.Created })
	v4List(s, w, r, xs, func(x *externalRepo, k string) string {
		if k == "name" {
			return x.Name
		}
		return ""
	}, s.v4ExternalRepo)
}

func (s *Sim) v4GetExternalRepo(w http.ResponseWriter, r *http.Request) {
	if !instantServed(w, r) {
		return
	}
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.ExternalRepos), func(x *externalRepo) {
		v4Get(w, r, externalRepoETag(x), s.v4ExternalRepo(x))
	})
}

type v4ExternalRepoIn struct {
	Name     string `json:"name"`
	Location *struct {
		ObjectType string `json:"$objectType"`
		ExportName string `json:"exportName"`
		Addresses  []struct {
			Address struct {
				IPv4 *struct {
					Value string `json:"value"`
				} `json:"ipv4"`
				FQDN *struct {
					Value string `json:"value"`
				} `json:"fqdn"`
			} `json:"address"`
			Port int `json:"port"`
		} `json:"addresses"`
	} `json:"location"`
}

func (s *Sim) v4CreateExternalRepo(w http.ResponseWriter, r *http.Request) {
	if !instantServed(w, r) {
		return
	}
	var in v4ExternalRepoIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	x := &externalRepo{UUID: simkit.NewUUID(), Name: in.Name, Port: 2049, Created: time.Now()}
	switch {
	case strings.TrimSpace(in.Name) == "":
		v4Error(w, r, http.StatusBadRequest, "name is required")
		return
	case in.Location == nil || !strings.HasSuffix(in.Location.ObjectType, "NfsRepository"):
		v4Error(w, r, http.StatusBadRequest, "location must be a multidomain.v4.config.NfsRepository")
		return
	case !strings.HasPrefix(in.Location.ExportName, "/"):
		v4Error(w, r, http.StatusBadRequest, "location.exportName must be an absolute path")
		return
	case len(in.Location.Addresses) != 1:
		v4Error(w, r, http.StatusBadRequest, "location.addresses must hold one NFS server address")
		return
	}
	a := in.Location.Addresses[0]
	switch {
	case a.Address.IPv4 != nil && isIPv4(a.Address.IPv4.Value):
		x.Host = a.Address.IPv4.Value
	case a.Address.FQDN != nil && a.Address.FQDN.Value != "":
		x.Host = a.Address.FQDN.Value
	default:
		v4Error(w, r, http.StatusBadRequest, "location.addresses[0].address needs an ipv4 or fqdn value")
		return
	}
	if a.Port != 0 {
		x.Port = a.Port
	}
	x.ExportName = in.Location.ExportName
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.m.ExternalRepos {
		if o.Name == x.Name {
			v4Error(w, r, http.StatusConflict, "an external repository named "+x.Name+" exists")
			return
		}
	}
	fail := s.taskFailure("CreateExternalRepository")
	if fail == "" {
		s.m.ExternalRepos[x.UUID] = x
		s.save()
	}
	t := s.startTask("CreateExternalRepository", "", []taskEntity{{Kind: "external_repository", UUID: x.UUID, Name: x.Name}}, fail, nil)
	s.accepted(w, r, "multidomain.v4.config.CreateExternalRepositoryApiResponse", t)
}

// v4DeleteExternalRepo refuses (409) while a VM disk still reads from the
// repository: it must hydrate, or the VM go, first (infer).
func (s *Sim) v4DeleteExternalRepo(w http.ResponseWriter, r *http.Request) {
	if !instantServed(w, r) {
		return
	}
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.ExternalRepos), func(x *externalRepo) {
		if !checkIfMatch(w, r, externalRepoETag(x)) {
			return
		}
		for _, v := range s.m.VMs {
			for _, d := range v.Disks {
				if d.External != nil && d.External.Repo == x.UUID {
					v4Error(w, r, http.StatusConflict, fmt.Sprintf("external repository %s backs disk %s of VM %s, which is not hydrated", x.Name, d.UUID, v.Name))
					return
				}
			}
		}
		t := s.startTask("DeleteExternalRepository", "", []taskEntity{{Kind: "external_repository", UUID: x.UUID, Name: x.Name}},
			s.taskFailure("DeleteExternalRepository"), func() { delete(s.m.ExternalRepos, x.UUID) })
		s.accepted(w, r, "multidomain.v4.config.DeleteExternalRepositoryApiResponse", t)
	})
}
