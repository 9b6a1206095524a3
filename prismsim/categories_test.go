package prismsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/internal/swagger"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// categorySim starts a simulator (state in dir) with four VMs:
// a {Env: prod, qa; Tier: web}, b {Env: qa}, c (none), d {Env: prod},
// created in that order.
func categorySim(t *testing.T, dir string) (*prismsim.Sim, map[string]prismsim.VMInfo) {
	t.Helper()
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{StateDir: dir}})
	img := makeDisk(t, t.TempDir(), 4*blk, 1)
	vms := map[string]prismsim.VMInfo{}
	for _, vm := range []struct {
		name string
		cats map[string][]string
	}{
		{"a", map[string][]string{"Env": {"prod", "qa"}, "Tier": {"web"}}},
		{"b", map[string][]string{"Env": {"qa"}}},
		{"c", nil},
		{"d", nil}, // given its category afterwards, through SetVMCategories
	} {
		v, err := s.AddVM(context.Background(), vm.name, []string{img}, prismsim.VMOptions{Categories: vm.cats})
		if err != nil {
			t.Fatal(err)
		}
		vms[vm.name] = v
	}
	if err := s.SetVMCategories(context.Background(), "d", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	return s, vms
}

// refNames returns the VM names of a category/query answer's results[i].
func refNames(t *testing.T, body map[string]any, i int) []string {
	t.Helper()
	var out []string
	for _, r := range list(body, fmt.Sprintf("results[%d].kind_reference_list", i)) {
		if str(r, "kind") != "vm" || str(r, "uuid") == "" {
			t.Errorf("reference %v: want kind vm and a uuid", r)
		}
		out = append(out, str(r, "name"))
	}
	return out
}

