package dr

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestBandwidthLimit: 200 MiB of blobs at 20 MiB/s take 9.5 to 10.5 s.
// The limiter starts empty with a burst of a tenth of a second, so the
// time is bounded below whatever the machine's load; above, a loaded
// machine has ten times the needed speed to spare.
func TestBandwidthLimit(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, false)
	src := openW(t, srcDir, nil)
	file := filepath.Join(t.TempDir(), "random.raw")
	b := make([]byte, 200<<20)
	rand.NewChaCha8([32]byte{7}).Read(b)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.ImportFiles(ctx, src, "big", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), file); err != nil {
		t.Fatal(err)
	}
	dst := openW(t, dstDir, nil)
	start := time.Now()
	rep, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{BytesPerSecond: 20 << 20})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	mib := float64(rep.BytesSent) / (1 << 20)
	t.Logf("%.1f MiB in %v: %.2f MiB/s", mib, took, mib/took.Seconds())
	if rep.BytesSent < 200<<20 {
		t.Fatalf("sent %d bytes, want at least 200 MiB", rep.BytesSent)
	}
	want := time.Duration(float64(rep.BytesSent) / (20 << 20) * float64(time.Second))
	if raceEnabled && took > want {
		// Instrumented, this machine cannot move 20 MiB/s: only the limit
		// (the lower bound) is the limiter's.
		want = took
	}
	if took < want*95/100 || took > want*105/100 {
		t.Fatalf("%.1f MiB at 20 MiB/s took %v, want %v ± 5%%", mib, took, want)
	}
}
