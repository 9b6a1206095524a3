package prismsim

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- categories ----------
//
// A category is a key:value pair (Env:prod). A VM carries zero or more, one
// or several values per key (v3 categories_mapping). The simulator keeps
// every category that was ever assigned or created (as Prism does: a
// category outlives its last association) in model.Categories. A
// category's v4 extId is derived from its key and value, so it is the same
// after a restart and in every test.

// category is a category value known to the simulated Prism Central.
type category struct {
	Key         string    `json:"key"`
	Value       string    `json:"value"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

// categoryExtID is the stable extId of key:value: a name-based UUID
// (version 5 layout) over a SHA-256 of both.
func categoryExtID(key, value string) string {
	h := sha256.Sum256([]byte("prismsim-category\x00" + key + "\x00" + value))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (c *category) extID() string { return categoryExtID(c.Key, c.Value) }

// normCategories checks cats (a key needs at least one value; keys and
// values are not empty) and returns a copy with each key's values in the
// given order without repeats (nil when cats is empty).
func normCategories(cats map[string][]string) (map[string][]string, error) {
	if len(cats) == 0 {
		return nil, nil
	}
	out := map[string][]string{}
	for k, vs := range cats {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("category with an empty key")
		}
		if len(vs) == 0 {
			return nil, fmt.Errorf("category %s has no value", k)
		}
		for _, v := range vs {
			if strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("category %s has an empty value", k)
			}
			if !slices.Contains(out[k], v) {
				out[k] = append(out[k], v)
			}
		}
	}
	return out, nil
}

// ensureCategoriesLocked records every key:value of cats as a category.
func (m *model) ensureCategoriesLocked(cats map[string][]string) {
	for k, vs := range cats {
		for _, v := range vs {
			id := categoryExtID(k, v)
			if m.Categories[id] == nil {
				m.Categories[id] = &category{Key: k, Value: v, Created: time.Now()}
			}
		}
	}
}

func (m *model) sortedCategories() []*category {
	out := make([]*category, 0, len(m.Categories))
	for _, c := range m.Categories {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// hasCategory reports whether v carries key:value.
func (v *vm) hasCategory(key, value string) bool { return slices.Contains(v.Categories[key], value) }

// vmsWithCategory lists the VMs carrying c, in creation order.
func (m *model) vmsWithCategory(c *category) []*vm {
	var out []*vm
	for _, v := range m.sortedVMs() {
		if v.hasCategory(c.Key, c.Value) {
			out = append(out, v)
		}
	}
	return out
}

// SetVMCategories replaces the categories of the VM named vmName (or with
// that uuid): key → values, as an administrator assigning them in Prism
// would. Nil or empty removes them all. Categories not seen before are
// created.
func (s *Sim) SetVMCategories(_ context.Context, vmName string, cats map[string][]string) error {
	nc, err := normCategories(cats)
	if err != nil {
		return fmt.Errorf("prismsim: set categories of %s: %w", vmName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vmByNameOrUUIDLocked(vmName)
	if v == nil {
		return fmt.Errorf("prismsim: set categories of %s: %w", vmName, ErrNotFound)
	}
	s.m.ensureCategoriesLocked(nc)
	v.Categories = nc
	v.SpecVersion++
	v.Updated = time.Now()
	s.save()
	return nil
}

// ---------- v3 ----------

// v3VMCategories fills a VM's metadata.categories (the first value of each
// key), categories_mapping (every value) and use_categories_mapping.
func v3VMCategories(meta obj, v *vm) {
	single, mapping := obj{}, obj{}
	for k, vs := range v.Categories {
		single[k] = vs[0]
		mapping[k] = slices.Clone(vs)
	}
	meta["categories"] = single
	meta["categories_mapping"] = mapping
	meta["use_categories_mapping"] = true
}

// categoryQueryIn is the body of POST category/query (category_query_input).
type categoryQueryIn struct {
	UsageType      string `json:"usage_type"`
	CategoryFilter *struct {
		Type     string              `json:"type"`
		KindList []string            `json:"kind_list"`
		Params   map[string][]string `json:"params"`
	} `json:"category_filter"`
	GroupMemberCount  *int   `json:"group_member_count"`
	GroupMemberOffset *int   `json:"group_member_offset"`
	APIVersion        string `json:"api_version"`
}

// v3CategoryQuery answers POST category/query: for usage_type APPLIED_TO,
// one result per kind asked (only "vm" has members here) listing the VMs
// that carry any (CATEGORIES_MATCH_ANY) or, for every key, one of the
// values (CATEGORIES_MATCH_ALL) of params, in creation order, one page of
// group_member_count (default 20, at most 500) from group_member_offset.
// USED_IN (policies) has no results: no policies are simulated.
func (s *Sim) v3CategoryQuery(w http.ResponseWriter, r *http.Request) {
	var in categoryQueryIn
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	const kind = "category"
	ut := in.UsageType
	if ut == "" {
		ut = "APPLIED_TO"
	}
	if ut != "APPLIED_TO" && ut != "USED_IN" {
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR", fmt.Sprintf("usage_type %q is not one of APPLIED_TO, USED_IN", in.UsageType))
		return
	}
	f := in.CategoryFilter
	if f == nil || f.Params == nil {
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR", "category_filter.params is a required property")
		return
	}
	matchAll := false
	switch f.Type {
	case "", "CATEGORIES_MATCH_ANY":
	case "CATEGORIES_MATCH_ALL":
		matchAll = true
	default:
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR",
			fmt.Sprintf("category_filter.type %q is not one of CATEGORIES_MATCH_ALL, CATEGORIES_MATCH_ANY", f.Type))
		return
	}
	off, count := 0, v3DefaultLength
	if in.GroupMemberOffset != nil {
		off = *in.GroupMemberOffset
	}
	if in.GroupMemberCount != nil {
		count = *in.GroupMemberCount
	}
	if off < 0 || count < 1 {
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR", "group_member_offset must be >= 0 and group_member_count >= 1")
		return
	}
	count = min(count, v3MaxLength)
	kinds := f.KindList
	if len(kinds) == 0 {
		kinds = []string{"vm"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	results := []obj{}
	total := 0
	if ut == "APPLIED_TO" {
		for _, k := range kinds {
			var match []*vm
			if k == "vm" {
				for _, v := range s.m.sortedVMs() {
					if v.matchesCategories(f.Params, matchAll) {
						match = append(match, v)
					}
				}
			}
			refs := []obj{}
			for _, v := range match[min(off, len(match)):min(off+count, len(match))] {
				refs = append(refs, obj{"kind": "vm", "uuid": v.UUID, "name": v.Name})
			}
			total += len(match)
			results = append(results, obj{"kind": k, "kind_reference_list": refs,
				"filtered_entity_count": len(match), "total_entity_count": len(match)})
		}
	}
	simkit.WriteJSON(w, http.StatusOK, obj{"api_version": "3.1", "results": results,
		"metadata": obj{"total_matches": total, "usage_type": ut, "group_member_offset": off, "group_member_count": count}})
}

// matchesCategories reports whether v carries, for any key of params (all
// keys with all), one of its values. Empty params match nothing.
func (v *vm) matchesCategories(params map[string][]string, all bool) bool {
	if len(params) == 0 {
		return false
	}
	for k, vs := range params {
		hit := slices.ContainsFunc(vs, func(val string) bool { return v.hasCategory(k, val) })
		if hit && !all {
			return true
		}
		if !hit && all {
			return false
		}
	}
	return all
}

// v3Category renders a category value (category_value_status).
func v3Category(c *category) obj {
	return obj{"api_version": "3.1", "name": c.Key, "value": c.Value, "description": c.Description, "system_defined": false}
}

// v3PutCategoryValue creates or updates key:value (PUT
// categories/{name}/{value}, body {value, description}).
func (s *Sim) v3PutCategoryValue(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Value       string `json:"value"`
		Description string `json:"description"`
	}
	if !s.decodeJSON(w, r, &in, false) {
		return
	}
	key, val := r.PathValue("name"), r.PathValue("value")
	if in.Value != "" && in.Value != val {
		v3Error(w, http.StatusUnprocessableEntity, "category", "VALIDATION_ERROR", fmt.Sprintf("value %q in the body differs from %q in the path", in.Value, val))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.ensureCategoriesLocked(map[string][]string{key: {val}})
	c := s.m.Categories[categoryExtID(key, val)]
	c.Description = in.Description
	s.save()
	simkit.WriteJSON(w, http.StatusOK, v3Category(c))
}

// v3GetCategoryValue answers GET categories/{name}/{value}.
func (s *Sim) v3GetCategoryValue(w http.ResponseWriter, r *http.Request) {
	key, val := r.PathValue("name"), r.PathValue("value")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.Categories[categoryExtID(key, val)]
	if c == nil {
		v3Error(w, http.StatusNotFound, "category", "ENTITY_NOT_FOUND", fmt.Sprintf("category %s:%s not found", key, val))
		return
	}
	simkit.WriteJSON(w, http.StatusOK, v3Category(c))
}

// ---------- v4 (prism config/categories) ----------

// v4Category renders a prism.v4.config.Category. $expand=associations adds
// the VM count, $expand=detailedAssociations every associated VM.
func (s *Sim) v4Category(r *http.Request, c *category) obj {
	o := obj{"$objectType": "prism.v4.config.Category", "$reserved": reserved(), "extId": c.extID(),
		"key": c.Key, "value": c.Value, "description": c.Description, "type": "USER"}
	for _, e := range strings.Split(r.URL.Query().Get("$expand"), ",") {
		switch strings.TrimSpace(e) {
		case "associations":
			o["associations"] = []obj{{"$objectType": "prism.v4.config.AssociationSummary", "$reserved": reserved(),
				"categoryId": c.extID(), "resourceType": "VM", "resourceGroup": "ENTITY", "count": len(s.m.vmsWithCategory(c))}}
		case "detailedAssociations":
			d := []obj{}
			for _, v := range s.m.vmsWithCategory(c) {
				d = append(d, obj{"$objectType": "prism.v4.config.AssociationDetail", "$reserved": reserved(),
					"categoryId": c.extID(), "resourceType": "VM", "resourceGroup": "ENTITY", "resourceId": v.UUID})
			}
			o["detailedAssociations"] = d
		}
	}
	return o
}

func (s *Sim) v4ListCategories(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.sortedCategories(), func(c *category, k string) string {
		switch k {
		case "key":
			return c.Key
		case "value":
			return c.Value
		case "type":
			return "USER"
		case "extId":
			return c.extID()
		}
		return ""
	}, func(c *category) obj { return s.v4Category(r, c) })
}

func (s *Sim) v4GetCategory(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Category with extId %s not found.", byID(s.m.Categories), func(c *category) {
		v4Get(w, r, "", s.v4Category(r, c))
	})
}

// v4VMCategories is a VM's vmm categories list: a CategoryReference per
// key:value it carries, ordered by key, then value.
func v4VMCategories(v *vm) []obj {
	keys := make([]string, 0, len(v.Categories))
	for k := range v.Categories {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []obj{}
	for _, k := range keys {
		vs := slices.Clone(v.Categories[k])
		sort.Strings(vs)
		for _, val := range vs {
			out = append(out, obj{"$objectType": "vmm.v4.ahv.config.CategoryReference", "extId": categoryExtID(k, val)})
		}
	}
	return out
}
