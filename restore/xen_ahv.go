package restore

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
)

// A restore point of an XCP-ng VM restored onto AHV (Restore): what the
// record's XCP-ng part maps to, and what it cannot carry.

// xenDisksOnSCSI places the disks of an XCP-ng VM (bus "xvd", index the
// VBD's userdevice) on AHV's SCSI bus: the bootable disk first, then the
// others in userdevice order, at indexes 0, 1, 2…
func xenDisksOnSCSI(cfg *clusterjob.VMConfig, disks []clusterjob.DiskPlace) []clusterjob.DiskPlace {
	boot := map[int]bool{}
	if cfg.Xen != nil {
		for _, d := range cfg.Xen.Disks {
			if n, err := strconv.Atoi(d.Userdevice); err == nil && d.Bootable {
				boot[n] = true
			}
		}
	}
	out := append([]clusterjob.DiskPlace(nil), disks...)
	bootable := func(d clusterjob.DiskPlace) bool { return isXVD(d.Disk) && boot[d.Disk.BusIndex] }
	sort.SliceStable(out, func(i, j int) bool {
		if bootable(out[i]) != bootable(out[j]) {
			return bootable(out[i])
		}
		if isXVD(out[i].Disk) && isXVD(out[j].Disk) {
			return out[i].Disk.BusIndex < out[j].Disk.BusIndex
		}
		return false
	})
	for i := range out {
		out[i].Bus, out[i].Index = "SCSI", i
	}
	return out
}

// xenToAHVWarnings says what of an XCP-ng VM's record an AHV VM does not
// carry.
func xenToAHVWarnings(cfg *clusterjob.VMConfig) []string {
	w := []string{"restored from XCP-ng: the disks move from Xen's xvd devices to SCSI, so a guest that names them by device " +
		"(/dev/xvda) sees /dev/sda: mount by UUID or label"}
	tools := "the VM ran on XCP-ng: Nutanix Guest Tools are not installed (no application-consistent snapshots until they are)"
	if cfg.NGT.Installed {
		tools += ", and its XCP-ng guest tools (PV drivers) do not drive AHV's devices: a Windows guest needs the VirtIO drivers"
	}
	w = append(w, tools)
	x := cfg.Xen
	if x == nil {
		return w
	}
	var flags []string
	for k, v := range x.Platform {
		switch k {
		case "secureboot": // the boot type
		case "cores-per-socket": // the CPU topology
		default:
			flags = append(flags, k+"="+v)
		}
	}
	if len(flags) > 0 {
		sort.Strings(flags)
		w = append(w, "XCP-ng platform flags not carried: "+strings.Join(flags, ", "))
	}
	switch x.DomainType {
	case "pv", "pvh", "pv_in_pvh":
		w = append(w, fmt.Sprintf("the VM was a Xen %s guest: it boots on AHV only with its own bootloader and drivers for emulated or VirtIO devices", x.DomainType))
	}
	if x.VCPUsMax > int64(cfg.TotalVCPUs()) {
		w = append(w, fmt.Sprintf("vCPUs: %d at startup of at most %d on XCP-ng; the AHV VM has %d", cfg.TotalVCPUs(), x.VCPUsMax, cfg.TotalVCPUs()))
	}
	if x.MemoryDynamicMin > 0 && x.MemoryDynamicMin < cfg.MemoryBytes {
		w = append(w, fmt.Sprintf("dynamic memory (%d to %d MiB) not carried: the AHV VM has %d MiB", x.MemoryDynamicMin>>20, cfg.MemoryBytes>>20, cfg.MemoryBytes>>20))
	}
	for _, n := range x.NICs {
		if n.MTU != 0 && n.MTU != 1500 {
			w = append(w, fmt.Sprintf("NIC %s: MTU %d not carried (an AHV NIC has its subnet's)", n.Device, n.MTU))
		}
	}
	return w
}

// isXVD reports a disk of an XCP-ng VM (its BusIndex is the VBD's
// userdevice), whatever bus PlaceDisks gives it.
func isXVD(d *engine.Disk) bool { return strings.EqualFold(d.Bus, "xvd") }
