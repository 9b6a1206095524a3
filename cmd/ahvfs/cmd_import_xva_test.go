package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/xapi"
)

// TestImportXVA: `ahvfs import` stores an XVA the simulated pool exported
// and one a test assembled from the published format, each byte-exact
// with its VM's configuration; malformed XVAs fail with an error naming
// what is wrong, and store nothing.
func TestImportXVA(t *testing.T) {
	s, _ := xenSim(t)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)

	// 1. The pool's own export of a snapshot of xen01.
	ctx := context.Background()
	xc, err := xapi.Connect(ctx, xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer xc.Close(ctx)
	vm, err := xc.VMByUUID(ctx, s.VMs()[0].UUID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := xc.Snapshot(ctx, vm.Ref, "for-export")
	if err != nil {
		t.Fatal(err)
	}
	body, err := xc.ExportVM(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "xen01.xva")
	out, _ := os.Create(file)
	if _, err := io.Copy(out, body); err != nil {
		t.Fatal(err)
	}
	body.Close()
	out.Close()
	var res importResult
	if err := json.Unmarshal([]byte(mustCLI(t, "import", "--repo", repo, "--vm", "xen01", "--json", file)), &res); err != nil || len(res.Disks) != 2 {
		t.Fatalf("import of the pool's XVA: %v %+v", err, res)
	}
	sameAsXen(t, s, repo, res.RestorePoint)
	cfg := pointConfig(t, repo, res.RestorePoint)
	if cfg.Hypervisor != clusterjob.HypervisorXen || cfg.Xen == nil || len(cfg.Xen.Disks) != 2 || len(cfg.NICs) != 1 || cfg.NICs[0].MAC == "" {
		t.Fatalf("configuration of the imported XVA: %+v", cfg)
	}

	// 2. An XVA assembled here: 5 MiB + 100 KiB, blocks 0, 2 and the last
	// present, 1, 3 and 4 left out (zeros).
	const size = 5<<20 + 100<<10
	disk := make([]byte, size)
	rnd := rand.New(rand.NewPCG(5, 5))
	for _, blk := range []int{0, 2, 5} {
		for i := blk << 20; i < min((blk+1)<<20, size); i++ {
			disk[i] = byte(rnd.Uint32())
		}
	}
	good := handXVA(t, disk, []int{0, 2, 5}, nil)
	if err := json.Unmarshal([]byte(mustCLI(t, "import", "--repo", repo, "--vm", "hand01", "--json", good)), &res); err != nil {
		t.Fatal(err)
	}
	if got := mustCLI(t, "cat", "--repo", repo, res.RestorePoint, "disk-0"); !bytes.Equal([]byte(got), disk) {
		t.Fatalf("the hand-made XVA's disk differs (%d bytes, want %d)", len(got), len(disk))
	}
	if cfg := pointConfig(t, repo, res.RestorePoint); cfg.Name != "hand01-vm" || cfg.VCPUs != 2 || cfg.MemoryBytes != 1<<30 || cfg.BootType != "UEFI" {
		t.Fatalf("configuration of the hand-made XVA: %+v", cfg)
	}

	// 3. Malformed: a bad checksum, a block cut short, the last block
	// missing. Each fails, names the problem, and stores nothing.
	before := mustCLI(t, "list", "--repo", repo)
	for _, c := range []struct {
		name, want string
		bad        func(name string, b []byte) []byte
	}{
		{"checksum", "checksum", func(name string, b []byte) []byte {
			if name == "Ref:2/00000002.checksum" {
				return []byte(strings.Repeat("0", 40))
			}
			return b
		}},
		{"short block", "00000002", func(name string, b []byte) []byte {
			if name == "Ref:2/00000002" {
				return b[:1000]
			}
			return b
		}},
		{"last block missing", "last", func(name string, b []byte) []byte {
			if strings.HasPrefix(name, "Ref:2/00000005") {
				return nil
			}
			return b
		}},
	} {
		bad := handXVA(t, disk, []int{0, 2, 5}, c.bad)
		_, errs, code := runCLI(t, "", "import", "--repo", repo, "--vm", "bad01", bad)
		if code != 1 || !strings.Contains(strings.ToLower(errs), c.want) {
			t.Errorf("%s: exit %d, %q; want exit 1 naming %q", c.name, code, errs, c.want)
		}
	}
	if after := mustCLI(t, "list", "--repo", repo); after != before {
		t.Fatalf("a malformed XVA left a restore point:\n%s", after)
	}
}

func pointConfig(t *testing.T, repo, name string) clusterjob.VMConfig {
	t.Helper()
	r, err := engine.Open(context.Background(), repo, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rp, err := r.Resolve(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var cfg clusterjob.VMConfig
	if err := json.Unmarshal(rp.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// handXVA writes an XVA by hand from the published format (archive/tar,
// ova.xml as XML-RPC, 1 MiB blocks named Ref:2/NNNNNNNN each followed by
// its SHA-1 .checksum), of one VM with one disk holding disk, with the
// blocks of present only; edit may change or drop (nil) a member.
func handXVA(t *testing.T, disk []byte, present []int, edit func(name string, b []byte) []byte) string {
	t.Helper()
	ova := fmt.Sprintf(`<?xml version="1.0"?><value><struct>
<member><name>version</name><value><struct><member><name>export_vsn</name><value>2</value></member></struct></value></member>
<member><name>objects</name><value><array><data>
<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:0</value></member>
<member><name>snapshot</name><value><struct>
 <member><name>uuid</name><value>6b5c7a4e-0000-4000-8000-00000000000a</value></member>
 <member><name>name_label</name><value>hand01-vm</value></member>
 <member><name>is_a_template</name><value><boolean>0</boolean></value></member>
 <member><name>is_a_snapshot</name><value><boolean>0</boolean></value></member>
 <member><name>VCPUs_at_startup</name><value>2</value></member>
 <member><name>VCPUs_max</name><value>2</value></member>
 <member><name>memory_static_max</name><value>1073741824</value></member>
 <member><name>HVM_boot_params</name><value><struct><member><name>firmware</name><value>uefi</value></member></struct></value></member>
 <member><name>VBDs</name><value><array><data><value>Ref:1</value></data></array></value></member>
 <member><name>VIFs</name><value><array><data/></array></value></member>
</struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>Ref:1</value></member>
<member><name>snapshot</name><value><struct>
 <member><name>VM</name><value>Ref:0</value></member><member><name>VDI</name><value>Ref:2</value></member>
 <member><name>userdevice</name><value>0</value></member><member><name>bootable</name><value><boolean>1</boolean></value></member>
 <member><name>type</name><value>Disk</value></member><member><name>empty</name><value><boolean>0</boolean></value></member>
</struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:2</value></member>
<member><name>snapshot</name><value><struct>
 <member><name>uuid</name><value>6b5c7a4e-0000-4000-8000-00000000000b</value></member>
 <member><name>name_label</name><value>root</value></member>
 <member><name>virtual_size</name><value>%d</value></member>
</struct></value></member></struct></value>
</data></array></value></member>
</struct></value>`, len(disk))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		if edit != nil {
			if b = edit(name, b); b == nil {
				return
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	put("ova.xml", []byte(ova))
	for _, blk := range present {
		b := disk[blk<<20 : min((blk+1)<<20, len(disk))]
		name := fmt.Sprintf("Ref:2/%08d", blk)
		sum := sha1.Sum(b)
		put(name, b)
		put(name+".checksum", []byte(hex.EncodeToString(sum[:])))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hand.xva")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
