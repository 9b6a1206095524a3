package backend_test

import (
	"context"
	"fmt"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// A crash test runs a job once to learn its steps, then once per step,
// crashing right after it, and checks what a restarted process would find.
func ExampleFaulty_CrashAfter() {
	ctx := context.Background()
	job := func(b backend.Backend) error {
		if err := backend.PutBytes(ctx, b, "packs/ab/1.pack", []byte("data")); err != nil {
			return err
		}
		return backend.PutBytes(ctx, b, "records/rp/1.rec", []byte("names packs/ab/1.pack"))
	}
	clean := backend.NewFaulty(backend.NewMem())
	job(clean)
	fmt.Println("steps:", clean.Ops())
	for k := 0; k <= clean.Count(backend.OpAny); k++ {
		inner := backend.NewMem()
		f := backend.NewFaulty(inner)
		f.CrashAfter(backend.OpAny, k)
		err := job(f)
		infos, _ := backend.ListAll(ctx, inner, "")
		var names []string
		for _, i := range infos {
			names = append(names, i.Name)
		}
		fmt.Printf("crash after %d: %v; job error: %v\n", k, names, err)
	}
	// Output:
	// steps: [put packs/ab/1.pack put records/rp/1.rec]
	// crash after 0: []; job error: put packs/ab/1.pack: backend crashed
	// crash after 1: [packs/ab/1.pack]; job error: put records/rp/1.rec: backend crashed
	// crash after 2: [packs/ab/1.pack records/rp/1.rec]; job error: <nil>
}
