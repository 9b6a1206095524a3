package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Probing asks each namespace a cheap question. A 2xx answer means it is
// served; a definitive refusal (404, or another 4xx) means it is not
// served here, and the client may choose another API or mode. Anything
// else (a 5xx or 429 the transport's retries did not get past, a timeout,
// a reset connection) is no answer: Probe then fails instead of choosing
// less than the cluster offers, because a lesser choice is not harmless
// (falling back to v3 moves a VM's chain to another API and forces a full;
// a v3 backend without CBT snapshots through v2.0).

// v4Namespaces are probed in this order; required ones must all answer
// for v4 to be selected. networking is optional (subnets fall back to v3).
var v4Namespaces = []struct {
	name     string
	probe    string // a cheap list under /api/<ns>/<rev>
	required bool
}{
	{"vmm", "/ahv/config/vms", true},
	{"dataprotection", "/config/recovery-points", true},
	{"volumes", "/config/volume-groups", true},
	// prism: the task list is optional on some servers (the simulator);
	// when it does not answer, tasks are polled at the vmm revision.
	{"prism", "/config/tasks", false},
	{"clustermgmt", "/config/clusters", true},
	{"networking", "/config/subnets", false},
	// multidomain: external repositories (instant recovery, v4.2+).
	{"multidomain", "/config/external-repositories", false},
}

// v4Revisions are tried highest first; the highest that answers is used
// (pc.7.3 serves v4.0/v4.1 and 404s v4.2 [N2K]).
var v4Revisions = []string{"v4.4", "v4.3", "v4.2", "v4.1", "v4.0"}

// ProbeReport says what the cluster offers and what the client picked.
type ProbeReport struct {
	Requested APIVersion
	Selected  APIVersion
	Reason    string
	Product   string // X-Ntnx-Product, e.g. "pc.2024.3.0.1", when sent
	Env       string // X-Ntnx-Env: "pc" or "pe", when sent
	// V4 maps each v4 namespace probed to the revision that answered (""
	// none).
	V4 map[string]string
	V3 bool // /api/nutanix/v3 answered
	V2 bool // v2.0 cluster endpoint answered
	// V3Snapshots: v3 vm_snapshots are served (Prism Element).
	V3Snapshots bool
	// V3CBT: vm_snapshots and data/changed_regions are served (Prism
	// Element); without them v3 cannot take CBT snapshots.
	V3CBT bool
	Notes []string
}

func (r ProbeReport) String() string {
	return fmt.Sprintf("API %s (%s)", r.Selected, r.Reason)
}

// Probe asks the cluster which APIs it serves and selects the backend:
// for auto, v4 when vmm, dataprotection, volumes and clustermgmt all
// answer, else v3/v2. It also learns which snapshot namespaces the
// endpoint serves (v4 recovery points, v3 vm_snapshots, v2.0 snapshots),
// so that a snapshot is found whichever API made it. A refused password
// (ErrUnauthorized), an untrusted certificate (ErrTLSVerify) or a
// namespace that gives no answer (see above) fails the probe.
func (c *Client) Probe(ctx context.Context) (ProbeReport, error) {
	rep := ProbeReport{Requested: c.opts.API, V4: map[string]string{}}
	var v4err error
	if c.opts.API != APIV3 {
		v4, err := c.probeV4(ctx, &rep)
		switch {
		case err == nil:
			rep.Selected = APIV4
			rep.Reason = "v4 namespaces answer: " + describeV4(rep.V4)
			if c.opts.API == APIAuto {
				rep.Reason = "auto: " + rep.Reason
			}
			c.setBackend(v4, rep)
			return rep, nil
		case !errors.Is(err, ErrUnsupported):
			return rep, fmt.Errorf("probe the Prism APIs: %w", err)
		case c.opts.API == APIV4:
			return rep, fmt.Errorf("v4 API requested but not usable: %w", err)
		}
		v4err = err
	}
	v3, err := c.probeV3(ctx, &rep)
	if err != nil {
		if v4err != nil {
			return rep, fmt.Errorf("no usable Prism API: v4: %v; v3: %w", v4err, err)
		}
		return rep, err
	}
	rep.Selected = APIV3
	switch {
	case c.opts.API == APIV3:
		rep.Reason = "v3 requested"
	default:
		rep.Reason = fmt.Sprintf("auto: v4 not usable (%v), using v3/v2", v4err)
	}
	if !rep.V3CBT {
		rep.Notes = append(rep.Notes, "vm_snapshots/changed_regions not served here (Prism Central?): point --prism at a Prism Element for CBT backups")
	}
	c.setBackend(v3, rep)
	return rep, nil
}

