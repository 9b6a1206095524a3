package restore_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/restore"
)

// TestParseConfigReadsBackupConfig: ParseConfig matches keys loosely, so a
// field the backup renames or drops would silently take its default. Every
// field of restore's VMConfig (and of its disks and NICs) must be one that
// backup.VMConfig records, and must come back with the value the backup
// wrote. (backup.TestRestoreFromBackup checks the same end to end.)
func TestParseConfigReadsBackupConfig(t *testing.T) {
	var bc backup.VMConfig
	n := 0
	fillDistinct(reflect.ValueOf(&bc).Elem(), &n)
	raw, err := json.Marshal(bc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := restore.ParseConfig(&engine.RestorePoint{VM: "other", VMUUID: "other-uuid", Config: raw})
	if err != nil {
		t.Fatal(err)
	}
	sameFields(t, "VMConfig", reflect.ValueOf(*got), reflect.ValueOf(bc))
}

// fillDistinct sets every field of v to a distinct non-zero value (strings
// upper case, as ParseConfig normalises some), slices to one element.
func fillDistinct(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("V%d", *n))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillDistinct(v.Field(i), n)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillDistinct(v.Index(0), n)
	default:
		panic("fillDistinct: unhandled kind " + v.Kind().String())
	}
}

// sameFields requires every field of r (restore's view) to exist in b
// (the backup's record) under the same name with the same value.
func sameFields(t *testing.T, path string, r, b reflect.Value) {
	t.Helper()
	for i := range r.NumField() {
		f := r.Type().Field(i)
		name := path + "." + f.Name
		bf := b.FieldByName(f.Name)
		if !bf.IsValid() {
			t.Errorf("restore reads %s, which backup.VMConfig does not record", name)
			continue
		}
		rf := r.Field(i)
		switch rf.Kind() {
		case reflect.Struct:
			sameFields(t, name, rf, bf)
		case reflect.Slice:
			if rf.Len() != bf.Len() {
				t.Errorf("%s: %d entries read, %d recorded", name, rf.Len(), bf.Len())
				continue
			}
			for j := range rf.Len() {
				sameFields(t, fmt.Sprintf("%s[%d]", name, j), rf.Index(j), bf.Index(j))
			}
		default:
			if rf.Interface() != bf.Interface() {
				t.Errorf("%s: read %v, the backup recorded %v", name, rf.Interface(), bf.Interface())
			}
		}
	}
}