func categoryQuery(typ string, params map[string][]string, extra ...any) map[string]any {
	b := map[string]any{"usage_type": "APPLIED_TO", "api_version": "3.1.0",
		"category_filter": map[string]any{"type": typ, "kind_list": []string{"vm"}, "params": params}}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

// TestV3Categories: VM metadata carries categories (first value per key),
// categories_mapping (every value) and use_categories_mapping in GET and
// list; category/query answers the VMs of MATCH_ANY and MATCH_ALL filters,
// pages by group_member_offset/count, and refuses malformed filters.
func TestV3Categories(t *testing.T) {
	s, vms := categorySim(t, "")
	a := newAPI(t, s)

	g := a.do("GET", "/api/nutanix/v3/vms/"+vms["a"].UUID, nil).must(t, 200)
	if str(g.body, "metadata.categories.Env") != "prod" || str(g.body, "metadata.categories.Tier") != "web" ||
		get(g.body, "metadata.use_categories_mapping") != true {
		t.Errorf("GET vm a metadata: %v", g.body["metadata"])
	}
	if m, _ := json.Marshal(get(g.body, "metadata.categories_mapping")); string(m) != `{"Env":["prod","qa"],"Tier":["web"]}` {
		t.Errorf("categories_mapping %s", m)
	}
	l := a.do("POST", "/api/nutanix/v3/vms/list", map[string]any{"kind": "vm", "length": 10}).must(t, 200)
	byName := map[string]any{}
	for _, e := range list(l.body, "entities") {
		byName[str(e, "status.name")] = e
	}
	if str(byName["b"], "metadata.categories.Env") != "qa" || len(get(byName["c"], "metadata.categories").(map[string]any)) != 0 ||
		str(byName["d"], "metadata.categories_mapping.Env[0]") != "prod" {
		t.Errorf("vms/list metadata: b %v, c %v, d %v", get(byName["b"], "metadata"), get(byName["c"], "metadata"), get(byName["d"], "metadata"))
	}

	for _, tc := range []struct {
		name, typ string
		params    map[string][]string
		want      []string
	}{
		{"any one value", "CATEGORIES_MATCH_ANY", map[string][]string{"Env": {"prod"}}, []string{"a", "d"}},
		{"any default type", "", map[string][]string{"Env": {"qa"}}, []string{"a", "b"}},
		{"any of two keys", "CATEGORIES_MATCH_ANY", map[string][]string{"Env": {"qa"}, "Tier": {"web"}}, []string{"a", "b"}},
		{"any of two values", "CATEGORIES_MATCH_ANY", map[string][]string{"Env": {"prod", "qa"}}, []string{"a", "b", "d"}},
		{"all keys", "CATEGORIES_MATCH_ALL", map[string][]string{"Env": {"qa"}, "Tier": {"web"}}, []string{"a"}},
		{"all, one of the values per key", "CATEGORIES_MATCH_ALL", map[string][]string{"Env": {"prod", "qa"}}, []string{"a", "b", "d"}},
		{"all, prod and web", "CATEGORIES_MATCH_ALL", map[string][]string{"Env": {"prod"}, "Tier": {"web"}}, []string{"a"}},
		{"unknown value", "CATEGORIES_MATCH_ANY", map[string][]string{"Env": {"dev"}}, nil},
		{"unknown key", "CATEGORIES_MATCH_ANY", map[string][]string{"Owner": {"prod"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do("POST", "/api/nutanix/v3/category/query", categoryQuery(tc.typ, tc.params)).must(t, 200)
			got := refNames(t, r.body, 0)
			if !slices.Equal(got, tc.want) || str(r.body, "results[0].kind") != "vm" ||
				num(r.body, "results[0].filtered_entity_count") != int64(len(tc.want)) || num(r.body, "metadata.total_matches") != int64(len(tc.want)) ||
				str(r.body, "metadata.usage_type") != "APPLIED_TO" {
				t.Errorf("query %v: %v, want %v: %s", tc.params, got, tc.want, r.raw)
			}
		})
	}

	// Paging: one member per page.
	var pages []string
	for off := 0; off < 4; off++ {
		r := a.do("POST", "/api/nutanix/v3/category/query", categoryQuery("CATEGORIES_MATCH_ANY",
			map[string][]string{"Env": {"prod", "qa"}}, "group_member_count", 1, "group_member_offset", off)).must(t, 200)
		if num(r.body, "results[0].filtered_entity_count") != 3 || num(r.body, "metadata.group_member_offset") != int64(off) ||
			num(r.body, "metadata.group_member_count") != 1 {
			t.Errorf("page at %d: %s", off, r.raw)
		}
		pages = append(pages, strings.Join(refNames(t, r.body, 0), "+"))
	}
	if want := []string{"a", "b", "d", ""}; !slices.Equal(pages, want) {
		t.Errorf("pages %q, want %q", pages, want)
	}

	// Malformed queries.
	a.do("POST", "/api/nutanix/v3/category/query", map[string]any{"usage_type": "APPLIED_TO"}).must(t, 422)
	a.do("POST", "/api/nutanix/v3/category/query", categoryQuery("CATEGORIES_MATCH_SOME", map[string][]string{"Env": {"qa"}})).must(t, 422)
	a.do("POST", "/api/nutanix/v3/category/query", categoryQuery("", map[string][]string{"Env": {"qa"}}, "usage_type", "BOTH")).must(t, 422)
	a.do("POST", "/api/nutanix/v3/category/query", categoryQuery("", map[string][]string{"Env": {"qa"}}, "group_member_count", 0)).must(t, 422)

	// Category values: GET of an assigned one, PUT of a new one.
	if r := a.do("GET", "/api/nutanix/v3/categories/Tier/web", nil).must(t, 200); str(r.body, "name") != "Tier" || str(r.body, "value") != "web" {
		t.Errorf("GET categories/Tier/web: %s", r.raw)
	}
	a.do("GET", "/api/nutanix/v3/categories/Tier/db", nil).must(t, 404)
	a.do("PUT", "/api/nutanix/v3/categories/Tier/db", map[string]any{"value": "db", "description": "databases"}).must(t, 200)
	if r := a.do("GET", "/api/nutanix/v3/categories/Tier/db", nil).must(t, 200); str(r.body, "description") != "databases" {
		t.Errorf("GET categories/Tier/db after PUT: %s", r.raw)
	}
}

// TestV3CategoriesMatchSwagger validates category/query and category value
// answers against the Prism Central v3 swagger, strictly.
func TestV3CategoriesMatchSwagger(t *testing.T) {
	doc, err := swagger.Load("testdata/v3-pc-swagger-categories.json")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := categorySim(t, "")
	a := newAPI(t, s)
	in := categoryQuery("CATEGORIES_MATCH_ANY", map[string][]string{"Env": {"prod"}}, "group_member_count", 10, "group_member_offset", 0)
	raw, _ := json.Marshal(in)
	var inV any
	json.Unmarshal(raw, &inV)
	for _, e := range doc.Validate("category_query_input", inV, swagger.Options{Strict: true}) {
		t.Errorf("the request of this test is not a category_query_input: %s", e)
	}
	for _, c := range []struct {
		name, method, path string
		body               any
		code               int
		def                string
	}{
		{"category/query", "POST", "/api/nutanix/v3/category/query", in, 200, "category_query_response"},
		{"category/query 422", "POST", "/api/nutanix/v3/category/query", map[string]any{}, 422, "category_status"},
		{"categories/{name}/{value}", "GET", "/api/nutanix/v3/categories/Env/prod", nil, 200, "category_value_status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := a.do(c.method, c.path, c.body).must(t, c.code)
			var v any
			if err := json.Unmarshal(r.raw, &v); err != nil {
				t.Fatal(err)
			}
			for _, e := range doc.Validate(c.def, v, swagger.Options{Strict: true}) {
				t.Errorf("%s: %s", c.def, e)
			}
		})
	}
}

// TestV4Categories: the prism categories list with $filter on key and
// value, paging and $expand; a category's detailed associations name its
// VMs; vmm VMs carry their categories' extIds; extIds and assignments
// survive a restart.
func TestV4Categories(t *testing.T) {
	dir := t.TempDir()
	s, vms := categorySim(t, dir)
	a := newAPI(t, s)
	const base = "/api/prism/v4.0/config/categories"

	all := a.do("GET", base, nil).must(t, 200)
	if str(all.body, "$objectType") != "prism.v4.config.ListCategoriesApiResponse" || num(all.body, "metadata.totalAvailableResults") != 3 {
		t.Fatalf("list: %s", all.raw)
	}
	ids := map[string]string{} // key:value → extId
	for _, c := range list(all.body, "data") {
		if str(c, "$objectType") != "prism.v4.config.Category" || str(c, "type") != "USER" || str(c, "extId") == "" {
			t.Errorf("category %v", c)
		}
		if get(c, "detailedAssociations") != nil || get(c, "associations") != nil {
			t.Errorf("associations without $expand: %v", c)
		}
		ids[str(c, "key")+":"+str(c, "value")] = str(c, "extId")
	}
	if len(ids) != 3 || ids["Env:prod"] == "" || ids["Env:qa"] == "" || ids["Tier:web"] == "" {
		t.Fatalf("categories %v", ids)
	}

	filter := func(f string) []string {
		r := a.do("GET", base+"?$filter="+url.QueryEscape(f), nil).must(t, 200)
		var out []string
		for _, c := range list(r.body, "data") {
			out = append(out, str(c, "key")+":"+str(c, "value"))
		}
		return out
	}
	for f, want := range map[string][]string{
		"key eq 'Env' and value eq 'prod'": {"Env:prod"},
		"key eq 'Env'":                     {"Env:prod", "Env:qa"},
		"value eq 'web'":                   {"Tier:web"},
		"key eq 'Env' and value eq 'dev'":  nil,
		"extId eq '" + ids["Env:qa"] + "'": {"Env:qa"},
	} {
		if got := filter(f); !slices.Equal(got, want) {
			t.Errorf("$filter=%s: %v, want %v", f, got, want)
		}
	}

	// Paging: $limit 2 → pages of 2 and 1.
	p1 := a.do("GET", base+"?$limit=2&$page=1", nil).must(t, 200)
	if len(list(p1.body, "data")) != 1 || num(p1.body, "metadata.totalAvailableResults") != 3 || str(p1.body, "data[0].key") != "Tier" {
		t.Errorf("page 1 of 2: %s", p1.raw)
	}
	a.do("GET", base+"?$limit=101", nil).must(t, 400)

	// Detailed associations: the VMs of Env:prod, in creation order.
	d := a.do("GET", base+"/"+ids["Env:prod"]+"?$expand=detailedAssociations", nil).must(t, 200)
	if str(d.body, "$objectType") != "prism.v4.config.GetCategoryApiResponse" {
		t.Errorf("get: %s", d.raw)
	}
	var got []string
	for _, as := range list(d.body, "data.detailedAssociations") {
		if str(as, "resourceType") != "VM" || str(as, "categoryId") != ids["Env:prod"] {
			t.Errorf("association %v", as)
		}
		got = append(got, str(as, "resourceId"))
	}
	if want := []string{vms["a"].UUID, vms["d"].UUID}; !slices.Equal(got, want) {
		t.Errorf("detailedAssociations of Env:prod: %v, want %v (a, d)", got, want)
	}
	sum := a.do("GET", base+"/"+ids["Env:qa"]+"?$expand=associations", nil).must(t, 200)
	if num(sum.body, "data.associations[0].count") != 2 || str(sum.body, "data.associations[0].resourceType") != "VM" {
		t.Errorf("associations of Env:qa: %s", sum.raw)
	}
	a.do("GET", base+"/00000000-0000-4000-8000-000000000000", nil).must(t, 404)

	// vmm: a VM's categories are references by extId.
	vmCats := func(name string) []string {
		r := a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+vms[name].UUID, nil).must(t, 200)
		var out []string
		for _, c := range list(r.body, "data.categories") {
			out = append(out, str(c, "extId"))
		}
		return out
	}
	if got, want := vmCats("a"), []string{ids["Env:prod"], ids["Env:qa"], ids["Tier:web"]}; !slices.Equal(got, want) {
		t.Errorf("vm a categories %v, want %v", got, want)
	}
	if got := vmCats("c"); len(got) != 0 {
		t.Errorf("vm c categories %v, want none", got)
	}
	l := a.do("GET", "/api/vmm/v4.0/ahv/config/vms?$filter="+url.QueryEscape("name eq 'b'"), nil).must(t, 200)
	if str(l.body, "data[0].categories[0].extId") != ids["Env:qa"] || len(list(l.body, "data[0].categories")) != 1 {
		t.Errorf("vm b in the list: %s", l.raw)
	}

	// A category whose last VM loses it stays defined; a restart keeps
	// assignments and extIds.
	if err := s.SetVMCategories(context.Background(), "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVMCategories(context.Background(), "nope", nil); err == nil {
		t.Error("SetVMCategories of an unknown VM succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := simtest.Start(t, simtest.Options{Options: prismsim.Options{StateDir: dir}})
	a = newAPI(t, s2)
	if got, want := vmCats("a"), []string{ids["Env:prod"], ids["Env:qa"], ids["Tier:web"]}; !slices.Equal(got, want) {
		t.Errorf("after a restart, vm a categories %v, want %v", got, want)
	}
	if got := vmCats("b"); len(got) != 0 {
		t.Errorf("vm b kept categories %v after they were removed", got)
	}
	q := a.do("GET", base+"/"+ids["Env:qa"]+"?$expand=detailedAssociations", nil).must(t, 200)
	if as := list(q.body, "data.detailedAssociations"); len(as) != 1 || str(as[0], "resourceId") != vms["a"].UUID {
		t.Errorf("Env:qa after b lost it and a restart: %s", q.raw)
	}
}

// TestAddVMRefusesBadCategories: an empty key or value is refused.
func TestAddVMRefusesBadCategories(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	img := makeDisk(t, t.TempDir(), 4*blk, 1)
	for _, cats := range []map[string][]string{{"": {"x"}}, {"Env": {}}, {"Env": {""}}} {
		if _, err := s.AddVM(context.Background(), "bad", []string{img}, prismsim.VMOptions{Categories: cats}); err == nil {
			t.Errorf("AddVM with categories %q succeeded", cats)
		}
	}
}
