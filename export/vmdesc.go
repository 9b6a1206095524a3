package export

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
)

// VM descriptions written by Export: an OVF 1.x envelope (vSphere and other
// OVF importers) and a libvirt domain XML (KVM, Proxmox's qm importovf
// reads the OVF too). Both carry CPU, memory, firmware, disks and NICs; the
// disks are referenced by file name relative to the description (OVF) or by
// absolute path (libvirt).

// xmlText escapes s for XML character data and attribute values.
func xmlText(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// nicNetwork is the network name a description uses for a NIC.
func nicNetwork(n clusterjob.NICConfig) string {
	switch {
	case n.SubnetName != "":
		return n.SubnetName
	case n.SubnetUUID != "":
		return n.SubnetUUID
	}
	return "default"
}

// OVF returns an OVF 1.x descriptor of the VM whose disks were exported as
// disks (files in the same directory).
func OVF(cfg *clusterjob.VMConfig, rp *engine.RestorePoint, disks []ExportedDisk) ([]byte, error) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"` +
		` xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"` +
		` xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"` +
		` xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` + "\n")
	p("  <References>\n")
	for i, d := range disks {
		var size int64
		if st, err := os.Stat(d.File); err == nil {
			size = st.Size()
		}
		p("    <File ovf:id=\"file%d\" ovf:href=\"%s\" ovf:size=\"%d\"/>\n", i+1, xmlText(filepath.Base(d.File)), size)
	}
	p("  </References>\n")
	p("  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
	for i, d := range disks {
		p("    <Disk ovf:diskId=\"vmdisk%d\" ovf:fileRef=\"file%d\" ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte\" ovf:format=\"%s\"/>\n",
			i+1, i+1, d.Size, ovfDiskFormat(d.Format))
	}
	p("  </DiskSection>\n")
	nets := map[string]bool{}
	p("  <NetworkSection>\n    <Info>The list of logical networks</Info>\n")
	for _, n := range cfg.NICs {
		name := nicNetwork(n)
		if !nets[name] {
			nets[name] = true
			p("    <Network ovf:name=\"%s\">\n      <Description>AHV subnet %s</Description>\n    </Network>\n", xmlText(name), xmlText(name))
		}
	}
	p("  </NetworkSection>\n")
	p("  <VirtualSystem ovf:id=\"%s\">\n    <Info>A virtual machine exported by ahvfs from %s</Info>\n    <Name>%s</Name>\n",
		xmlText(cfg.Name), xmlText(rp.Name()), xmlText(cfg.Name))
	p("    <OperatingSystemSection ovf:id=\"1\">\n      <Info>The guest operating system</Info>\n    </OperatingSystemSection>\n")
	p("    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n")
	p("      <System>\n        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n"+
		"        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>\n        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>\n      </System>\n", xmlText(cfg.Name))
	id := 1
	sockets, cores := cfg.Sockets()
	// rasd elements follow the CIM schema's (alphabetical) order.
	p("      <Item>\n        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n        <rasd:Description>Number of Virtual CPUs</rasd:Description>\n"+
		"        <rasd:ElementName>%d virtual CPU(s)</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n"+
		"        <rasd:ResourceType>3</rasd:ResourceType>\n        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>\n", sockets*cores, id, sockets*cores)
	if cores > 1 {
		p("        <vmw:CoresPerSocket ovf:required=\"false\">%d</vmw:CoresPerSocket>\n", cores)
	}
	p("      </Item>\n")
	id++
	p("      <Item>\n        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>\n        <rasd:Description>Memory Size</rasd:Description>\n"+
		"        <rasd:ElementName>%d MB of memory</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n"+
		"        <rasd:ResourceType>4</rasd:ResourceType>\n        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>\n      </Item>\n",
		cfg.MemoryBytes>>20, id, cfg.MemoryBytes>>20)
	ctrl := map[string]int{}
	controller := func(bus string) int {
		if c, ok := ctrl[bus]; ok {
			return c
		}
		id++
		switch bus {
		case "IDE":
			p("      <Item>\n        <rasd:Address>0</rasd:Address>\n        <rasd:Description>IDE Controller</rasd:Description>\n"+
				"        <rasd:ElementName>ideController0</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceType>5</rasd:ResourceType>\n      </Item>\n", id)
		case "SATA":
			p("      <Item>\n        <rasd:Address>0</rasd:Address>\n        <rasd:Description>SATA Controller</rasd:Description>\n"+
				"        <rasd:ElementName>sataController0</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n"+
				"        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>\n        <rasd:ResourceType>20</rasd:ResourceType>\n      </Item>\n", id)
		default: // SCSI, and PCI (virtio) disks, which vSphere does not have
			p("      <Item>\n        <rasd:Address>0</rasd:Address>\n        <rasd:Description>SCSI Controller</rasd:Description>\n"+
				"        <rasd:ElementName>scsiController0</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n"+
				"        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>\n        <rasd:ResourceType>6</rasd:ResourceType>\n      </Item>\n", id)
		}
		ctrl[bus] = id
		return id
	}
	unit := map[int]int{}
	for i, d := range disks {
		bus := d.Bus
		if bus != "IDE" && bus != "SATA" {
			bus = "SCSI"
		}
		parent := controller(bus)
		id++
		u := unit[parent]
		if bus == "SCSI" && u == 7 { // unit 7 is the controller itself
			u++
		}
		unit[parent] = u + 1
		p("      <Item>\n        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:ElementName>%s</rasd:ElementName>\n"+
			"        <rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n"+
			"        <rasd:Parent>%d</rasd:Parent>\n        <rasd:ResourceType>17</rasd:ResourceType>\n      </Item>\n",
			u, xmlText(d.Name), i+1, id, parent)
	}
	for i, n := range cfg.NICs {
		id++
		p("      <Item>\n")
		if n.MAC != "" {
			p("        <rasd:Address>%s</rasd:Address>\n", xmlText(n.MAC))
		}
		p("        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:AutomaticAllocation>%t</rasd:AutomaticAllocation>\n"+
			"        <rasd:Connection>%s</rasd:Connection>\n        <rasd:ElementName>Network adapter %d</rasd:ElementName>\n"+
			"        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceSubType>%s</rasd:ResourceSubType>\n"+
			"        <rasd:ResourceType>10</rasd:ResourceType>\n      </Item>\n",
			7+i, n.IsConnected || !nicConnectedKnown(cfg), xmlText(nicNetwork(n)), i+1, id, ovfNICModel(n.Model))
	}
	switch cfg.BootType {
	case "UEFI":
		p("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n")
	case "SECURE_BOOT":
		p("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n")
		p("      <vmw:Config ovf:required=\"false\" vmw:key=\"bootOptions.efiSecureBootEnabled\" vmw:value=\"true\"/>\n")
	default:
		p("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"bios\"/>\n")
	}
	p("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return []byte(b.String()), nil
}

// nicConnectedKnown reports whether the configuration says anything about
// NIC connection state (older configurations do not: assume connected).
func nicConnectedKnown(cfg *clusterjob.VMConfig) bool {
	for _, n := range cfg.NICs {
		if n.IsConnected {
			return true
		}
	}
	return false
}

func ovfDiskFormat(f string) string {
	switch f {
	case FormatVMDK:
		return "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
	case FormatQCOW2:
		return "http://www.gnome.org/~markmc/qcow-image-format.html"
	case FormatVHDX:
		return "http://technet.microsoft.com/en-us/virtualization/bb676673.aspx"
	}
	return "http://ahvfs.io/formats/raw"
}

func ovfNICModel(m string) string {
	switch m {
	case "E1000":
		return "E1000"
	case "E1000E":
		return "E1000e"
	}
	return "VmxNet3"
}

// libvirt domain XML.

type lvDomain struct {
	XMLName     xml.Name   `xml:"domain"`
	Type        string     `xml:"type,attr"`
	Name        string     `xml:"name"`
	Description string     `xml:"description,omitempty"`
	Memory      lvSized    `xml:"memory"`
	VCPU        int        `xml:"vcpu"`
	CPU         lvCPU      `xml:"cpu"`
	OS          lvOS       `xml:"os"`
	Features    lvFeatures `xml:"features"`
	Devices     lvDevices  `xml:"devices"`
	OnPoweroff  string     `xml:"on_poweroff"`
	OnReboot    string     `xml:"on_reboot"`
	OnCrash     string     `xml:"on_crash"`
}

type lvSized struct {
	Unit  string `xml:"unit,attr"`
	Value int64  `xml:",chardata"`
}

type lvCPU struct {
	Topology struct {
		Sockets int `xml:"sockets,attr"`
		Dies    int `xml:"dies,attr"`
		Cores   int `xml:"cores,attr"`
		Threads int `xml:"threads,attr"`
	} `xml:"topology"`
}

type lvOS struct {
	Firmware string `xml:"firmware,attr,omitempty"`
	Type     struct {
		Arch    string `xml:"arch,attr"`
		Machine string `xml:"machine,attr"`
		Value   string `xml:",chardata"`
	} `xml:"type"`
	FW *struct {
		Features []lvFWFeature `xml:"feature"`
	} `xml:"firmware,omitempty"`
	Boot struct {
		Dev string `xml:"dev,attr"`
	} `xml:"boot"`
}

type lvFWFeature struct {
	Enabled string `xml:"enabled,attr"`
	Name    string `xml:"name,attr"`
}

type lvFeatures struct {
	ACPI *struct{} `xml:"acpi"`
	APIC *struct{} `xml:"apic"`
	SMM  *struct {
		State string `xml:"state,attr"`
	} `xml:"smm,omitempty"`
}

type lvDevices struct {
	Controllers []lvController `xml:"controller"`
	Disks       []lvDisk       `xml:"disk"`
	Interfaces  []lvInterface  `xml:"interface"`
	Console     struct {
		Type string `xml:"type,attr"`
	} `xml:"console"`
}

type lvController struct {
	Type  string `xml:"type,attr"`
	Index int    `xml:"index,attr"`
	Model string `xml:"model,attr,omitempty"`
}

type lvDisk struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Driver struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source struct {
		File string `xml:"file,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	} `xml:"target"`
	Alias *struct {
		Name string `xml:"name,attr"`
	} `xml:"alias,omitempty"`
}

type lvInterface struct {
	Type string `xml:"type,attr"`
	MAC  *struct {
		Address string `xml:"address,attr"`
	} `xml:"mac,omitempty"`
	Source struct {
		Network string `xml:"network,attr"`
	} `xml:"source"`
	Model struct {
		Type string `xml:"type,attr"`
	} `xml:"model"`
	Link *struct {
		State string `xml:"state,attr"`
	} `xml:"link,omitempty"`
}

// LibvirtXML returns a libvirt domain definition of the VM whose disks were
// exported as disks (absolute paths; edit them after moving the files).
func LibvirtXML(cfg *clusterjob.VMConfig, rp *engine.RestorePoint, disks []ExportedDisk) ([]byte, error) {
	d := lvDomain{Type: "kvm", Name: cfg.Name, Description: "Exported by ahvfs from " + rp.Name(),
		Memory: lvSized{Unit: "KiB", Value: cfg.MemoryBytes >> 10}, OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy"}
	sockets, cores := cfg.Sockets()
	d.VCPU = sockets * cores
	d.CPU.Topology.Sockets, d.CPU.Topology.Dies, d.CPU.Topology.Cores, d.CPU.Topology.Threads = sockets, 1, cores, 1
	d.OS.Type.Arch, d.OS.Type.Value = "x86_64", "hvm"
	d.OS.Type.Machine = "pc"
	if cfg.MachineType == "Q35" || cfg.BootType == "SECURE_BOOT" {
		d.OS.Type.Machine = "q35"
	}
	d.OS.Boot.Dev = "hd"
	d.Features.ACPI, d.Features.APIC = &struct{}{}, &struct{}{}
	switch cfg.BootType {
	case "UEFI":
		d.OS.Firmware = "efi"
		d.OS.FW = &struct {
			Features []lvFWFeature `xml:"feature"`
		}{[]lvFWFeature{{"no", "secure-boot"}}}
	case "SECURE_BOOT":
		d.OS.Firmware = "efi"
		d.OS.FW = &struct {
			Features []lvFWFeature `xml:"feature"`
		}{[]lvFWFeature{{"yes", "enrolled-keys"}, {"yes", "secure-boot"}}}
		d.Features.SMM = &struct {
			State string `xml:"state,attr"`
		}{"on"}
	}
	prefix := map[string]string{"SCSI": "sd", "SATA": "sd", "IDE": "hd", "PCI": "vd"}
	next := map[string]int{}
	haveSCSI := false
	for _, x := range disks {
		var ld lvDisk
		ld.Type, ld.Device = "file", "disk"
		ld.Driver.Name, ld.Driver.Type = "qemu", x.Format
		abs, err := filepath.Abs(x.File)
		if err != nil {
			return nil, err
		}
		ld.Source.File = abs
		bus := map[string]string{"SCSI": "scsi", "SATA": "sata", "IDE": "ide", "PCI": "virtio"}[x.Bus]
		if bus == "" {
			bus = "scsi"
		}
		haveSCSI = haveSCSI || bus == "scsi"
		pfx := prefix[x.Bus]
		if pfx == "" {
			pfx = "sd"
		}
		ld.Target.Dev, ld.Target.Bus = pfx+driveLetters(next[pfx]), bus
		next[pfx]++
		d.Devices.Disks = append(d.Devices.Disks, ld)
	}
	if haveSCSI {
		d.Devices.Controllers = append(d.Devices.Controllers, lvController{Type: "scsi", Index: 0, Model: "virtio-scsi"})
	}
	for _, n := range cfg.NICs {
		var li lvInterface
		li.Type = "network"
		li.Source.Network = nicNetwork(n)
		if n.MAC != "" {
			li.MAC = &struct {
				Address string `xml:"address,attr"`
			}{n.MAC}
		}
		li.Model.Type = map[string]string{"E1000": "e1000", "E1000E": "e1000e", "RTL8139": "rtl8139"}[n.Model]
		if li.Model.Type == "" {
			li.Model.Type = "virtio"
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, li)
	}
	d.Devices.Console.Type = "pty"
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("libvirt XML: %w", err)
	}
	return append(out, '\n'), nil
}

// driveLetters names drive n as a, b, …, z, aa, ab, … (like the kernel).
func driveLetters(n int) string {
	s := ""
	for n++; n > 0; n = (n - 1) / 26 {
		s = string(rune('a'+(n-1)%26)) + s
	}
	return s
}
