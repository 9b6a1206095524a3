package prismsim_test

import (
	"context"
	"encoding/binary"
	"os"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestDemoVMsHoldExt4: --vms N builds GPT disks whose first partition (at
// 1 MiB) is an ext4 filesystem; every second VM has two disks; NGT cycles.
func TestDemoVMsHoldExt4(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4", "sfdisk")
	s := simtest.Start(t, simtest.Options{})
	vms, err := s.AddDemoVMs(context.Background(), 2, prismsim.DemoOptions{DiskSize: 24 << 20, Fill: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 2 || len(vms[0].Disks) != 1 || len(vms[1].Disks) != 2 {
		t.Fatalf("demo VMs: %+v", vms)
	}
	for _, v := range vms {
		for _, d := range v.Disks {
			f, err := os.Open(d)
			if err != nil {
				t.Fatal(err)
			}
			var magic [2]byte
			f.ReadAt(magic[:], 1<<20+1024+0x38)
			f.Close()
			if binary.LittleEndian.Uint16(magic[:]) != 0xEF53 {
				t.Errorf("%s: no ext4 superblock at 1 MiB", d)
			}
		}
	}
	a := newAPI(t, s)
	r := a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID+"/guest-tools", nil).must(t, 200)
	if get(r.body, "data.isVssSnapshotCapable") != true {
		t.Errorf("demo-vm-1 should be VSS-capable: %s", r.raw)
	}
}
