package engine_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/engine"
)

// TestParsePassword: the line end goes, inner spaces stay, empty fails.
func TestParsePassword(t *testing.T) {
	for in, want := range map[string]string{"pw\n": "pw", "p w\r\n": "p w", "pw": "pw", "pw\n\n": "pw"} {
		got, err := engine.ParsePassword([]byte(in), "f")
		if err != nil || string(got) != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "\r\n"} {
		if _, err := engine.ParsePassword([]byte(in), "f"); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}
