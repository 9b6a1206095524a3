package daemon

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// ConfigSummary is what `ahvfs config check` prints of a valid
// configuration: what the daemon will do.
type ConfigSummary struct {
	Repository string          `json:"repository"`
	Clusters   []string        `json:"clusters"`
	Targets    []string        `json:"targets,omitempty"`
	Policies   []PolicySummary `json:"policies"`
	Verify     string          `json:"verify,omitempty"`
}

// PolicySummary describes one policy.
type PolicySummary struct {
	Name       string   `json:"name"`
	Cluster    string   `json:"cluster"`
	VMs        []string `json:"vms,omitempty"`
	Categories []string `json:"categories,omitempty"`
	Exclude    []string `json:"exclude,omitempty"`
	Schedule   string   `json:"schedule"`
	RPOSeconds float64  `json:"rpo_seconds"`
	Retention  string   `json:"retention,omitempty"`
	SyncTo     string   `json:"sync_to,omitempty"`
	Sync       string   `json:"sync,omitempty"`
}

// Summary describes a checked configuration.
func Summary(c *Config) ConfigSummary {
	s := ConfigSummary{Repository: c.Repository}
	for _, cl := range c.Cluster {
		s.Clusters = append(s.Clusters, fmt.Sprintf("%s (%s, %d job(s) at once)", cl.Name, cmp.Or(cl.Prism, cl.XAPI), cl.Concurrency))
	}
	for _, t := range c.Target {
		s.Targets = append(s.Targets, fmt.Sprintf("%s (%s)", t.Name, t.Location))
	}
	for _, p := range c.Policy {
		ps := PolicySummary{Name: p.Name, Cluster: p.Cluster, VMs: p.VMs, Categories: p.Categories, Exclude: p.Exclude,
			Schedule: p.Schedule.String(), RPOSeconds: p.RPO.Seconds(), SyncTo: p.SyncTo}
		if !p.Retention.Empty() {
			ps.Retention = p.Retention.String()
		}
		switch {
		case p.SyncTo == "":
		case p.SyncSchedule != nil:
			ps.Sync = p.SyncSchedule.String()
		default:
			ps.Sync = "after each backup"
		}
		s.Policies = append(s.Policies, ps)
	}
	if n := c.Verify.EveryDays; n > 0 {
		at := c.Verify.At
		if at == "" {
			at = "00:00"
		}
		s.Verify = fmt.Sprintf("1/%d of the packs read each day at %s UTC", n, at)
	}
	return s
}

// Lines is the summary for people.
func (s ConfigSummary) Lines() []string {
	out := []string{"configuration OK", "repository: " + s.Repository, "clusters: " + strings.Join(s.Clusters, ", ")}
	if len(s.Targets) > 0 {
		out = append(out, "targets: "+strings.Join(s.Targets, ", "))
	}
	for _, p := range s.Policies {
		sel := strings.Join(append(append([]string{}, p.VMs...), p.Categories...), ", ")
		if len(p.Exclude) > 0 {
			sel += " except " + strings.Join(p.Exclude, ", ")
		}
		line := fmt.Sprintf("policy %s on %s: %s; %s (RPO %s)", p.Name, p.Cluster, sel, p.Schedule, fmtSeconds(p.RPOSeconds))
		if p.Retention != "" {
			line += "; keep " + p.Retention
		}
		if p.SyncTo != "" {
			line += fmt.Sprintf("; sync to %s %s", p.SyncTo, p.Sync)
		}
		out = append(out, line)
	}
	if s.Verify != "" {
		out = append(out, "verify: "+s.Verify)
	}
	return out
}

// fmtSeconds prints 14400 as 4h, 5400 as 1h30m.
func fmtSeconds(s float64) string {
	d := time.Duration(s) * time.Second
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}
