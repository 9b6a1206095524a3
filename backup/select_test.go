package backup_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/nutanix"
)

// categoryInventory answers VMsInCategories from a table (category →
// UUIDs) and counts the calls; the other Inventory methods are not used.
type categoryInventory struct {
	nutanix.Inventory
	members map[nutanix.Category][]string
	err     error
	calls   int
}

func (c *categoryInventory) VMsInCategories(_ context.Context, cats []nutanix.Category) ([]string, error) {
	c.calls++
	if c.err != nil {
		return nil, c.err
	}
	var out []string
	for _, cat := range cats {
		out = append(out, c.members[cat]...)
	}
	return out, nil
}

// TestSelectCategories: VMs of the patterns OR of the categories, minus
// the excluded ones; a category nobody carries is reported like a pattern
// that matches nothing; a VM the cluster names but the listing lacks is
// ignored; without categories nothing is asked of the cluster.
func TestSelectCategories(t *testing.T) {
	all := []nutanix.VM{{UUID: "u1", Name: "web01"}, {UUID: "u2", Name: "web02"}, {UUID: "u3", Name: "db01"}, {UUID: "u4", Name: "db02"}}
	prod, qa, dev := nutanix.Category{Key: "Env", Value: "prod"}, nutanix.Category{Key: "Env", Value: "qa"}, nutanix.Category{Key: "Env", Value: "dev"}
	gone := nutanix.Category{Key: "Env", Value: "gone"}
	inv := &categoryInventory{members: map[nutanix.Category][]string{
		prod: {"U3", "u4"}, // UUIDs compare without case
		qa:   {"u2"},
		gone: {"u9"}, // a VM that is not listed
	}}
	names := func(vs []nutanix.VM) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name      string
		vms, ex   []string
		cats      []nutanix.Category
		want      string
		unmatched []string
		calls     int
	}{
		{"nothing given: all", nil, nil, nil, "db01,db02,web01,web02", nil, 0},
		{"patterns only", []string{"web*"}, nil, nil, "web01,web02", nil, 0},
		{"category only", nil, nil, []nutanix.Category{prod}, "db01,db02", nil, 1},
		{"two categories", nil, nil, []nutanix.Category{prod, qa}, "db01,db02,web02", nil, 2},
		{"pattern or category", []string{"web01"}, nil, []nutanix.Category{prod}, "db01,db02,web01", nil, 1},
		{"overlap counted once", []string{"db*"}, nil, []nutanix.Category{prod}, "db01,db02", nil, 1},
		{"exclude wins", []string{"web01"}, []string{"db02", "web01"}, []nutanix.Category{prod}, "db01", nil, 1},
		{"excluded category VMs still match", nil, []string{"db*"}, []nutanix.Category{prod}, "", nil, 1},
		{"unmatched category", nil, nil, []nutanix.Category{prod, dev}, "db01,db02", []string{"category Env:dev"}, 2},
		{"unlisted VM ignored", nil, nil, []nutanix.Category{gone}, "", []string{"category Env:gone"}, 1},
		{"unmatched pattern and category", []string{"nope*"}, nil, []nutanix.Category{dev}, "", []string{"nope*", "category Env:dev"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv.calls = 0
			got, un, err := backup.Select(context.Background(), inv, all, tc.vms, tc.ex, tc.cats)
			if err != nil {
				t.Fatal(err)
			}
			if names(got) != tc.want || !slices.Equal(un, tc.unmatched) || inv.calls != tc.calls {
				t.Errorf("Select(%v, %v, %v) = %q, unmatched %q, %d calls; want %q, %q, %d calls",
					tc.vms, tc.ex, tc.cats, names(got), un, inv.calls, tc.want, tc.unmatched, tc.calls)
			}
		})
	}

	boom := errors.New("boom")
	if _, _, err := backup.Select(context.Background(), &categoryInventory{err: boom}, all, nil, nil, []nutanix.Category{prod}); !errors.Is(err, boom) ||
		!strings.Contains(err.Error(), "Env:prod") {
		t.Errorf("a failing VMsInCategories: %v", err)
	}
	if _, _, err := backup.Select(context.Background(), inv, all, nil, nil, []nutanix.Category{{Key: "Env"}}); err == nil {
		t.Error("Select accepted a category without a value")
	}
	if err := (&backup.Options{Categories: []nutanix.Category{{Value: "prod"}}}).Validate(); err == nil {
		t.Error("Options.Validate accepted a category without a key")
	}
}

// TestBackupByCategory backs up, through backup.Run, only the VMs of one
// category (v3 over REST, v4 over iSCSI): exactly those get a restore
// point equal to their disks, and a category no VM carries fails the run
// before anything is created.
func TestBackupByCategory(t *testing.T) {
	for _, tc := range []struct {
		api   nutanix.APIVersion
		iscsi bool
		path  backup.DataPath
	}{
		{nutanix.APIV3, false, backup.PathREST},
		{nutanix.APIV4, true, backup.PathAuto},
	} {
		t.Run(string(tc.api), func(t *testing.T) {
			f := newFixture(t, fixtureOptions{API: tc.api, ISCSI: tc.iscsi, VMs: []string{"web01", "db01", "db02"}})
			ctx := context.Background()
			if err := f.sim.SetVMCategories(ctx, "db01", map[string][]string{"Env": {"prod"}}); err != nil {
				t.Fatal(err)
			}
			if err := f.sim.SetVMCategories(ctx, "db02", map[string][]string{"Env": {"qa", "prod"}}); err != nil {
				t.Fatal(err)
			}
			if err := f.sim.SetVMCategories(ctx, "web01", map[string][]string{"Env": {"qa"}}); err != nil {
				t.Fatal(err)
			}
			prod := nutanix.Category{Key: "Env", Value: "prod"}
			rep := f.run(backup.Options{DataPath: tc.path, Categories: []nutanix.Category{prod}, Exclude: []string{"nothing-*"}})
			var got []string
			for _, v := range rep.VMs {
				got = append(got, v.VM)
			}
			if !slices.Equal(got, []string{"db01", "db02"}) {
				t.Fatalf("backed up %v, want the Env:prod VMs db01, db02", got)
			}
			for i, v := range rep.VMs {
				f.checkDisks(v, f.vms[i+1])
			}
			rps, err := f.repo.ListRestorePoints(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, rp := range rps {
				if rp.VM == "web01" {
					t.Errorf("web01 (Env:qa) has restore point %s", rp.Name())
				}
			}

			before := f.sim.Objects()
			rep2, err := backup.Run(ctx, f.repo, f.cl, f.opts(backup.Options{DataPath: tc.path,
				Categories: []nutanix.Category{prod, {Key: "Env", Value: "dev"}}}))
			if err == nil || !strings.Contains(err.Error(), "no VM matches category Env:dev") || len(rep2.VMs) != 0 {
				t.Fatalf("a category no VM carries: %v (report %+v)", err, rep2)
			}
			if after := f.sim.Objects(); len(after.Snapshots) != len(before.Snapshots) {
				t.Errorf("the failed selection left %d snapshots, had %d", len(after.Snapshots), len(before.Snapshots))
			}
			if n, _ := f.repo.ListRestorePoints(ctx, ""); len(n) != len(rps) {
				t.Errorf("the failed selection stored restore points: %d, had %d", len(n), len(rps))
			}
		})
	}
}
