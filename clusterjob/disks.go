package clusterjob

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
)

// DiskPlace is where a restore point's disk goes on the VM.
type DiskPlace struct {
	Disk  *engine.Disk
	Bus   string // upper case: SCSI, SATA, IDE, PCI
	Index int
}

// PlaceDisks returns the restore point's disks selected by want (nil: all)
// with their bus and index, in bus/index order. The restore point's own
// bus/index win; a disk without one gets SCSI and the next free index. An
// XCP-ng disk (bus "xvd", a paravirtual disk with no equivalent outside
// Xen) goes on SCSI at its userdevice.
func PlaceDisks(rp *engine.RestorePoint, want []int) ([]DiskPlace, error) {
	sel := map[int]bool{}
	for _, n := range want {
		if _, err := rp.Disk(n); err != nil {
			return nil, fmt.Errorf("--disks: %w", err)
		}
		sel[n] = true
	}
	var out []DiskPlace
	used := map[string]bool{}
	for i := range rp.Disks {
		d := &rp.Disks[i]
		if len(want) > 0 && !sel[d.Index] {
			continue
		}
		bus := strings.ToUpper(d.Bus)
		if bus == "" || bus == "XVD" {
			bus = "SCSI"
		}
		out = append(out, DiskPlace{Disk: d, Bus: bus, Index: d.BusIndex})
	}
	for i := range out {
		k := fmt.Sprintf("%s.%d", out[i].Bus, out[i].Index)
		for used[k] {
			out[i].Index++
			k = fmt.Sprintf("%s.%d", out[i].Bus, out[i].Index)
		}
		used[k] = true
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Bus != out[j].Bus {
			return busOrder(out[i].Bus) < busOrder(out[j].Bus)
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}

func busOrder(b string) int {
	switch b {
	case "SCSI":
		return 0
	case "PCI":
		return 1
	case "SATA":
		return 2
	case "IDE":
		return 3
	}
	return 4
}
