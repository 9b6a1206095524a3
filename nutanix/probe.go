package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

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
}

// v4Revisions are tried highest first; the highest that answers is used
// (pc.7.3 serves v4.0/v4.1 and 404s v4.2 [N2K]).
var v4Revisions = []string{"v4.4", "v4.3", "v4.2", "v4.1", "v4.0"}

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

func (c *Client) probeV4(ctx context.Context, rep *ProbeReport) (*v4Backend, error) {
	revs := map[string]string{}
	var missing []string
	for _, ns := range v4Namespaces {
		var lastErr error
		for _, rev := range v4Revisions {
			p := "/api/" + ns.name + "/" + rev + ns.probe
			resp, err := c.rest.do(ctx, request{method: http.MethodGet, path: p, query: url.Values{"$limit": {"1"}}, out: new(map[string]any)})
			if err == nil {
				c.noteHeaders(rep, resp.Header)
				revs[ns.name] = rev
				break
			}
			if fatalProbeErr(ctx, err) {
				return nil, err
			}
			lastErr = err
			if !errors.Is(err, ErrNotFound) {
				break // the namespace exists but refuses: do not try older revisions
			}
		}
		rep.V4[ns.name] = revs[ns.name]
		if revs[ns.name] == "" && ns.required {
			why := "not served"
			if lastErr != nil && !errors.Is(lastErr, ErrNotFound) {
				why = lastErr.Error()
			}
			missing = append(missing, ns.name+": "+why)
			if ns.name == "vmm" && errors.Is(lastErr, ErrNotFound) {
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
	// v3 is still used for image upload and, without networking, subnets.
	if _, err := c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/clusters/list",
		in: v3ListRequest{Kind: "cluster", Length: 1}, out: new(map[string]any), idempotent: true}); err == nil {
		rep.V3 = true
		b.v3 = &v3Backend{r: c.rest, o: c.opts}
	} else if fatalProbeErr(ctx, err) {
		return nil, err
	} else {
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
	for _, base := range v2Bases {
		_, err := c.rest.do(ctx, request{method: http.MethodGet, path: base + "/cluster/", out: new(map[string]any)})
		if err == nil {
			b.v2base, rep.V2 = base, true
			break
		}
		if fatalProbeErr(ctx, err) {
			return nil, err
		}
	}
	if !rep.V2 {
		rep.Notes = append(rep.Notes, "v2.0 not served: no volume groups (iSCSI data path)")
	}
	// vm_snapshots/list answers on PE; data/changed_regions with an empty
	// body answers 4xx-but-not-404 when present (§8.1).
	_, err = c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/vm_snapshots/list",
		in: v3ListRequest{Kind: "vm_snapshot", Length: 1}, out: new(map[string]any), idempotent: true})
	if fatalProbeErr(ctx, err) {
		return nil, err
	}
	snaps := err == nil
	_, err = c.rest.do(ctx, request{method: http.MethodPost, path: v3Base + "/data/changed_regions", in: map[string]any{}, idempotent: true})
	if fatalProbeErr(ctx, err) {
		return nil, err
	}
	var ae *APIError
	cr := err == nil || (errors.As(err, &ae) && ae.Status != http.StatusNotFound && ae.Status < 500)
	b.cbt = snaps && cr
	rep.V3CBT = b.cbt
	return b, nil
}
