package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Prism categories: key:value pairs (Env:prod) attached to VMs, used to
// select VMs (nutanix-api.md §9b). v3 reads a VM's categories from its
// metadata and finds the VMs of a category with POST category/query; v4
// reads a VM's category extIds and resolves them through the prism
// categories list, and finds the VMs of a category through its detailed
// associations.

// Category is one category value, Key:Value (Env:prod).
type Category struct {
	Key, Value string
}

// String is "Key:Value", the form ParseCategory reads.
func (c Category) String() string { return c.Key + ":" + c.Value }

// ParseCategory reads "KEY:VALUE" (Env:prod). The key ends at the first
// colon; the value may hold more. Spaces around key and value are
// dropped; neither may be empty.
func ParseCategory(s string) (Category, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return Category{}, fmt.Errorf("category %q: want KEY:VALUE, e.g. Env:prod (no colon)", s)
	}
	c := Category{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)}
	switch {
	case c.Key == "" && c.Value == "":
		return Category{}, fmt.Errorf("category %q: want KEY:VALUE, e.g. Env:prod (key and value are empty)", s)
	case c.Key == "":
		return Category{}, fmt.Errorf("category %q: want KEY:VALUE, e.g. Env:prod (the key is empty)", s)
	case c.Value == "":
		return Category{}, fmt.Errorf("category %q: want KEY:VALUE, e.g. Env:prod (the value is empty)", s)
	}
	return c, nil
}

// Validate reports an empty key or value.
func (c Category) Validate() error {
	if strings.TrimSpace(c.Key) == "" || strings.TrimSpace(c.Value) == "" {
		return fmt.Errorf("category %q: key and value must not be empty", c.String())
	}
	return nil
}

// HasCategory reports whether the VM carries c.
func (v VM) HasCategory(c Category) bool { return slices.Contains(v.Categories[c.Key], c.Value) }