func describeV4(m map[string]string) string {
	var parts []string
	for _, ns := range v4Namespaces {
		if r := m[ns.name]; r != "" {
			parts = append(parts, ns.name+" "+r)
		}
	}
	return strings.Join(parts, ", ")
}

func (c *Client) noteHeaders(rep *ProbeReport, h http.Header) {
	if h == nil {
		return
	}
	if v := h.Get("X-Ntnx-Product"); v != "" && rep.Product == "" {
		rep.Product = v
	}
	if v := h.Get("X-Ntnx-Env"); v != "" && rep.Env == "" {
		rep.Env = v
	}
}

// fatalProbeErr: errors that make further probing pointless.
func fatalProbeErr(ctx context.Context, err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrTLSVerify) || ctx.Err() != nil ||
		(err != nil && strings.Contains(err.Error(), "cannot connect"))
}

// noAnswer reports a probe error that says nothing about whether the
// namespace is served: anything but a 4xx other than 429.
func noAnswer(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusRequestTimeout
	}
	return err != nil
}

// probeV4Namespace finds the highest revision of a v4 namespace that
// answers: rev "" and refused (the last refusal) when none does; err when
// a request gave no answer or probing is pointless.
func (c *Client) probeV4Namespace(ctx context.Context, rep *ProbeReport, ns, probe string) (rev string, refused, err error) {
	for _, r := range v4Revisions {
		p := "/api/" + ns + "/" + r + probe
		resp, err := c.rest.do(ctx, request{method: http.MethodGet, path: p, query: url.Values{"$limit": {"1"}}, out: new(map[string]any)})
		if err == nil {
			c.noteHeaders(rep, resp.Header)
			return r, nil, nil
		}
		if fatalProbeErr(ctx, err) || noAnswer(err) {
			return "", nil, fmt.Errorf("probe v4 %s (%s): %w", ns, r, err)
		}
		refused = err
		if !errors.Is(err, ErrNotFound) {
			break // the namespace exists but refuses: do not try older revisions
		}
	}
	return "", refused, nil
}

func (c *Client) probeV4(ctx context.Context, rep *ProbeReport) (*v4Backend, error) {
	revs := map[string]string{}
	var missing []string
	for _, ns := range v4Namespaces {
		rev, refused, err := c.probeV4Namespace(ctx, rep, ns.name, ns.probe)
		if err != nil && !ns.required && !fatalProbeErr(ctx, err) {
			// An optional namespace that gives no answer is taken as
			// not served: the jobs that need it say so when they run.
			rep.Notes = append(rep.Notes, fmt.Sprintf("v4 %s gave no answer, taken as not served: %v", ns.name, err))
			rev, refused, err = "", nil, nil
		}
		if err != nil {
			return nil, err
		}
		revs[ns.name], rep.V4[ns.name] = rev, rev
		if rev == "" && ns.required {
			why := "not served"
			if refused != nil && !errors.Is(refused, ErrNotFound) {
				why = refused.Error()
			}
			missing = append(missing, ns.name+": "+why)
			if ns.name == "vmm" && errors.Is(refused, ErrNotFound) {
				// no v4 at all: skip the other namespaces
				return nil, fmt.Errorf("%s: %w", strings.Join(missing, "; "), ErrUnsupported)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %w", strings.Join(missing, "; "), ErrUnsupported)
	}
	if revs["prism"] == "" {
		revs["prism"] = revs["vmm"]
		rep.Notes = append(rep.Notes, "prism task list not served; polling tasks at "+revs["vmm"])
	}
	b := &v4Backend{r: c.rest, o: c.opts, rev: revs}
	// v3 is still used for image upload, subnets without networking, and
	// snapshots made here through v3 or v2.0.
	_, err := c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/clusters/list",
		in: v3ListRequest{Kind: "cluster", Length: 1}, out: new(map[string]any), idempotent: true})
	switch {
	case err == nil:
		rep.V3 = true
		b.v3 = &v3Backend{r: c.rest, o: c.opts}
		if err := c.probeV3Snapshots(ctx, rep, b.v3); err != nil {
			return nil, err
		}
	case fatalProbeErr(ctx, err) || noAnswer(err):
		return nil, fmt.Errorf("probe v3: %w", err)
	default:
		rep.Notes = append(rep.Notes, "v3 not served: image upload unavailable")
	}
	return b, nil
}

