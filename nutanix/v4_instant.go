package nutanix

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Instant recovery (v4.2+, §9a of the API notes): an NFS export registered
// as an external repository (multidomain), VM disks backed by files on it
// with background hydration (vmm; DiskSpec.External, Disk.Hydration).

// ExternalRepository is an NFS export registered with the cluster.
type ExternalRepository struct {
	ID         string // extId ("" in a spec)
	Name       string
	ExportName string // "/" or "/vm01"
	Host       string // IPv4 address or FQDN
	Port       int    // NFS port (default 2049)
}

// Address is host:port.
func (r ExternalRepository) Address() string {
	return net.JoinHostPort(r.Host, strconv.Itoa(r.Port))
}

// InstantRecovery is the part of the API that serves VMs from external
// repositories. *Client implements it; each method answers ErrUnsupported
// when the endpoint lacks the v4.2 multidomain or vmm API.
type InstantRecovery interface {
	// CreateExternalRepository registers spec and waits for the task.
	CreateExternalRepository(ctx context.Context, spec ExternalRepository) (ExternalRepository, error)
	// ListExternalRepositories lists the repositories named name (""
	// all).
	ListExternalRepositories(ctx context.Context, name string) ([]ExternalRepository, error)
	// DeleteExternalRepository removes a repository; one already gone is
	// not an error.
	DeleteExternalRepository(ctx context.Context, id string) error
}

var _ InstantRecovery = (*Client)(nil)

// minInstantRevision is the first revision of the calls instant recovery
// makes, in multidomain and vmm alike.
const minInstantRevision = "v4.2"

// instant returns the v4 backend when it serves instant recovery.
func (c *Client) instant(ctx context.Context) (*v4Backend, error) {
	return c.v4With(ctx, "instant recovery", [][2]string{{"multidomain", minInstantRevision}, {"vmm", minInstantRevision}})
}

// v4With returns the v4 backend when it serves each namespace at its
// revision or later (need: namespace, revision), else ErrUnsupported
// saying what feature lacks what.
func (c *Client) v4With(ctx context.Context, feature string, need [][2]string) (*v4Backend, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	var want []string
	for _, n := range need {
		want = append(want, n[0]+" "+n[1])
	}
	v4, ok := b.(*v4Backend)
	if !ok {
		return nil, fmt.Errorf("%s needs the Prism v4 APIs (%s); this endpoint is served through %s: %w", feature, strings.Join(want, ", "), b.API(), ErrUnsupported)
	}
	for _, n := range need {
		if rev := v4.rev[n[0]]; rev == "" || revisionLess(rev, n[1]) {
			have := rev
			if have == "" {
				have = "not served"
			}
			return nil, fmt.Errorf("%s needs %s %s or later (here: %s): %w", feature, n[0], n[1], have, ErrUnsupported)
		}
	}
	return v4, nil
}

// revisionLess compares "v4.N" revisions.
func revisionLess(a, b string) bool {
	minor := func(r string) int {
		var maj, min int
		fmt.Sscanf(r, "v%d.%d", &maj, &min)
		return maj*1000 + min
	}
	return minor(a) < minor(b)
}

type v4ExternalRepository struct {
	ExtID    string `json:"extId,omitempty"`
	Name     string `json:"name"`
	Location struct {
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

func (r v4ExternalRepository) neutral() ExternalRepository {
	out := ExternalRepository{ID: r.ExtID, Name: r.Name, ExportName: r.Location.ExportName, Port: 2049}
	if len(r.Location.Addresses) > 0 {
		a := r.Location.Addresses[0]
		switch {
		case a.Address.IPv4 != nil:
			out.Host = a.Address.IPv4.Value
		case a.Address.FQDN != nil:
			out.Host = a.Address.FQDN.Value
		}
		if a.Port != 0 {
			out.Port = a.Port
		}
	}
	return out
}

func externalRepositoryBody(spec ExternalRepository) map[string]any {
	addr := map[string]any{"fqdn": map[string]any{"value": spec.Host}}
	if ip, err := netip.ParseAddr(spec.Host); err == nil && ip.Is4() {
		addr = map[string]any{"ipv4": map[string]any{"value": spec.Host, "prefixLength": 32}}
	}
	port := spec.Port
	if port == 0 {
		port = 2049
	}
	return map[string]any{
		"$objectType": "multidomain.v4.config.ExternalRepository",
		"name":        spec.Name,
		"location": map[string]any{
			"$objectType": "multidomain.v4.config.NfsRepository",
			"exportName":  spec.ExportName,
			"addresses": []any{map[string]any{"$objectType": "multidomain.v4.config.NFSServerAddress",
				"address": addr, "port": port}},
		},
	}
}

func (c *Client) CreateExternalRepository(ctx context.Context, spec ExternalRepository) (ExternalRepository, error) {
	op := "create external repository " + spec.Name
	b, err := c.instant(ctx)
	if err != nil {
		return ExternalRepository{}, fmt.Errorf("%s: %w", op, err)
	}
	if spec.Name == "" || spec.Host == "" || spec.ExportName == "" {
		return ExternalRepository{}, fmt.Errorf("%s: name, host and export are required", op)
	}
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("multidomain", "/config/external-repositories"),
		in: externalRepositoryBody(spec)})
	if err != nil {
		return ExternalRepository{}, err
	}
	id := t.entity("externalrepository", "external_repository", "external-repository")
	if id == "" {
		// The task may not name it: find it by its (unique) name.
		got, err := b.listExternalRepositories(ctx, spec.Name)
		if err != nil {
			return ExternalRepository{}, fmt.Errorf("%s: %w", op, err)
		}
		if len(got) != 1 {
			return ExternalRepository{}, fmt.Errorf("%s: task %s names no repository and %d have that name", op, t.ID, len(got))
		}
		return got[0], nil
	}
	spec.ID = id
	if spec.Port == 0 {
		spec.Port = 2049
	}
	return spec, nil
}

func (c *Client) ListExternalRepositories(ctx context.Context, name string) ([]ExternalRepository, error) {
	b, err := c.instant(ctx)
	if err != nil {
		return nil, fmt.Errorf("list external repositories: %w", err)
	}
	return b.listExternalRepositories(ctx, name)
}

func (b *v4Backend) listExternalRepositories(ctx context.Context, name string) ([]ExternalRepository, error) {
	q := v4NameFilter(name)
	var out []ExternalRepository
	err := v4ListAll(ctx, b, b.p("multidomain", "/config/external-repositories"), q, func(r v4ExternalRepository) error {
		if name == "" || r.Name == name {
			out = append(out, r.neutral())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list external repositories: %w", err)
	}
	return out, nil
}

func (c *Client) DeleteExternalRepository(ctx context.Context, id string) error {
	op := "delete external repository " + id
	b, err := c.instant(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return ignoreAbsent(b.deleteWithETag(ctx, b.p("multidomain", "/config/external-repositories/"+url.PathEscape(id)), op))
}
