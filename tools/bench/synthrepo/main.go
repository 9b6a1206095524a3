// Command synthrepo builds a repository with millions of distinct chunks
// without millions of chunks' worth of disk: each 64 KiB chunk is a
// counter followed by zeros, which S2 stores in a few bytes. The chunks
// are real (hashed, packed, indexed and protected by parity through the
// engine's public writer), so gc, verify and the index see a repository of
// that many chunks; only the bytes are synthetic. tools/bench/gcmem.sh uses
// it to measure gc's peak memory on a 5-million-chunk index.
//
// It writes two restore points of one VM, "synth", a day apart:
//   - the first holds chunks 0 to 0.8·N;
//   - the second holds the same chunks but for every fifth one, plus
//     0.2·N new ones,
//
// so the repository holds N distinct chunks, and forgetting the first
// point leaves every one of its packs a fifth unused.
//
//	go run ./tools/bench/synthrepo -repo DIR [-chunks 5000000]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

const chunkSize = 64 << 10

func main() {
	repo := flag.String("repo", "", "directory of the new repository")
	chunks := flag.Int64("chunks", 5_000_000, "distinct chunks in all")
	flag.Parse()
	if *repo == "" || *chunks < 10 {
		fmt.Fprintln(os.Stderr, "usage: synthrepo -repo DIR [-chunks N]  (N ≥ 10)")
		os.Exit(2)
	}
	if err := run(context.Background(), *repo, *chunks); err != nil {
		fmt.Fprintln(os.Stderr, "synthrepo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, n int64) error {
	start := time.Now()
	if _, err := engine.Init(ctx, dir, engine.InitOptions{ChunkSize: chunkSize}); err != nil {
		return err
	}
	r, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil {
		return err
	}
	defer r.Close()
	first := n * 4 / 5
	day := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	// Point 1: chunk i at slot i.
	if err := point(ctx, r, day, first, func(slot int64) int64 { return slot }); err != nil {
		return err
	}
	// Point 2: slot i keeps chunk i unless i%5 == 0, where a new chunk
	// (numbered from first on) takes its place; the rest of the new chunks
	// follow.
	second := first + (n - first - first/5)
	if err := point(ctx, r, day.AddDate(0, 0, 1), second, func(slot int64) int64 {
		switch {
		case slot >= first:
			return first + first/5 + (slot - first)
		case slot%5 == 0:
			return first + slot/5
		}
		return slot
	}); err != nil {
		return err
	}
	fmt.Printf("synthrepo: %d distinct chunks in 2 restore points in %.1f s\n", n, time.Since(start).Seconds())
	return nil
}

// point writes one restore point of slots chunks, slot i holding chunk
// number chunk(i).
func point(ctx context.Context, r *engine.Repository, t time.Time, slots int64, chunk func(int64) int64) error {
	w, err := r.NewRestorePoint(ctx, engine.RestorePointSpec{VM: "synth", VMUUID: "5e7e0000-0000-4000-8000-000000000001", Time: t, Level: engine.LevelImport, Consistency: "crash"})
	if err != nil {
		return err
	}
	defer w.Abort()
	d, err := w.AddDisk(engine.DiskSpec{Index: 0, Bus: "scsi", UUID: "5e7e0000-0000-4000-8000-0000000000d0", Size: slots * chunkSize})
	if err != nil {
		return err
	}
	const batch = 64 // chunks per WriteAt
	workers := runtime.NumCPU()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, batch*chunkSize)
			for lo := int64(wk) * batch; lo < slots; lo += int64(workers) * batch {
				hi := min(lo+batch, slots)
				for s := lo; s < hi; s++ {
					c := buf[(s-lo)*chunkSize:]
					binary.LittleEndian.PutUint64(c, uint64(chunk(s))+1) // never all zero
				}
				if err := d.WriteAt(ctx, buf[:(hi-lo)*chunkSize], lo*chunkSize); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	_, err = w.Commit(ctx)
	return err
}
