// Command codecs measures, on a real disk image, what each chunk codec and
// hash would cost: throughput per core and ratio for zstd (fastest and
// default levels), S2 (default and better) and LZ4-class S2 "snappy" mode,
// and BLAKE3 from zeebo/blake3 and lukechampine.com/blake3. It prints the
// figures that chose the engine's defaults (docs/PERFORMANCE.md).
//
//	go run ./tools/bench/codecs -image disk.raw [-chunk 1MiB] [-max 1GiB]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	zblake3 "github.com/zeebo/blake3"
	lblake3 "lukechampine.com/blake3"
)

func main() {
	image := flag.String("image", "", "raw disk image to measure on")
	chunk := flag.Int("chunk", 1<<20, "chunk size")
	maxBytes := flag.Int64("max", 1<<30, "read at most this many non-zero bytes")
	flag.Parse()
	f, err := os.Open(*image)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var chunks [][]byte
	var total int64
	for total < *maxBytes {
		b := make([]byte, *chunk)
		n, err := io.ReadFull(f, b)
		if n == 0 {
			break
		}
		b = b[:n]
		if !allZero(b) {
			chunks = append(chunks, b)
			total += int64(n)
		}
		if err != nil {
			break
		}
	}
	fmt.Printf("image %s: %d non-zero chunks of %d bytes (%.0f MiB)\n", *image, len(chunks), *chunk, float64(total)/(1<<20))
	zf, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zd, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	type codec struct {
		name string
		enc  func(dst, src []byte) []byte
		dec  func(dst, src []byte) ([]byte, error)
	}
	codecs := []codec{
		{"s2", func(d, s []byte) []byte { return s2.Encode(d, s) }, func(d, s []byte) ([]byte, error) { return s2.Decode(d, s) }},
		{"s2-better", func(d, s []byte) []byte { return s2.EncodeBetter(d, s) }, func(d, s []byte) ([]byte, error) { return s2.Decode(d, s) }},
		{"s2-snappy", func(d, s []byte) []byte { return s2.EncodeSnappy(d, s) }, func(d, s []byte) ([]byte, error) { return s2.Decode(d, s) }},
		{"zstd-fastest", func(d, s []byte) []byte { return zf.EncodeAll(s, d[:0]) }, func(d, s []byte) ([]byte, error) { return dec.DecodeAll(s, d[:0]) }},
		{"zstd-default", func(d, s []byte) []byte { return zd.EncodeAll(s, d[:0]) }, func(d, s []byte) ([]byte, error) { return dec.DecodeAll(s, d[:0]) }},
	}
	dst := make([]byte, s2.MaxEncodedLen(*chunk)+1024)
	out := make([]byte, *chunk)
	fmt.Printf("%-14s %10s %12s %12s   (one core; raw kept when a chunk shrinks < 1/32)\n", "codec", "ratio", "compress", "decompress")
	for _, c := range codecs {
		var stored int64
		encoded := make([][]byte, len(chunks))
		start := time.Now()
		for i, b := range chunks {
			e := c.enc(dst, b)
			if len(e) < len(b)-len(b)/32 {
				stored += int64(len(e))
				encoded[i] = append([]byte(nil), e...)
			} else {
				stored += int64(len(b))
			}
		}
		ct := time.Since(start)
		start = time.Now()
		for _, e := range encoded {
			if e != nil {
				if _, err := c.dec(out, e); err != nil {
					panic(err)
				}
			}
		}
		dt := time.Since(start)
		fmt.Printf("%-14s %9.2fx %9.0f MB/s %9.0f MB/s\n", c.name, float64(total)/float64(stored), mbps(total, ct), mbps(total, dt))
	}
	for _, h := range []struct {
		name string
		sum  func([]byte)
	}{
		{"zeebo/blake3", func(b []byte) { zblake3.Sum256(b) }},
		{"lukechampine/blake3", func(b []byte) { lblake3.Sum256(b) }},
	} {
		start := time.Now()
		for _, b := range chunks {
			h.sum(b)
		}
		fmt.Printf("%-20s %9.0f MB/s (one goroutine)\n", h.name, mbps(total, time.Since(start)))
	}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
