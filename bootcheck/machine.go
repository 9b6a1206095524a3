package bootcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
)

// Disk is one disk of the machine, as QEMU reads it.
type Disk struct {
	// Source is the raw disk: a file (the FUSE mount's disk-N.raw) or a
	// URL QEMU's block layer opens (nfs://HOST/VM/TIME/disk-N.raw).
	Source string
	Bus    string // SCSI, SATA, IDE or PCI, as on AHV
	Index  int    // the disk's index on its bus
}

// Machine is what QEMU emulates: the restore point's VM, scaled to a test.
type Machine struct {
	Name        string
	Disks       []Disk // in boot order: the first one boots
	MemoryBytes int64
	VCPUs       int
	Q35         bool // machine type Q35 (default: PC, i440FX)
	UEFI        bool // UEFI firmware (OVMF) instead of SeaBIOS
	// SecureBoot enforces Secure Boot, as the cluster does for such a VM:
	// OVMF's Secure Boot build with Microsoft's keys enrolled (those that
	// sign Windows' boot manager and the shim of Linux distributions), on
	// a Q35 machine with SMM.
	SecureBoot bool
}

// Caps on what a boot check gives the guest: enough to boot, not the
// production VM's size (TCG runs on the backup host).
const (
	maxMemory = 4 << 30
	maxVCPUs  = 4
)

// MachineOf is rp's VM as its configuration record describes it: disks on
// their buses in bus/index order (the first boots), memory and vCPUs capped
// for a test boot, machine type and firmware. source names where QEMU reads
// each disk.
func MachineOf(rp *engine.RestorePoint, source func(d *engine.Disk) string) (Machine, error) {
	cfg, err := clusterjob.ConfigOf(rp)
	if err != nil {
		return Machine{}, err
	}
	places, err := clusterjob.PlaceDisks(rp, nil)
	if err != nil {
		return Machine{}, err
	}
	if len(places) == 0 {
		return Machine{}, fmt.Errorf("restore point %s holds no disk to boot", rp.Name())
	}
	m := Machine{
		Name:        cfg.Name,
		MemoryBytes: min(cfg.MemoryBytes, maxMemory),
		VCPUs:       max(1, min(cfg.TotalVCPUs(), maxVCPUs, runtime.NumCPU())),
		Q35:         cfg.MachineType == "Q35",
		UEFI:        cfg.BootType == "UEFI" || cfg.BootType == "SECURE_BOOT",
		SecureBoot:  cfg.BootType == "SECURE_BOOT",
	}
	for _, p := range places {
		m.Disks = append(m.Disks, Disk{Source: source(p.Disk), Bus: p.Bus, Index: p.Index})
	}
	return m, nil
}

// OVMF firmware from Debian's ovmf package: the code, and the template of
// the variable store each check copies.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// Secure Boot: the build that needs SMM, and a variable store with
	// Microsoft's keys enrolled and Secure Boot on.
	ovmfSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfSecureVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// q35 reports whether m runs on QEMU's Q35 (Secure Boot needs its SMM).
func (m Machine) q35() bool { return m.Q35 || m.SecureBoot }

// ovmf reports whether m boots with OVMF (UEFI) rather than SeaBIOS.
func (m Machine) ovmf() bool { return m.UEFI || m.SecureBoot }

// firmware is the OVMF code and variable store template m boots with.
func (m Machine) firmware() (code, vars string) {
	if m.SecureBoot {
		return ovmfSecureCode, ovmfSecureVars
	}
	return ovmfCode, ovmfVars
}

// runFiles are the files of one QEMU run, in its work directory.
type runFiles struct {
	overlays []string // one per disk, in front of it
	qmpFD    int      // QEMU's descriptor of its end of the QMP socket
	pid      string   // QEMU's pidfile
	vars     string   // the UEFI variable store (UEFI only)
}