func (c *Client) probeV3(ctx context.Context, rep *ProbeReport) (*v3Backend, error) {
	resp, err := c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/clusters/list",
		in: v3ListRequest{Kind: "cluster", Length: 1}, out: new(map[string]any), idempotent: true})
	if err != nil {
		return nil, fmt.Errorf("v3 API: %w", err)
	}
	c.noteHeaders(rep, resp.Header)
	rep.V3 = true
	b := &v3Backend{r: c.rest, o: c.opts}
	if err := c.probeV3Snapshots(ctx, rep, b); err != nil {
		return nil, err
	}
	if !rep.V2 {
		rep.Notes = append(rep.Notes, "v2.0 not served: no volume groups (iSCSI data path)")
	}
	// data/changed_regions with an empty body answers 4xx-but-not-404
	// when present (§8.1).
	_, err = c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/data/changed_regions", in: map[string]any{}, idempotent: true})
	var ae *APIError
	changedRegions := true
	switch {
	case err == nil:
	case fatalProbeErr(ctx, err) || noAnswer(err):
		return nil, fmt.Errorf("probe v3 data/changed_regions: %w", err)
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		changedRegions = false
	}
	b.cbt = b.vmSnaps && changedRegions
	rep.V3CBT = b.cbt
	if err := c.probeRecoveryPoints(ctx, rep, b); err != nil {
		return nil, err
	}
	return b, nil
}

// probeV3Snapshots learns whether the endpoint serves v2.0 (volume
// groups, snapshots) and v3 vm_snapshots.
func (c *Client) probeV3Snapshots(ctx context.Context, rep *ProbeReport, b *v3Backend) error {
	for _, base := range v2Bases {
		_, err := c.rest.do(ctx, request{method: http.MethodGet, path: base + "/cluster/", out: new(map[string]any)})
		if err == nil {
			b.v2base, rep.V2 = base, true
			break
		}
		if fatalProbeErr(ctx, err) || noAnswer(err) {
			return fmt.Errorf("probe v2.0 (%s): %w", base, err)
		}
	}
	_, err := c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/vm_snapshots/list",
		in: v3ListRequest{Kind: "vm_snapshot", Length: 1}, out: new(map[string]any), idempotent: true})
	if fatalProbeErr(ctx, err) || noAnswer(err) {
		return fmt.Errorf("probe v3 vm_snapshots: %w", err)
	}
	b.vmSnaps = err == nil
	rep.V3Snapshots = b.vmSnaps
	return nil
}

// probeRecoveryPoints learns whether the endpoint also serves v4 recovery
// points, so that the v3 backend finds (and deletes) a snapshot made here
// through v4. When the question gets no answer, snapshots it cannot find
// elsewhere are reported as unknown rather than gone.
func (c *Client) probeRecoveryPoints(ctx context.Context, rep *ProbeReport, b *v3Backend) error {
	rev, probed := rep.V4["dataprotection"]
	if !probed {
		var err error
		rev, _, err = c.probeV4Namespace(ctx, rep, "dataprotection", "/config/recovery-points")
		if err != nil {
			if fatalProbeErr(ctx, err) {
				return err
			}
			b.rpUnknown = err.Error()
			return nil
		}
		rep.V4["dataprotection"] = rev
	}
	if rev != "" {
		b.rp = &v4Backend{r: c.rest, o: c.opts, rev: map[string]string{"dataprotection": rev,
			"prism": firstNonEmpty(rep.V4["prism"], rev), "vmm": firstNonEmpty(rep.V4["vmm"], rev)}}
	}
	return nil
}
