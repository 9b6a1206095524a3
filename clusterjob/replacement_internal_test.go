package clusterjob

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRecordReplacementFailed: a replacement state the journal could not
// write changes neither the caller's object nor the job's own copy, which
// a teardown acts on: a commit never written is undone, not finished. And
// the job's copy shares nothing with the caller's.
func TestRecordReplacementFailed(t *testing.T) {
	j, err := OpenJournal(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := j.newJobDir("restore", jobInfo{})
	if err != nil {
		t.Fatal(err)
	}
	jb := &Job{j: j, d: d, o: JobOptions{}.withDefaults(), live: map[string]Object{}}
	o := Object{Kind: KindVM, Name: "ahvfs-restore-x", ID: "new", API: APIXen, Replaces: &Replacement{UUID: "orig", WasOn: true}}
	if err := jb.Record(o); err != nil {
		t.Fatal(err)
	}
	o.Replaces.VDIs = append(o.Replaces.VDIs, "changed by the caller")
	if r := jb.live[key(o)].Replaces; len(r.VDIs) != 0 {
		t.Fatalf("the job's copy changed with the caller's: %+v", r)
	}
	o.Replaces.VDIs = nil

	// The job's directory is gone (a full or broken disk): no write.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	jb.d.dir = filepath.Join(blocker, "job")
	err = jb.recordReplacement(&o, func(r *Replacement) { r.Committed, r.VDIs = true, []string{"vdi"} })
	if err == nil {
		t.Fatal("the write into a missing directory succeeded")
	}
	if o.Replaces.Committed || len(o.Replaces.VDIs) != 0 {
		t.Errorf("the caller's object took the unwritten state: %+v", o.Replaces)
	}
	if r := jb.live[key(o)].Replaces; r.Committed || len(r.VDIs) != 0 {
		t.Errorf("the job's copy took the unwritten state: %+v", r)
	}
}