// args is QEMU's command line for m: the serial port on stdio, QMP and
// the pidfile from f, and no network. A firmware with nothing to boot
// resets at once (reboot-timeout=0), which ends QEMU (-no-reboot).
func (m Machine) args(f runFiles, kvm bool) ([]string, error) {
	machine := "pc"
	if m.q35() {
		machine = "q35"
	}
	if m.SecureBoot {
		machine += ",smm=on" // the Secure Boot firmware guards its variables in SMM
	}
	accel := "tcg"
	if kvm {
		accel = "kvm"
	}
	a := []string{
		"-name", "ahvfs-verify-boot",
		"-machine", machine + ",accel=" + accel,
		"-m", fmt.Sprintf("%dM", max(m.MemoryBytes>>20, 256)),
		"-smp", fmt.Sprint(max(m.VCPUs, 1)),
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-vga", "std",
		"-nic", "none",
		"-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
		"-monitor", "none",
		"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", f.qmpFD), "-mon", "chardev=qmp,mode=control",
		"-boot", "reboot-timeout=0",
		"-pidfile", f.pid,
	}
	if m.ovmf() {
		code, _ := m.firmware()
		if _, err := os.Stat(code); err != nil {
			return nil, fmt.Errorf("the VM boots with UEFI and the OVMF firmware is missing (install Debian's ovmf package): %w", err)
		}
		if m.SecureBoot {
			a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1")
		}
		a = append(a, "-drive", "if=pflash,format=raw,readonly=on,file="+qemuValue(code),
			"-drive", "if=pflash,format=raw,file="+qemuValue(f.vars))
	}
	ctrl := map[string]bool{}
	for i, d := range m.Disks {
		id := fmt.Sprintf("disk%d", i)
		a = append(a, "-drive", fmt.Sprintf("file=%s,format=qcow2,if=none,id=%s,cache=unsafe", qemuValue(f.overlays[i]), id))
		boot := ""
		if i == 0 {
			boot = ",bootindex=0"
		}
		switch d.Bus {
		case "SCSI":
			if !ctrl["scsi"] {
				a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
				ctrl["scsi"] = true
			}
			if d.Index > 255 {
				return nil, fmt.Errorf("SCSI disk index %d: QEMU's virtio-scsi takes ids 0 to 255", d.Index)
			}
			a = append(a, "-device", fmt.Sprintf("scsi-hd,bus=scsi0.0,scsi-id=%d,drive=%s%s", d.Index, id, boot))
		case "SATA":
			if !ctrl["sata"] {
				a = append(a, "-device", "ahci,id=ahci0")
				ctrl["sata"] = true
			}
			if d.Index > 5 {
				return nil, fmt.Errorf("SATA disk index %d: QEMU's AHCI controller has ports 0 to 5", d.Index)
			}
			a = append(a, "-device", fmt.Sprintf("ide-hd,bus=ahci0.%d,drive=%s%s", d.Index, id, boot))
		case "IDE":
			if m.q35() {
				return nil, fmt.Errorf("IDE disk %d on machine type Q35: QEMU's Q35 has no IDE buses", d.Index)
			}
			if d.Index > 3 {
				return nil, fmt.Errorf("IDE disk index %d does not fit QEMU's PC IDE buses (0 to 3)", d.Index)
			}
			a = append(a, "-device", fmt.Sprintf("ide-hd,bus=ide.%d,unit=%d,drive=%s%s", d.Index/2, d.Index%2, id, boot))
		case "PCI":
			a = append(a, "-device", fmt.Sprintf("virtio-blk-pci,drive=%s%s", id, boot))
		default:
			return nil, fmt.Errorf("disk %d: bus %q has no QEMU equivalent here", i, d.Bus)
		}
	}
	return a, nil
}

// qemuValue escapes a value of a QEMU option list (a comma is doubled).
func qemuValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// copyVars copies m's UEFI variable store template to dst.
func (m Machine) copyVars(dst string) error {
	_, vars := m.firmware()
	b, err := os.ReadFile(vars)
	if err != nil {
		return fmt.Errorf("the VM boots with UEFI and the OVMF variable store is missing (install Debian's ovmf package): %w", err)
	}
	return os.WriteFile(dst, b, 0o600)
}
