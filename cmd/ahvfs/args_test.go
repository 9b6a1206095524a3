package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestReorderArgs(t *testing.T) {
	app := newApp(strings.NewReader(""), &strings.Builder{}, &strings.Builder{})
	cases := []struct{ in, want string }{
		{"ahvfs cat web01@latest disk-0 --repo R", "ahvfs cat --repo R web01@latest disk-0"},
		{"ahvfs verify --read-data --repo R", "ahvfs verify --read-data --repo R"},
		{"ahvfs import a.raw --vm x b.raw --json", "ahvfs import --vm x --json a.raw b.raw"},
		{"ahvfs import --vm=x a.raw", "ahvfs import --vm=x a.raw"},
		{"ahvfs iscsi cat iscsi://h/iqn/1 --offset 5", "ahvfs iscsi cat --offset 5 iscsi://h/iqn/1"},
		{"ahvfs cat x -- -odd-name", "ahvfs cat x -- -odd-name"},
		{"ahvfs nosuch --x y", "ahvfs nosuch --x y"},
	}
	for _, c := range cases {
		got := strings.Join(reorderArgs(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
	// Flags after the positional arguments work end to end.
	_, errs, code := runCLI(t, "", "cat", "x@latest", "disk-0", "--repo", t.TempDir())
	if code != exitNoRepo || !strings.Contains(errs, "not an ahvfs repository") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !reflect.DeepEqual(reorderArgs(app, []string{"ahvfs"}), []string{"ahvfs"}) {
		t.Fatal("bare command changed")
	}
}
