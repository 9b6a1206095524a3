package nutanix_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestSimCategories runs the category suite on the v3 and v4 backends:
// VM.Categories from ListVMs and GetVM, and VMsInCategories, with list
// pages of two so that category/query (v3) and the categories list (v4)
// are followed over several pages.
func TestSimCategories(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) { categorySuite(t, api) })
	}
}

func categorySuite(t *testing.T, api nutanix.APIVersion) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	img := diskImage(t, 1<<20, 1)
	want := map[string]map[string][]string{
		"vm-a": {"Env": {"prod", "qa"}, "Tier": {"web"}},
		"vm-b": {"Env": {"qa"}},
		"vm-c": nil,
		"vm-d": {"Env": {"prod"}, "Owner": {"team:db"}},
		"vm-e": {"Env": {"prod"}},
	}
	uuid := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		v, err := s.AddVM(ctx, name, []string{img}, prismsim.VMOptions{Categories: want[name]})
		if err != nil {
			t.Fatal(err)
		}
		uuid[name] = v.UUID
	}
	defer nutanix.SetPageSizes(2, 2)()
	c := simClient(t, s, api)

	vms, err := c.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != len(want) {
		t.Fatalf("ListVMs: %d VMs, want %d", len(vms), len(want))
	}
	for _, v := range vms {
		if !sameCategories(v.Categories, want[v.Name]) {
			t.Errorf("ListVMs: %s has categories %v, want %v", v.Name, v.Categories, want[v.Name])
		}
	}
	for _, name := range []string{"vm-a", "vm-c", "vm-d"} {
		v, err := c.GetVM(ctx, uuid[name])
		if err != nil {
			t.Fatal(err)
		}
		if !sameCategories(v.Categories, want[name]) {
			t.Errorf("GetVM: %s has categories %v, want %v", name, v.Categories, want[name])
		}
	}
	if a, _ := c.GetVM(ctx, uuid["vm-a"]); !a.HasCategory(nutanix.Category{Key: "Env", Value: "qa"}) ||
		a.HasCategory(nutanix.Category{Key: "Env", Value: "dev"}) || fmt.Sprint(a.CategoryList()) != "[Env:prod Env:qa Tier:web]" {
		t.Errorf("HasCategory/CategoryList of vm-a: %v", a.CategoryList())
	}

	cat := func(s string) nutanix.Category {
		c, err := nutanix.ParseCategory(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		cats []string
		want []string
	}{
		{[]string{"Env:prod"}, []string{"vm-a", "vm-d", "vm-e"}}, // three VMs: two pages
		{[]string{"Env:qa"}, []string{"vm-a", "vm-b"}},
		{[]string{"Tier:web", "Env:qa"}, []string{"vm-a", "vm-b"}},
		{[]string{"Env:prod", "Env:qa"}, []string{"vm-a", "vm-b", "vm-d", "vm-e"}},
		{[]string{"Owner:team:db"}, []string{"vm-d"}},
		{[]string{"Env:dev"}, nil},
		{[]string{"Nope:x", "Tier:web"}, []string{"vm-a"}},
		{nil, nil},
	} {
		var cats []nutanix.Category
		for _, s := range tc.cats {
			cats = append(cats, cat(s))
		}
		ids, err := c.VMsInCategories(ctx, cats)
		if err != nil {
			t.Errorf("VMsInCategories(%v): %v", tc.cats, err)
			continue
		}
		var got []string
		for _, id := range ids {
			for n, u := range uuid {
				if u == id {
					got = append(got, n)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) || len(ids) != len(got) {
			t.Errorf("VMsInCategories(%v) = %v (%d ids), want %v", tc.cats, got, len(ids), tc.want)
		}
	}
	if _, err := c.VMsInCategories(ctx, []nutanix.Category{{Key: "Env"}}); err == nil || !strings.Contains(err.Error(), "must not be empty") {
		t.Errorf("VMsInCategories with an empty value: %v", err)
	}

	// A change on the cluster shows at the next call (nothing is cached
	// across calls).
	if err := s.SetVMCategories(ctx, "vm-c", map[string][]string{"Env": {"dev"}}); err != nil {
		t.Fatal(err)
	}
	ids, err := c.VMsInCategories(ctx, []nutanix.Category{cat("Env:dev")})
	if err != nil || len(ids) != 1 || ids[0] != uuid["vm-c"] {
		t.Errorf("after SetVMCategories: %v %v", ids, err)
	}
	if v, err := c.GetVM(ctx, uuid["vm-c"]); err != nil || !sameCategories(v.Categories, map[string][]string{"Env": {"dev"}}) {
		t.Errorf("GetVM after SetVMCategories: %v %v", v.Categories, err)
	}
}

// sameCategories compares two key → values maps, the order of values
// aside.
func sameCategories(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			return false
		}
		for _, v := range va {
			if !slices.Contains(vb, v) {
				return false
			}
		}
	}
	return true
}

// TestParseCategory: KEY:VALUE, the value may hold colons; missing parts
// are refused with a message that says which.
func TestParseCategory(t *testing.T) {
	for _, tc := range []struct {
		in       string
		key, val string
		err      string
	}{
		{"Env:prod", "Env", "prod", ""},
		{" Env : prod ", "Env", "prod", ""},
		{"Owner:team:db", "Owner", "team:db", ""},
		{"Env", "", "", "no colon"},
		{"", "", "", "no colon"},
		{":prod", "", "", "the key is empty"},
		{"Env:", "", "", "the value is empty"},
		{" : ", "", "", "key and value are empty"},
	} {
		c, err := nutanix.ParseCategory(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "KEY:VALUE") {
				t.Errorf("ParseCategory(%q) = %v, %v; want an error saying %q", tc.in, c, err, tc.err)
			}
			continue
		}
		if err != nil || c.Key != tc.key || c.Value != tc.val || c.String() != tc.key+":"+tc.val {
			t.Errorf("ParseCategory(%q) = %+v, %v; want %s:%s", tc.in, c, err, tc.key, tc.val)
		}
	}
}
