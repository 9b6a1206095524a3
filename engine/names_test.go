package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// acceptedNames are VM names the rules of docs/FORMAT.md ("Names") allow,
// chosen to stress VM@TIME parsing, key prefixes and the mount.
var acceptedNames = []string{
	"web01", "a/b", "../x", "x@y", "x", "x@", "@", "a@b@c", "latest", "web 01", " lead", "...",
	".hidden", "a%2Fb", "日本語のVM", "ünïcødé", strings.Repeat("é", engine.MaxVMNameChars),
	"9f0c2a7e-1111-4222-8333-444455556666",
}

func TestValidateVMName(t *testing.T) {
	for _, name := range acceptedNames {
		if err := engine.ValidateVMName(name); err != nil {
			t.Errorf("%q refused: %v", name, err)
		}
	}
	for _, c := range []struct{ name, why string }{
		{"", "empty"},
		{".", `"."`},
		{"..", `".."`},
		{"a\nb", "U+000A"},
		{"a\tb", "U+0009"},
		{"a\x00b", "U+0000"},
		{"del\x7f", "U+007F"},
		{"nel\u0085", "U+0085"},
		{"bad\xffutf8", "UTF-8"},
		{strings.Repeat("a", engine.MaxVMNameChars+1), "257 characters"},
		{strings.Repeat("a", 5000), "5000 characters"},
	} {
		err := engine.ValidateVMName(c.name)
		if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%q: %v; want ErrInvalid saying %q", c.name, err, c.why)
			continue
		}
		if len(err.Error()) > 200 || strings.ContainsAny(err.Error(), "\n\x00") {
			t.Errorf("%q: message not one short line: %q", c.name, err)
		}
	}
}

func TestCheckTime(t *testing.T) {
	for _, c := range []struct {
		t  time.Time
		ok bool
	}{
		{engine.MinTime, true},
		{engine.MaxTime, true},
		{engine.MaxTime.Add(999 * time.Millisecond), true}, // stored truncated
		{time.Date(2026, 11, 22, 1, 30, 0, 0, time.FixedZone("CET", 3600)), true},
		{engine.MinTime.Add(-time.Second), false},
		{engine.MaxTime.Add(time.Second), false},
		{time.Time{}, false},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), false},
	} {
		if err := engine.CheckTime(c.t); (err == nil) != c.ok || err != nil && !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%s: %v, want ok=%v", c.t, err, c.ok)
		}
	}
	for _, s := range []string{"0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "2262-01-01T00:00:00Z", "yesterday", ""} {
		if _, err := engine.ParseTime(s); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("ParseTime(%q): %v, want ErrInvalid", s, err)
		}
	}
}

// TestNamesRoundTrip imports a restore point under every accepted name and
// resolves it back by NAME@TIME and NAME@latest; no name sees another's
// restore points (x, x@, x@y share prefixes).
func TestNamesRoundTrip(t *testing.T) {
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, []byte(strings.Repeat("ahvfs", 40000)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t0 := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	ids := map[string]string{}
	for i, name := range acceptedNames {
		rp, err := enginetest.ImportFiles(ctx, r, name, t0.Add(time.Duration(i)*time.Minute), img)
		if err != nil {
			t.Fatalf("import %q: %v", name, err)
		}
		ids[name] = rp.ID
	}
	for i, name := range acceptedNames {
		at := engine.FormatTime(t0.Add(time.Duration(i) * time.Minute))
		for _, ref := range []string{name + "@" + at, name + "@latest"} {
			rp, err := r.Resolve(ctx, ref)
			if err != nil || rp.ID != ids[name] || rp.VM != name || rp.Name() != name+"@"+at {
				t.Errorf("resolve %q: %v %v", ref, rp, err)
			}
		}
		if rps, err := r.ListRestorePoints(ctx, name); err != nil || len(rps) != 1 {
			t.Errorf("list %q: %d restore points, %v", name, len(rps), err)
		}
	}
	vms, err := r.ListVMs(ctx)
	if err != nil || len(vms) != len(acceptedNames) {
		t.Fatalf("%d VMs listed (%v), want %d", len(vms), err, len(acceptedNames))
	}
}

func TestBadNamesAndTimesRefused(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	ok := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	for _, spec := range []engine.RestorePointSpec{
		{VM: "", Time: ok},
		{VM: "a\nb", Time: ok},
		{VM: strings.Repeat("x", 5000), Time: ok},
		{VM: "..", Time: ok},
		{VM: "vm", Time: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
		{VM: "vm", Time: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
		{VM: "vm", Time: time.Unix(-1, 0)},
	} {
		w, err := r.NewRestorePoint(ctx, spec)
		if !errors.Is(err, engine.ErrInvalid) {
			if w != nil {
				w.Abort()
			}
			t.Errorf("NewRestorePoint(%q, %s): %v, want ErrInvalid", spec.VM, spec.Time, err)
		}
	}
	for _, name := range []string{"vm@0001-01-01T00:00:00Z", "vm@9999-12-31T23:59:59Z", "vm@noon", "a\nb@latest", "vm@", "@latest"} {
		if _, err := r.Resolve(ctx, name); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("Resolve(%q): %v, want ErrInvalid", name, err)
		}
	}
	if rps, _ := r.ListRestorePoints(ctx, ""); len(rps) != 0 {
		t.Fatalf("%d restore points written", len(rps))
	}
}