// checkCategories validates cats for VMsInCategories.
func checkCategories(cats []Category) error {
	var errs []error
	for _, c := range cats {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addCategory adds key:value to m (no repeats), allocating m if needed.
func addCategory(m map[string][]string, key, value string) map[string][]string {
	if m == nil {
		m = map[string][]string{}
	}
	if !slices.Contains(m[key], value) {
		m[key] = append(m[key], value)
	}
	return m
}

// ---- v3 ----

// v3VMMetadata is a VM's metadata with its categories: categories holds
// one value per key, categories_mapping every value (honoured when
// use_categories_mapping is true).
type v3VMMetadata struct {
	v3Metadata
	Categories           map[string]string   `json:"categories,omitempty"`
	CategoriesMapping    map[string][]string `json:"categories_mapping,omitempty"`
	UseCategoriesMapping bool                `json:"use_categories_mapping,omitempty"`
}

// categories returns the VM's categories, key → values (nil: none).
func (m v3VMMetadata) categories() map[string][]string {
	var out map[string][]string
	if m.UseCategoriesMapping || len(m.Categories) == 0 {
		for k, vs := range m.CategoriesMapping {
			for _, v := range vs {
				out = addCategory(out, k, v)
			}
		}
	}
	if out == nil {
		for k, v := range m.Categories {
			out = addCategory(out, k, v)
		}
	}
	return out
}

type v3CategoryQuery struct {
	UsageType      string `json:"usage_type"`
	CategoryFilter struct {
		Type     string              `json:"type"`
		KindList []string            `json:"kind_list"`
		Params   map[string][]string `json:"params"`
	} `json:"category_filter"`
	GroupMemberCount  int    `json:"group_member_count"`
	GroupMemberOffset int    `json:"group_member_offset"`
	APIVersion        string `json:"api_version"`
}

type v3CategoryQueryResponse struct {
	Results []struct {
		Kind                   string  `json:"kind"`
		KindReferenceList      []v3Ref `json:"kind_reference_list"`
		EntityAnyReferenceList []v3Ref `json:"entity_any_reference_list"` // the name some clients use
		FilteredEntityCount    int     `json:"filtered_entity_count"`
		TotalEntityCount       int     `json:"total_entity_count"`
	} `json:"results"`
}

// VMsInCategories returns the UUIDs of the VMs carrying any of cats,
// through POST category/query (APPLIED_TO, CATEGORIES_MATCH_ANY), paging
// with group_member_offset.
func (b *v3Backend) VMsInCategories(ctx context.Context, cats []Category) ([]string, error) {
	if err := checkCategories(cats); err != nil {
		return nil, err
	}
	if len(cats) == 0 {
		return nil, nil
	}
	var q v3CategoryQuery
	q.UsageType, q.APIVersion = "APPLIED_TO", "3.1.0"
	q.CategoryFilter.Type, q.CategoryFilter.KindList = "CATEGORIES_MATCH_ANY", []string{"vm"}
	for _, c := range cats {
		q.CategoryFilter.Params = addCategory(q.CategoryFilter.Params, c.Key, c.Value)
	}
	q.GroupMemberCount = v3PageSize
	var out []string
	seen := map[string]bool{}
	for {
		var r v3CategoryQueryResponse
		if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/category/query", in: q, out: &r, idempotent: true}); err != nil {
			return nil, fmt.Errorf("find the VMs in categories %s: %w", categoryList(cats), err)
		}
		n, total := 0, 0
		for _, res := range r.Results {
			if res.Kind != "" && res.Kind != "vm" {
				continue
			}
			refs := res.KindReferenceList
			if len(refs) == 0 {
				refs = res.EntityAnyReferenceList
			}
			for _, ref := range refs {
				if (ref.Kind == "" || ref.Kind == "vm") && ref.UUID != "" && !seen[ref.UUID] {
					seen[ref.UUID] = true
					out = append(out, ref.UUID)
				}
			}
			n += len(refs)
			total = max(total, res.FilteredEntityCount, res.TotalEntityCount)
		}
		q.GroupMemberOffset += n
		if n == 0 || q.GroupMemberOffset >= total {
			return out, nil
		}
	}
}

// categoryList is "Env:prod, Tier:web" for messages.
func categoryList(cats []Category) string {
	s := make([]string, len(cats))
	for i, c := range cats {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

// ---- v4 ----

// v4Category is prism's Category (only what ahvfs reads).
type v4Category struct {
	ExtID                string `json:"extId"`
	Key                  string `json:"key"`
	Value                string `json:"value"`
	DetailedAssociations []struct {
		ResourceType string `json:"resourceType"`
		ResourceID   string `json:"resourceId"`
	} `json:"detailedAssociations"`
}

// odataString quotes s as an OData string literal.
func odataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// categoryNames lists every category: extId → key:value.
func (b *v4Backend) categoryNames(ctx context.Context) (map[string]Category, error) {
	out := map[string]Category{}
	err := v4ListAll(ctx, b, b.p("prism", "/config/categories"), nil, func(c v4Category) error {
		out[c.ExtID] = Category{Key: c.Key, Value: c.Value}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list categories: %w", err)
	}
	return out, nil
}

// categoriesByID reads the categories of ids one by one (extId →
// key:value); one that is gone (404) is left out.
func (b *v4Backend) categoriesByID(ctx context.Context, ids []v4Ref) (map[string]Category, error) {
	out := map[string]Category{}
	for _, id := range ids {
		var r v4Response[v4Category]
		_, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("prism", "/config/categories/"+url.PathEscape(id.ExtID)), out: &r})
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("get category %s: %w", id.ExtID, err)
		default:
			out[id.ExtID] = Category{Key: r.Data.Key, Value: r.Data.Value}
		}
	}
	return out, nil
}

// fewCategories is how many category references are read one by one
// rather than through a listing of every category (a Prism Central
// defines dozens of system categories).
const fewCategories = 4

// fillCategories resolves the category extIds of vms (refs[i] belong to
// vms[i]): up to fewCategories references one by one, more with one
// listing of the categories; nothing is asked when no VM has any. An
// extId that is gone (a category deleted meanwhile) is skipped.
func (b *v4Backend) fillCategories(ctx context.Context, vms []VM, refs [][]v4Ref) error {
	all := slices.Concat(refs...)
	if len(all) == 0 {
		return nil
	}
	var names map[string]Category
	var err error
	if len(all) <= fewCategories {
		names, err = b.categoriesByID(ctx, all)
	} else {
		names, err = b.categoryNames(ctx)
	}
	if err != nil {
		return err
	}
	for i, rs := range refs {
		for _, r := range rs {
			if c, ok := names[r.ExtID]; ok {
				vms[i].Categories = addCategory(vms[i].Categories, c.Key, c.Value)
			}
		}
	}
	return nil
}

// resolveCategories is fillCategories for the inventory: a failure to list
// the categories leaves the VMs without categories and is logged, not
// returned (a backup selecting by category then fails in
// VMsInCategories, with the reason).
func (b *v4Backend) resolveCategories(ctx context.Context, vms []VM, refs [][]v4Ref) {
	if err := b.fillCategories(ctx, vms, refs); err != nil {
		b.o.Logger.Warn("VM categories not shown", "err", err)
	}
}

// VMsInCategories returns the UUIDs of the VMs carrying any of cats: each
// category is found by a $filter on key and value, and its VMs are its
// detailed associations of resource type VM.
func (b *v4Backend) VMsInCategories(ctx context.Context, cats []Category) ([]string, error) {
	if err := checkCategories(cats); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range cats {
		var ids []string
		q := url.Values{"$filter": {"key eq " + odataString(c.Key) + " and value eq " + odataString(c.Value)}}
		err := v4ListAll(ctx, b, b.p("prism", "/config/categories"), q, func(x v4Category) error {
			if x.Key == c.Key && x.Value == c.Value { // a server that ignores $filter
				ids = append(ids, x.ExtID)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find category %s: %w", c, err)
		}
		for _, id := range ids {
			var r v4Response[v4Category]
			_, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("prism", "/config/categories/"+url.PathEscape(id)),
				query: url.Values{"$expand": {"detailedAssociations"}}, out: &r})
			if err != nil {
				return nil, fmt.Errorf("find the VMs in category %s: %w", c, err)
			}
			for _, a := range r.Data.DetailedAssociations {
				if strings.EqualFold(a.ResourceType, "VM") && a.ResourceID != "" && !seen[a.ResourceID] {
					seen[a.ResourceID] = true
					out = append(out, a.ResourceID)
				}
			}
		}
	}
	return out, nil
}

// sortedCategories returns m's categories ordered by key, then value.
func sortedCategories(m map[string][]string) []Category {
	var out []Category
	for k, vs := range m {
		for _, v := range vs {
			out = append(out, Category{k, v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// CategoryList returns the VM's categories as Key:Value pairs, ordered by
// key, then value.
func (v VM) CategoryList() []Category { return sortedCategories(v.Categories) }
