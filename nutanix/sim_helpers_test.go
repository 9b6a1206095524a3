package nutanix_test

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// Helpers of the client-against-simulator tests (sim_*_test.go): a
// simulator per test, clients for it, disk images and the changed-regions
// oracle.

const simBlock = 64 << 10 // prismsim's default region block size

func startSim(t *testing.T, o prismsim.Options) *prismsim.Sim {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	if o.TaskDelay == 0 {
		o.TaskDelay = time.Millisecond
	}
	s, err := prismsim.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func simOptions(s *prismsim.Sim, api nutanix.APIVersion) nutanix.Options {
	return nutanix.Options{
		Endpoint: s.URL(), User: s.User(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile(), API: api,
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: 20 * time.Millisecond,
		TaskPollInterval: time.Millisecond, TaskTimeout: 30 * time.Second, Timeout: 10 * time.Second, RateLimit: -1,
	}
}

func simClient(t *testing.T, s *prismsim.Sim, api nutanix.APIVersion) *nutanix.Client {
	t.Helper()
	c := newClient(t, simOptions(s, api))
	rep, err := c.Probe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if api != nutanix.APIAuto && rep.Selected != api {
		t.Fatalf("asked %s, got %s (%s)", api, rep.Selected, rep.Reason)
	}
	return c
}

// diskImage writes a disk file of size bytes with data in a few places
// (the rest is a hole / zeros).
func diskImage(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("disk-%d.raw", seed))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(seed, 1))
	for off := int64(0); off < size; off += size / 8 {
		buf := make([]byte, 100_000)
		for i := range buf {
			buf[i] = byte(r.UintN(255) + 1)
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// blockDiff is the oracle: block index → REGULAR/ZEROED for the blocks of
// newFile that differ from oldFile ("" oldFile: every block, as an
// allocation map, REGULAR when non-zero).
func blockDiff(t *testing.T, newFile, oldFile string) map[int64]nutanix.RegionKind {
	t.Helper()
	nb, err := os.ReadFile(newFile)
	if err != nil {
		t.Fatal(err)
	}
	var ob []byte
	if oldFile != "" {
		if ob, err = os.ReadFile(oldFile); err != nil {
			t.Fatal(err)
		}
	}
	out := map[int64]nutanix.RegionKind{}
	for i := int64(0); i*simBlock < int64(len(nb)); i++ {
		n := nb[i*simBlock : min(int64(len(nb)), (i+1)*simBlock)]
		if ob != nil && bytes.Equal(n, ob[i*simBlock:min(int64(len(ob)), (i+1)*simBlock)]) {
			continue
		}
		kind := nutanix.RegionZeroed
		if !bytes.Equal(n, make([]byte, len(n))) {
			kind = nutanix.RegionRegular
		}
		if ob == nil && kind == nutanix.RegionZeroed {
			continue // the allocation map may report zero blocks or not
		}
		out[i] = kind
	}
	return out
}

// walkBlocks runs ChangedRegions and returns the covered blocks, checking
// the contract (ascending, non-overlapping, in the window, block-aligned).
func walkBlocks(t *testing.T, c nutanix.Cluster, q nutanix.RegionQuery) (map[int64]nutanix.RegionKind, int) {
	t.Helper()
	got := map[int64]nutanix.RegionKind{}
	n := 0
	prev := q.Offset
	for r, err := range nutanix.Regions(ctxT(t), c, q) {
		if err != nil {
			t.Fatalf("changed regions: %v", err)
		}
		n++
		if r.Offset < prev || r.Length <= 0 || (q.Length > 0 && r.End() > q.Offset+q.Length) {
			t.Fatalf("region %+v breaks the contract (prev end %d, window %d+%d)", r, prev, q.Offset, q.Length)
		}
		prev = r.End()
		for b := r.Offset / simBlock; b*simBlock < r.End(); b++ {
			got[b] = r.Kind
		}
	}
	return got, n
}

func snapFile(t *testing.T, s *prismsim.Sim, snap nutanix.Snapshot, disk int) string {
	t.Helper()
	id := snap.ID
	if snap.API == nutanix.APIV4 {
		id = snap.VMRecoveryPointID
	}
	files, err := s.SnapshotDiskFiles(id)
	if err != nil {
		t.Fatal(err)
	}
	return files[disk]
}

func sameBlocks(t *testing.T, what string, got, want map[int64]nutanix.RegionKind, ignoreZeroed bool) {
	t.Helper()
	for b, k := range want {
		if got[b] != k {
			t.Errorf("%s: block %d (offset %d) is %q, want %q", what, b, b*simBlock, got[b], k)
		}
	}
	for b, k := range got {
		if _, ok := want[b]; !ok && !(ignoreZeroed && k == nutanix.RegionZeroed) {
			t.Errorf("%s: block %d (offset %d) reported %q but did not change", what, b, b*simBlock, k)
		}
	}
}
