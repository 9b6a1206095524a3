package clusterjob_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/nutanix"
)

// fixedAPI is a cluster that only names its API: the journal tests below
// never reach it (Record and Forget do no cluster calls).
type fixedAPI struct {
	nutanix.Cluster
	api nutanix.APIVersion
}

func (f fixedAPI) API() nutanix.APIVersion { return f.api }

func openJournal(t *testing.T) *clusterjob.Journal {
	t.Helper()
	j, err := clusterjob.OpenJournal(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJournalRecordForget: an entry is on disk from Record until Forget,
// with the job's API; a job that forgot everything leaves no directory.
func TestJournalRecordForget(t *testing.T) {
	j := openJournal(t)
	jb, err := j.Begin("backup", fixedAPI{api: nutanix.APIV3}, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := clusterjob.Object{Kind: clusterjob.KindSnapshot, Name: jb.Name("", "web/01 üñ"), VMUUID: "u1"}
	if !strings.HasPrefix(o.Name, "ahvfs-web_01_") || len(o.Name) > 80 {
		t.Fatalf("object name %q", o.Name)
	}
	if err := jb.Record(o); err != nil {
		t.Fatal(err)
	}
	o.ID = "snap-1"
	if err := jb.Record(o); err != nil { // the ID, once known, replaces the entry
		t.Fatal(err)
	}
	pending, err := j.Pending()
	if err != nil || len(pending) != 1 || pending[0].ID != "snap-1" || pending[0].API != nutanix.APIV3 {
		t.Fatalf("pending %+v (%v), want the snapshot with its ID and API v3", pending, err)
	}
	if err := jb.Forget(o); err != nil {
		t.Fatal(err)
	}
	if err := jb.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(j.Dir())
	for _, e := range ents {
		if e.Name() != "kept" {
			t.Errorf("journal keeps %s after a clean job", e.Name())
		}
	}
}

// TestJournalUndecodable: a damaged entry is reported, never dropped.
func TestJournalUndecodable(t *testing.T) {
	j := openJournal(t)
	jb, err := j.Begin("restore", fixedAPI{api: nutanix.APIV4}, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(j.Dir(), jb.ID(), "vm-0011.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Pending(); err == nil || !strings.Contains(err.Error(), "undecodable") {
		t.Fatalf("pending with a damaged entry: %v", err)
	}
}

// TestKeptRecord: Keep replaces the owner's record atomically and Kept
// reads it back.
func TestKeptRecord(t *testing.T) {
	j := openJournal(t)
	type rec struct{ N int }
	for n := 1; n <= 2; n++ {
		if err := j.Keep("ref-u1", []clusterjob.Object{{Kind: clusterjob.KindSnapshot, Name: "s", ID: "id"}}, rec{n}); err != nil {
			t.Fatal(err)
		}
	}
	var got rec
	if ok, err := j.Kept("ref-u1", &got); !ok || err != nil || got.N != 2 {
		t.Fatalf("kept %v %v %+v", ok, err, got)
	}
	if ok, err := j.Kept("ref-other", &got); ok || err != nil {
		t.Fatalf("missing record: %v %v", ok, err)
	}
	// Owners with unsafe characters get a hashed file name.
	if err := j.Keep("../../etc/x", nil, rec{3}); err != nil {
		t.Fatal(err)
	}
	if ok, err := j.Kept("../../etc/x", &got); !ok || err != nil || got.N != 3 {
		t.Fatalf("unsafe owner: %v %v %+v", ok, err, got)
	}
	ents, _ := os.ReadDir(filepath.Join(j.Dir(), "kept"))
	for _, e := range ents {
		if strings.Contains(e.Name(), "..") {
			t.Fatalf("kept file %q", e.Name())
		}
	}
}

// TestDecodeVMConfig: the record round-trips; a newer version is refused;
// an unversioned document (a Prism VM) is read leniently.
func TestDecodeVMConfig(t *testing.T) {
	rec := clusterjob.VMConfig{Version: 1, UUID: "u", Name: "web01", NumSockets: 2, CoresPerSocket: 3, VCPUs: 6,
		MemoryBytes: 3 << 30, BootType: "UEFI", Disks: []clusterjob.DiskConfig{{Disk: 0, Bus: "scsi", SizeBytes: 1 << 30}},
		NICs: []clusterjob.NICConfig{{SubnetName: "vlan10", Model: "E1000", IsConnected: true}}, SnapshotID: "s1"}
	raw, _ := json.Marshal(rec)
	got, err := clusterjob.DecodeVMConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(got)
	if string(again) != string(raw) {
		t.Fatalf("round trip:\n%s\n%s", raw, again)
	}
	if _, err := clusterjob.DecodeVMConfig([]byte(`{"version": 99}`)); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer record: %v", err)
	}
	prism := `{"Name":"db01","NumSockets":4,"MemoryBytes":1073741824,"Disks":[{"Bus":"SATA","SizeBytes":5}],"NICs":[{"SubnetName":"v20","MAC":"m"}]}`
	got, err = clusterjob.DecodeVMConfig([]byte(prism))
	if err != nil || got.Name != "db01" || got.NumSockets != 4 || got.MemoryBytes != 1<<30 || len(got.Disks) != 1 ||
		got.Disks[0].Bus != "SATA" || got.Disks[0].SizeBytes != 5 || got.NICs[0].SubnetName != "v20" || got.NICs[0].MAC != "m" {
		t.Fatalf("lenient decode: %+v %v", got, err)
	}
	for _, bad := range []string{`[1,2]`, `"x"`, `{"version": "one"}`, `{`} {
		if _, err := clusterjob.DecodeVMConfig([]byte(bad)); err == nil {
			t.Errorf("DecodeVMConfig(%s) succeeded", bad)
		}
	}
}
