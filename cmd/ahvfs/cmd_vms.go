package main

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

// lastRestorePointHook, when set (by the code that owns the repository),
// returns a function giving the latest restore point of a VM, e.g.
// "web01@2026-11-22T01:30:00Z", or "" if none. The column is shown only
// when the hook is set.
var lastRestorePointHook func(ctx context.Context, c *cli.Context, env *cliEnv) (func(nutanix.VM) string, error)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "vms",
			Usage: "what the cluster has, with disks, NGT state, categories and last restore point",
			Flags: append(clusterFlags(),
				&cli.StringSliceFlag{Name: "vm", Usage: "only VMs whose name (or UUID) matches `GLOB` (repeatable, or comma-separated)"},
			),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				o, err := clusterOptions(c, env)
				if err != nil {
					return err
				}
				vo := vmsOptions{Cluster: o}
				for _, g := range c.StringSlice("vm") {
					for _, p := range strings.Split(g, ",") {
						if p = strings.TrimSpace(p); p != "" {
							if _, err := path.Match(p, ""); err != nil {
								return usagef("--vm %q: %v", p, err)
							}
							vo.Globs = append(vo.Globs, p)
						}
					}
				}
				if lastRestorePointHook != nil {
					if vo.LastRestorePoint, err = lastRestorePointHook(c.Context, c, env); err != nil {
						return err
					}
				}
				return runVMs(c.Context, env, vo)
			},
		}
	})
}

type vmsOptions struct {
	Cluster          nutanix.Options
	Globs            []string                // empty: every VM
	LastRestorePoint func(nutanix.VM) string // optional
}

type vmsEntry struct {
	nutanix.VM
	LastRestorePoint string `json:"LastRestorePoint,omitempty"`
}

func runVMs(ctx context.Context, env *cliEnv, o vmsOptions) error {
	c, err := nutanix.Connect(ctx, o.Cluster)
	if err != nil {
		return err
	}
	defer c.Close()
	all, err := c.ListVMs(ctx)
	if err != nil {
		return err
	}
	var vms []vmsEntry
	for _, v := range all {
		if matchVM(v, o.Globs) {
			e := vmsEntry{VM: v}
			if o.LastRestorePoint != nil {
				e.LastRestorePoint = o.LastRestorePoint(v)
			}
			vms = append(vms, e)
		}
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	if len(o.Globs) > 0 && len(vms) == 0 {
		return fmt.Errorf("no VM matches %s", strings.Join(o.Globs, ","))
	}
	if env.JSON {
		if vms == nil {
			vms = []vmsEntry{}
		}
		return writeJSON(env.Stdout, vms)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	hdr := "NAME\tPOWER\tVCPU\tMEMORY\tBOOT\tDISKS\tNGT"
	// The categories column shows when a VM has any.
	cats := slices.ContainsFunc(vms, func(v vmsEntry) bool { return len(v.Categories) > 0 })
	if cats {
		hdr += "\tCATEGORIES"
	}
	if o.LastRestorePoint != nil {
		hdr += "\tLAST RESTORE POINT"
	}
	fmt.Fprintln(tw, hdr)
	for _, v := range vms {
		line := fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s\t%s", v.Name, v.PowerState, v.VCPUs, ibytes(v.MemoryBytes), v.BootType, describeDisks(v.Disks), describeNGT(v.NGT))
		if cats {
			line += "\t" + describeCategories(v.CategoryList())
		}
		if o.LastRestorePoint != nil {
			line += "\t" + firstNonEmptyStr(v.LastRestorePoint, "-")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// describeCategories is "Env:prod,Tier:web", or "-" for none.
func describeCategories(cs []nutanix.Category) string {
	if len(cs) == 0 {
		return "-"
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

func matchVM(v nutanix.VM, globs []string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, v.Name); ok || g == v.UUID {
			return true
		}
	}
	return false
}

// describeDisks renders "scsi.0 10 GiB, ide.0 cdrom, scsi.1 vg:<uuid8>".
func describeDisks(ds []nutanix.Disk) string {
	if len(ds) == 0 {
		return "-"
	}
	var parts []string
	for _, d := range ds {
		switch {
		case d.IsCDROM:
			parts = append(parts, d.Address()+" cdrom")
		case d.VolumeGroupUUID != "":
			parts = append(parts, d.Address()+" vg:"+shortID(d.VolumeGroupUUID))
		default:
			parts = append(parts, d.Address()+" "+ibytes(d.SizeBytes))
		}
	}
	return strings.Join(parts, ", ")
}

func describeNGT(n nutanix.NGT) string {
	switch {
	case !n.Installed:
		return "absent"
	case !n.Enabled:
		return "disabled"
	case n.VSSCapable:
		return "vss"
	}
	return "installed"
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
