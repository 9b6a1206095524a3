package clusterjob

import (
	"context"
	"testing"
)

// TestSamePrism: one Prism spelt two ways (case, a name and its address)
// is one site; another port or another address is another.
func TestSamePrism(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://127.0.0.1:9440", "https://127.0.0.1:9440", true},
		{"https://PC.example.com:9440", "https://pc.example.com:9440", true},
		{"https://localhost:9440", "https://127.0.0.1:9440", true},
		{"https://127.0.0.1:9440", "https://127.0.0.1:9441", false},
		{"https://127.0.0.1:9440", "https://127.0.0.2:9440", false},
		{"https://localhost:9440", "https://127.0.0.2:9440", false},
	} {
		if got := samePrism(context.Background(), tc.a, tc.b); got != tc.want {
			t.Errorf("samePrism(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
