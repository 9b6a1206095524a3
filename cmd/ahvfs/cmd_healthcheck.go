package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "health-check",
			Usage: "check TLS, credentials, API versions, clusters, Data Services IP and iSCSI port, permissions; exit 0 when ready",
			Flags: append(clusterFlags(),
				&cli.IntFlag{Name: "iscsi-port", Value: 3260, Usage: "iSCSI port on the Data Services IP (3260 on real clusters)"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "timeout of the iSCSI portal TCP check"},
			),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				o, err := clusterOptions(c, env)
				if err != nil {
					return err
				}
				return runHealthCheck(c.Context, env, healthOptions{Cluster: o, ISCSIPort: c.Int("iscsi-port"), DialTimeout: c.Duration("timeout")})
			},
		}
	})
}

type healthOptions struct {
	Cluster     nutanix.Options
	ISCSIPort   int           // default 3260
	DialTimeout time.Duration // default 5s
}

// checkStatus of one line of the checklist.
type checkStatus string

const (
	checkOK   checkStatus = "ok"
	checkFail checkStatus = "fail"
	checkWarn checkStatus = "warn"
)

type healthCheck struct {
	Name   string      `json:"name"`
	Status checkStatus `json:"status"`
	Detail string      `json:"detail"`
}

type healthReport struct {
	Ready    bool          `json:"ready"`
	Endpoint string        `json:"endpoint"`
	API      string        `json:"api,omitempty"`
	Checks   []healthCheck `json:"checks"`

	// reach is the error that kept the cluster out of reach (TLS,
	// credentials, connection): the exit code's class.
	reach error
}

func (r *healthReport) add(name string, st checkStatus, format string, args ...any) {
	r.Checks = append(r.Checks, healthCheck{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

// runHealthCheck runs the checks in order, stopping at the first one that
// makes the rest meaningless, prints the checklist (or JSON) and fails
// unless every check passed.
func runHealthCheck(ctx context.Context, env *cliEnv, o healthOptions) error {
	if o.ISCSIPort == 0 {
		o.ISCSIPort = 3260
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	rep := &healthReport{}
	healthChecks(ctx, o, rep)
	rep.Ready = true
	var failed []string
	for _, c := range rep.Checks {
		if c.Status == checkFail {
			rep.Ready = false
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if env.JSON {
		if err := writeJSON(env.Stdout, rep); err != nil {
			return err
		}
	} else {
		for _, c := range rep.Checks {
			mark := map[checkStatus]string{checkOK: "✓", checkFail: "✗", checkWarn: "!"}[c.Status]
			fmt.Fprintf(env.Stdout, "%s %-12s %s\n", mark, c.Name, c.Detail)
		}
		if rep.Ready {
			fmt.Fprintln(env.Stdout, "ready")
		}
	}
	if !rep.Ready {
		err := fmt.Errorf("not ready: %s", strings.Join(failed, "; "))
		if rep.reach != nil {
			// The cluster is out of reach: the exit code says so (6).
			err = reachError{msg: err.Error(), err: rep.reach}
		}
		return err
	}
	return nil
}

func healthChecks(ctx context.Context, o healthOptions, rep *healthReport) {
	c, err := nutanix.New(o.Cluster)
	if err != nil {
		rep.add("options", checkFail, "%v", err)
		return
	}
	defer c.Close()
	rep.Endpoint = c.Endpoint()

	// TLS
	info, err := c.CheckTLS(ctx)
	switch {
	case errors.Is(err, nutanix.ErrTLSVerify):
		rep.add("tls", checkFail, "%v", err)
		rep.reach = err
		return
	case err != nil:
		rep.add("tls", checkFail, "cannot reach %s: %v", rep.Endpoint, err)
		rep.reach = err
		return
	case !info.Verified:
		rep.add("tls", checkWarn, "certificate NOT verified (--insecure): %s", info.Subject)
	default:
		rep.add("tls", checkOK, "certificate of %s trusted (%s, expires %s)", rep.Endpoint, info.Subject, info.NotAfter.Format("2006-01-02"))
		if time.Until(info.NotAfter) < 14*24*time.Hour {
			rep.add("tls-expiry", checkWarn, "certificate expires %s", info.NotAfter.Format(time.RFC3339))
		}
	}

	// credentials and API versions
	pr, err := c.Probe(ctx)
	switch {
	case errors.Is(err, nutanix.ErrUnauthorized):
		rep.add("credentials", checkFail, "Prism refused user %q: %v", firstNonEmptyStr(o.Cluster.User, "admin"), err)
		rep.reach = err
		return
	case err != nil:
		rep.add("api", checkFail, "%v", err)
		return
	}
	rep.add("credentials", checkOK, "user %q accepted", firstNonEmptyStr(o.Cluster.User, "admin"))
	rep.API = string(pr.Selected)
	detail := pr.Reason
	if pr.Product != "" {
		detail += "; " + pr.Product
	}
	rep.add("api", checkOK, "%s", detail)
	for _, n := range pr.Notes {
		rep.add("api", checkWarn, "%s", n)
	}
	if pr.Selected == nutanix.APIV3 && !pr.V3CBT {
		rep.add("cbt", checkWarn, "changed-region tracking (vm_snapshots, data/changed_regions) is not served: backups read whole disks")
	}
	if pr.Selected == nutanix.APIV3 && !pr.V2 {
		rep.add("iscsi-api", checkFail, "the v2.0 API (volume groups) is not served: no iSCSI data path")
	}

	// clusters, Data Services IP, iSCSI portal
	cls, err := c.ListClusters(ctx)
	if err != nil {
		rep.add("clusters", checkFail, "%v", err)
		return
	}
	if len(cls) == 0 {
		rep.add("clusters", checkFail, "no Prism Element cluster registered")
		return
	}
	var names []string
	for _, cl := range cls {
		names = append(names, cl.Name)
	}
	rep.add("clusters", checkOK, "%d: %s", len(cls), strings.Join(names, ", "))
	for _, cl := range cls {
		if cl.DataServicesIP == "" {
			rep.add("dsip", checkFail, "cluster %s has no Data Services IP (set one in Prism: Cluster Details)", cl.Name)
			continue
		}
		portal := net.JoinHostPort(cl.DataServicesIP, strconv.Itoa(o.ISCSIPort))
		rep.add("dsip", checkOK, "cluster %s: Data Services IP %s", cl.Name, cl.DataServicesIP)
		d := net.Dialer{Timeout: o.DialTimeout}
		conn, err := d.DialContext(ctx, "tcp", portal)
		if err != nil {
			rep.add("iscsi", checkFail, "cluster %s: iSCSI portal %s unreachable: %v", cl.Name, portal, err)
			continue
		}
		conn.Close()
		rep.add("iscsi", checkOK, "cluster %s: iSCSI portal %s reachable", cl.Name, portal)
	}

	// permissions: the reads a backup needs
	vms, err := c.ListVMs(ctx)
	if err != nil {
		rep.add("permissions", checkFail, "cannot list VMs: %v", err)
		return
	}
	if _, err := c.ListSnapshots(ctx, ""); err != nil {
		rep.add("permissions", checkFail, "cannot list snapshots: %v", err)
		return
	}
	rep.add("permissions", checkOK, "can list VMs (%d) and snapshots", len(vms))
}

func firstNonEmptyStr(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// reachError keeps health-check's one-line summary as the message while
// its class (exit code) comes from the error that kept the cluster out of
// reach.
type reachError struct {
	msg string
	err error
}

func (e reachError) Error() string { return e.msg }
func (e reachError) Unwrap() error { return e.err }
