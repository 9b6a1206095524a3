package nutanix

import (
	"fmt"
	"sort"
	"strings"
)

// Small helpers shared by the backends.

func firstNonEmpty[S ~string](ss ...S) S {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstRef(rs ...*v3Ref) *v3Ref {
	for _, r := range rs {
		if r != nil && r.UUID != "" {
			return r
		}
	}
	return nil
}

func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func lower(s string) string { return strings.ToLower(s) }

var busOrder = map[string]int{"SCSI": 0, "SATA": 1, "IDE": 2, "PCI": 3, "SPAPR": 4}

// sortDisks orders disks by bus, then index (the "disk-N" order of cli.md).
func sortDisks(ds []Disk) {
	sort.SliceStable(ds, func(i, j int) bool {
		bi, bj := busOrder[ds[i].Bus], busOrder[ds[j].Bus]
		if bi != bj {
			return bi < bj
		}
		return ds[i].Index < ds[j].Index
	})
}

func joinHostPort(host string, port int) string {
	if port == 0 {
		port = 3260
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}
