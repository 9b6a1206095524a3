package backend_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine/backend"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{
		"config.json", "packs/ab/0123456789abcdef0123456789abcdef.pack", "records/rp/x.rec", "a", "a.b/c-d/e_f",
		"a..b", "dir with space/ünïcode", "back\\slash", strings.Repeat("x", backend.MaxNameLen),
	} {
		if err := backend.CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
	}
	for name, why := range map[string]string{
		"":                "empty",
		"/a":              "empty path element",
		"a/":              "empty path element",
		"a//b":            "empty path element",
		".":               "starts with a dot",
		"..":              "starts with a dot",
		"a/../b":          "starts with a dot",
		".a.pack.tmp-123": "starts with a dot",
		"a\x00b":          "control character 0x00",
		"a\tb":            "control character 0x09",
		"a\x7f":           "control character 0x7f",
		"\xc3":            "UTF-8",
		strings.Repeat("x", backend.MaxNameLen+1): "more than 1024",
	} {
		err := backend.CheckName(name)
		if !errors.Is(err, backend.ErrInvalidName) || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalidName saying %q", name, err, why)
		}
	}
}
