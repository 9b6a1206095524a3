// Command randread measures random read latency on a file: N preads of
// SIZE bytes at aligned random offsets, one at a time, and prints p50, p99
// and the mean in microseconds.
//
//	go run ./tools/bench/mount/randread -n 2000 -size 4096 FILE
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"
)

func main() {
	n := flag.Int("n", 2000, "number of reads")
	size := flag.Int("size", 4096, "bytes per read (and offset alignment)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: randread [-n N] [-size B] FILE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	blocks := st.Size() / int64(*size)
	rng := rand.New(rand.NewPCG(*seed, 42))
	buf := make([]byte, *size)
	lat := make([]time.Duration, 0, *n)
	var total time.Duration
	for range *n {
		off := rng.Int64N(blocks) * int64(*size)
		start := time.Now()
		if _, err := f.ReadAt(buf, off); err != nil {
			fmt.Fprintf(os.Stderr, "pread at %d: %v\n", off, err)
			os.Exit(1)
		}
		d := time.Since(start)
		lat = append(lat, d)
		total += d
	}
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	fmt.Printf("p50_us=%.0f p99_us=%.0f mean_us=%.0f reads=%d\n",
		us(lat[len(lat)/2]), us(lat[len(lat)*99/100]), us(total/time.Duration(len(lat))), len(lat))
}
