package layers_test

import (
	"bufio"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/ahvfs/ahvfs"

// room is one row of the table.
type room struct {
	name     string
	patterns []string // package paths; "x/..." matches x and below
	may      []string // room names or package paths; "anything"
}

func (r room) holds(pkg string) bool {
	for _, p := range r.patterns {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if pkg == base || strings.HasPrefix(pkg, base+"/") {
				return true
			}
		} else if pkg == p {
			return true
		}
	}
	return false
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readRooms parses the "Rooms" table of docs/architecture.md.
func readRooms(path string) ([]room, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rooms []room
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "## Rooms":
			in = true
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "## "):
			in = false
			continue
		case !strings.HasPrefix(line, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 || strings.TrimSpace(cells[0]) == "room" || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		r := room{name: strings.TrimSpace(cells[0])}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			r.patterns = append(r.patterns, m[1])
		}
		may := strings.TrimSpace(cells[3])
		if may == "anything" {
			r.may = []string{"anything"}
		}
		for _, m := range backticked.FindAllStringSubmatch(may, -1) {
			r.may = append(r.may, m[1])
		}
		if len(r.patterns) == 0 {
			return nil, fmt.Errorf("%s: room %q names no package", path, r.name)
		}
		rooms = append(rooms, r)
	}
	if len(rooms) == 0 {
		return nil, fmt.Errorf("%s: no Rooms table", path)
	}
	return rooms, sc.Err()
}

// check returns every violation of the rooms by the import graph (package
// → module-internal packages it imports, paths relative to the module).
func check(rooms []room, graph map[string][]string) []string {
	roomOf := func(pkg string) *room {
		for i := range rooms {
			if rooms[i].holds(pkg) {
				return &rooms[i]
			}
		}
		return nil
	}
	var bad []string
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		r := roomOf(p)
		if r == nil {
			bad = append(bad, fmt.Sprintf("package %s is in no room of docs/architecture.md: add it to a row", p))
			continue
		}
		for _, imp := range graph[p] {
			to := roomOf(imp)
			if to == nil {
				bad = append(bad, fmt.Sprintf("%s imports %s, which is in no room", p, imp))
				continue
			}
			if to.name == r.name || allowed(*r, *to, imp) {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s (room %q) imports %s (room %q), which its row does not allow", p, r.name, imp, to.name))
		}
	}
	return bad
}

func allowed(from, to room, imp string) bool {
	for _, m := range from.may {
		if m == "anything" || m == to.name || m == imp || to.holds(m) {
			return true
		}
	}
	return false
}

// importGraph parses the non-test Go files of every package under root.
func importGraph(root string) (map[string][]string, error) {
	graph := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if _, ok := graph[pkg]; !ok {
			graph[pkg] = nil
		}
		for _, s := range f.Imports {
			p, _ := strconv.Unquote(s.Path.Value)
			if rest, ok := strings.CutPrefix(p, module+"/"); ok {
				graph[pkg] = append(graph[pkg], rest)
			}
		}
		return nil
	})
	return graph, err
}

// TestLayers: the module's packages keep to docs/architecture.md.
func TestLayers(t *testing.T) {
	root, _ := filepath.Abs("../..")
	rooms, err := readRooms(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	graph, err := importGraph(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(graph) < 20 {
		t.Fatalf("found only %d packages under %s", len(graph), root)
	}
	for _, v := range check(rooms, graph) {
		t.Error(v)
	}
}

// TestCheckFindsUpwardImports: the checker itself reports a low room
// importing a higher one, a production package importing the simulator or
// tools, and a package outside every room.
func TestCheckFindsUpwardImports(t *testing.T) {
	root, _ := filepath.Abs("../..")
	rooms, err := readRooms(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		graph map[string][]string
		want  string
	}{
		{map[string][]string{"engine": {"backup"}}, `engine (room "engine") imports backup`},
		{map[string][]string{"nutanix": {"clusterjob"}}, `nutanix (room "nutanix") imports clusterjob`},
		{map[string][]string{"restore": {"prismsim"}}, `restore (room "restore") imports prismsim`},
		{map[string][]string{"backup": {"tools/bench/iscsi"}}, `backup (room "backup") imports tools/bench/iscsi`},
		{map[string][]string{"fusefs": {"backup"}}, `fusefs (room "FUSE adapter") imports backup`},
		{map[string][]string{"newroom": nil}, "package newroom is in no room"},
	} {
		got := strings.Join(check(rooms, tc.graph), "\n")
		if !strings.Contains(got, tc.want) {
			t.Errorf("check(%v) = %q, want %q", tc.graph, got, tc.want)
		}
	}
	ok := map[string][]string{"backup": {"clusterjob", "engine"}, "prismsim/simtest": {"prismsim", "internal/testenv"}, "tools/bench/backup": {"prismsim"}}
	if v := check(rooms, ok); len(v) != 0 {
		t.Errorf("allowed imports reported: %v", v)
	}
}
