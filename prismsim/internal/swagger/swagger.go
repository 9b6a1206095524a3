// Package swagger validates JSON values against the definitions of a Swagger
// 2.0 document (the subset of JSON schema Prism's v3 swagger uses: $ref,
// type, format, properties, required, additionalProperties, items, enum and
// Nutanix's x-ntnx-enum, pattern, maxLength, minimum). It exists to prove
// that the simulator's v3 answers have the shapes of the real API.
package swagger

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Doc is a loaded swagger document.
type Doc struct {
	defs map[string]any
	res  map[string]*regexp.Regexp
}

// Load reads a swagger JSON file.
func Load(path string) (*Doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Definitions map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("swagger %s: %w", path, err)
	}
	return &Doc{defs: raw.Definitions, res: map[string]*regexp.Regexp{}}, nil
}

// Options tune Validate.
type Options struct {
	// Strict reports properties the schema does not declare (unless the
	// schema allows additionalProperties).
	Strict bool
	// AllowExtra lists JSON paths (as reported, e.g. "status.execution_context")
	// whose undeclared presence is accepted in strict mode.
	AllowExtra []string
}

// Validate checks v (decoded with encoding/json into any) against definition
// def and returns every violation, each prefixed with its JSON path.
func (d *Doc) Validate(def string, v any, o Options) []string {
	s, ok := d.defs[def]
	if !ok {
		return []string{"no definition " + def}
	}
	var errs []string
	d.check("", s.(map[string]any), v, o, &errs, 0)
	return errs
}

func (d *Doc) check(path string, s map[string]any, v any, o Options, errs *[]string, depth int) {
	if depth > 64 {
		return
	}
	add := func(format string, args ...any) {
		p := path
		if p == "" {
			p = "(root)"
		}
		*errs = append(*errs, p+": "+fmt.Sprintf(format, args...))
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		t, ok := d.defs[name].(map[string]any)
		if !ok {
			add("unresolved $ref %s", ref)
			return
		}
		d.check(path, t, v, o, errs, depth+1)
		return
	}
	if v == nil {
		add("null is not allowed (omit the key instead)")
		return
	}
	typ, _ := s["type"].(string)
	switch typ {
	case "object", "":
		m, ok := v.(map[string]any)
		if !ok {
			if typ == "object" || s["properties"] != nil {
				add("want object, have %T", v)
			}
			return
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := m[r]; !ok {
				add("required property %q missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cp := join(path, k)
			if ps, ok := props[k].(map[string]any); ok {
				d.check(cp, ps, m[k], o, errs, depth+1)
				continue
			}
			if ap, ok := s["additionalProperties"].(map[string]any); ok {
				d.check(cp, ap, m[k], o, errs, depth+1)
				continue
			}
			if ap, ok := s["additionalProperties"].(bool); ok && ap {
				continue
			}
			if props == nil && typ == "object" {
				continue // free-form object
			}
			if o.Strict && !allowed(cp, o.AllowExtra) {
				add("property %q is not in the schema", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			add("want array, have %T", v)
			return
		}
		items, _ := s["items"].(map[string]any)
		for i, x := range a {
			if items != nil {
				d.check(fmt.Sprintf("%s[%d]", path, i), items, x, o, errs, depth+1)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			add("want string, have %T (%v)", v, v)
			return
		}
		if ml, ok := s["maxLength"].(float64); ok && float64(len(str)) > ml {
			add("string longer than maxLength %v", ml)
		}
		if p, ok := s["pattern"].(string); ok {
			re := d.res[p]
			if re == nil {
				var err error
				if re, err = regexp.Compile(p); err != nil {
					re = regexp.MustCompile(".*")
				}
				d.res[p] = re
			}
			if !re.MatchString(str) {
				add("%q does not match pattern %s", str, p)
			}
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				add("%q is not an RFC 3339 date-time", str)
			}
		case "uuid", "UUID":
			if !uuidRE.MatchString(str) {
				add("%q is not a UUID", str)
			}
		}
		for _, key := range []string{"enum", "x-ntnx-enum"} {
			if e := asStrings(s[key]); len(e) > 0 && !contains(e, str) {
				add("%q is not one of %v", str, e)
			}
		}
	case "integer":
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) {
			add("want integer, have %T (%v)", v, v)
			return
		}
		if s["format"] == "int32" && (n > math.MaxInt32 || n < math.MinInt32) {
			add("%v overflows int32", n)
		}
		if mn, ok := s["minimum"].(float64); ok && n < mn {
			add("%v is below minimum %v", n, mn)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			add("want number, have %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			add("want boolean, have %T", v)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// allowed matches cp against patterns where "[]" matches any index.
func allowed(cp string, pats []string) bool {
	norm := regexp.MustCompile(`\[\d+\]`).ReplaceAllString(cp, "[]")
	for _, p := range pats {
		if p == norm || p == cp {
			return true
		}
	}
	return false
}

func asStrings(v any) []string {
	a, _ := v.([]any)
	var out []string
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
