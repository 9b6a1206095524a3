package backup

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/nbd/nbdtest"
)

// TestAllocationPlan: a full over an NBD server with block status (here
// qemu-nbd) reads every chunk that holds data and skips the holes and
// zeroed regions; a server without it leaves the plan to read everything.
func TestAllocationPlan(t *testing.T) {
	const size, chunk = 32 << 20, 1 << 20
	img := nbdtest.NewImage(t, t.TempDir(), size, 3)
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{})
	ctx := context.Background()
	cl, err := nbd.Dial(ctx, nbd.Options{Address: srv.Addr, Export: srv.Export})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	plan, ok, err := allocationPlan(ctx, cl, size, chunk)
	if err != nil || !ok {
		t.Fatalf("allocation plan: ok %v, %v", ok, err)
	}
	if err := plan.Validate(size, chunk); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, chunk)
	read := map[int64]bool{}
	for _, e := range plan {
		if e.Kind == cbt.Read {
			for off := e.Off; off < e.Off+e.Len; off += chunk {
				read[off] = true
			}
		}
	}
	skipped := 0
	for off := int64(0); off < size; off += chunk {
		if !bytes.Equal(data[off:off+chunk], zero) && !read[off] {
			t.Fatalf("chunk at %d holds data and is not read", off)
		}
		if !read[off] {
			skipped++
		}
	}
	if skipped == 0 {
		t.Fatalf("the plan reads every chunk of an image with holes (%d bytes)", plan.SourceBytes())
	}
	t.Logf("full plan reads %d of %d bytes (%d chunks skipped)", plan.SourceBytes(), int64(size), skipped)

	plain, err := nbd.Dial(ctx, nbd.Options{Address: srv.Addr, Export: srv.Export, NoStructuredReplies: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, ok, err := allocationPlan(ctx, plain, size, chunk); ok || err != nil {
		t.Fatalf("without block status: ok %v, %v; want no plan", ok, err)
	}
}
