package clusterjob_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
)

// TestJournalSealedInEncryptedRepository: in an encrypted repository the
// journal's entries and kept records name no VM, UUID or object in the
// clear, and read back whole; a journal opened without the key says so.
func TestJournalSealedInEncryptedRepository(t *testing.T) {
	pw := []byte("pw")
	dir := enginetest.Init(t, engine.InitOptions{Password: pw, KDF: engine.KDFParams{Time: 1, MemoryK: 1024, Threads: 1}})
	repo := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Password: pw})
	defer repo.Close()
	j, err := clusterjob.RepositoryJournal(repo)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := j.Begin("backup", fixedAPI{api: nutanix.APIV4}, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := clusterjob.Object{Kind: clusterjob.KindSnapshot, Name: jb.Name("", "payroll-db"), VMUUID: "vm-uuid-payroll", VM: "payroll-db", ID: "snap-1"}
	if err := jb.Record(o); err != nil {
		t.Fatal(err)
	}
	type ref struct{ VM string }
	if err := j.Keep("ref-vm-uuid-payroll", []clusterjob.Object{o}, ref{VM: "payroll-db"}); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(j.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		b, _ := os.ReadFile(path)
		for _, w := range []string{"payroll", "vm-uuid"} {
			if bytes.Contains(b, []byte(w)) || bytes.Contains([]byte(path), []byte(w)) {
				t.Errorf("%s holds %q in the clear", path, w)
			}
		}
		return nil
	})
	pending, err := j.Pending()
	if err != nil || len(pending) != 1 || pending[0].Name != o.Name || pending[0].VMUUID != o.VMUUID {
		t.Fatalf("pending %+v %v", pending, err)
	}
	var got ref
	if ok, err := j.Kept("ref-vm-uuid-payroll", &got); !ok || err != nil || got.VM != "payroll-db" {
		t.Fatalf("kept record %+v %v %v", got, ok, err)
	}
	plain, err := clusterjob.OpenJournal(j.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Pending(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("password")) {
		t.Fatalf("a journal read without the key: %v, want an error asking for the password", err)
	}
	if err := jb.Forget(o); err != nil {
		t.Fatal(err)
	}
}
