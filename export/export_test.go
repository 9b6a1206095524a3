package export_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/export"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// testConfig is a VM configuration record as the backup job writes it.
func testConfig(boot string) clusterjob.VMConfig {
	return clusterjob.VMConfig{Version: clusterjob.VMConfigVersion, Name: "web01", UUID: "0e1b7c3a-1111-4222-8333-444455556666",
		NumSockets: 2, CoresPerSocket: 2, VCPUs: 4, MemoryBytes: 3 << 30, BootType: boot, MachineType: "Q35",
		Disks: []clusterjob.DiskConfig{{Disk: 0, Bus: "scsi", Index: 0, SizeBytes: 64 << 20}, {Disk: 1, Bus: "scsi", Index: 1, SizeBytes: 32 << 20}},
		NICs: []clusterjob.NICConfig{{SubnetName: "vlan10", MAC: "50:6b:8d:aa:bb:01", Model: "VIRTIO", IsConnected: true},
			{SubnetName: "vlan20", MAC: "50:6b:8d:aa:bb:02", Model: "E1000", IsConnected: true}}}
}

// TestExport converts a two-disk restore point (a real ext4 disk and a
// mostly-zero data disk) to every format: qemu-img compare finds each file
// identical to the source image, virt-xml-validate accepts the libvirt
// XML, and the OVF parses with one disk reference per file.
func TestExport(t *testing.T) {
	testenv.Commands(t, "qemu-img", "virt-xml-validate", "xmllint", "mkfs.ext4")
	src := []string{enginetest.Ext4Image(t, 64<<20, 1), enginetest.DataDisk(t, 32<<20, 2)}
	for _, boot := range []string{"SECURE_BOOT", "LEGACY"} {
		repo, rp := enginetest.ImportVM(t, "web01", testConfig(boot), src...)
		formats := []string{"qcow2", "vmdk", "vhdx", "raw"}
		if boot == "LEGACY" {
			formats = formats[:1] // one format is enough for the second firmware
		}
		for _, format := range formats {
			t.Run(boot+"/"+format, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				var last atomic.Int64 // Progress is called from several goroutines
				res, err := export.Export(context.Background(), repo, rp, export.Options{Format: format, OutDir: out,
					Progress: func(_ int, done, _ int64) {
						for old := last.Load(); done > old && !last.CompareAndSwap(old, done); old = last.Load() {
						}
					}})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Disks) != 2 || last.Load() == 0 {
					t.Fatalf("result %+v, progress %d", res, last.Load())
				}
				for i, d := range res.Disks {
					qfmt := format
					if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", qfmt, src[i], d.File).CombinedOutput(); err != nil {
						t.Errorf("qemu-img compare %s: %v\n%s", d.File, err, out)
					}
				}
				if format == "vhdx" {
					if res.Libvirt != "" {
						t.Errorf("libvirt XML %s for vhdx disks", res.Libvirt)
					}
				} else {
					checkLibvirt(t, res.Libvirt, boot, format)
				}
				checkOVF(t, res.OVF, res.Disks)
				ents, _ := os.ReadDir(out)
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), ".partial") {
						t.Errorf("left %s behind", e.Name())
					}
				}
			})
		}
	}
}

func checkLibvirt(t *testing.T, path, boot, format string) {
	t.Helper()
	if out, err := exec.Command("virt-xml-validate", path, "domain").CombinedOutput(); err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("virt-xml-validate: %v\n%s\n%s", err, out, b)
	}
	b, _ := os.ReadFile(path)
	var dom struct {
		Memory int64 `xml:"memory"`
		VCPU   int   `xml:"vcpu"`
		OS     struct {
			Firmware string `xml:"firmware,attr"`
		} `xml:"os"`
		Disks []struct {
			Driver struct {
				Type string `xml:"type,attr"`
			} `xml:"driver"`
			Source struct {
				File string `xml:"file,attr"`
			} `xml:"source"`
		} `xml:"devices>disk"`
		NICs []struct {
			MAC struct {
				Address string `xml:"address,attr"`
			} `xml:"mac"`
			Model struct {
				Type string `xml:"type,attr"`
			} `xml:"model"`
		} `xml:"devices>interface"`
	}
	if err := xml.Unmarshal(b, &dom); err != nil {
		t.Fatal(err)
	}
	wantFW := map[string]string{"SECURE_BOOT": "efi", "LEGACY": ""}[boot]
	if dom.Memory != 3<<20 || dom.VCPU != 4 || dom.OS.Firmware != wantFW || len(dom.Disks) != 2 || len(dom.NICs) != 2 ||
		dom.Disks[0].Driver.Type != format || dom.NICs[1].MAC.Address != "50:6b:8d:aa:bb:02" || dom.NICs[1].Model.Type != "e1000" {
		t.Errorf("libvirt domain %+v\n%s", dom, b)
	}
	for _, d := range dom.Disks {
		if _, err := os.Stat(d.Source.File); err != nil {
			t.Errorf("libvirt disk source: %v", err)
		}
	}
}

func checkOVF(t *testing.T, path string, disks []export.ExportedDisk) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		XMLName xml.Name `xml:"http://schemas.dmtf.org/ovf/envelope/1 Envelope"`
		Files   []struct {
			ID   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 id,attr"`
			Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
			Size int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 size,attr"`
		} `xml:"References>File"`
		Disks []struct {
			ID       string `xml:"http://schemas.dmtf.org/ovf/envelope/1 diskId,attr"`
			FileRef  string `xml:"http://schemas.dmtf.org/ovf/envelope/1 fileRef,attr"`
			Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
		} `xml:"DiskSection>Disk"`
		Items []struct {
			ResourceType int    `xml:"ResourceType"`
			HostResource string `xml:"HostResource"`
			Quantity     int64  `xml:"VirtualQuantity"`
			Connection   string `xml:"Connection"`
		} `xml:"VirtualSystem>VirtualHardwareSection>Item"`
	}
	if err := xml.NewDecoder(bytes.NewReader(b)).Decode(&env); err != nil {
		t.Fatalf("OVF does not parse: %v\n%s", err, b)
	}
	if len(env.Files) != len(disks) || len(env.Disks) != len(disks) {
		t.Fatalf("OVF has %d files, %d disks; want %d\n%s", len(env.Files), len(env.Disks), len(disks), b)
	}
	hosts := map[string]bool{}
	var cpu, mem int64
	var nets []string
	for _, it := range env.Items {
		switch it.ResourceType {
		case 17:
			hosts[it.HostResource] = true
		case 3:
			cpu = it.Quantity
		case 4:
			mem = it.Quantity
		case 10:
			nets = append(nets, it.Connection)
		}
	}
	for i, d := range disks {
		f, dk := env.Files[i], env.Disks[i]
		st, err := os.Stat(filepath.Join(filepath.Dir(path), f.Href))
		if err != nil || st.Size() != f.Size || f.Href != filepath.Base(d.File) {
			t.Errorf("OVF file %+v: %v", f, err)
		}
		if dk.FileRef != f.ID || dk.Capacity != d.Size || !hosts["ovf:/disk/"+dk.ID] {
			t.Errorf("OVF disk %+v does not reference file %s / capacity %d / hardware item", dk, f.ID, d.Size)
		}
	}
	if cpu != 4 || mem != 3<<10 || strings.Join(nets, ",") != "vlan10,vlan20" {
		t.Errorf("OVF hardware: cpu %d mem %d nets %v", cpu, mem, nets)
	}
}
