// Command nbdread reads a whole NBD export through package nbd and throws
// the data away: the ahvfs side of tools/bench/nbd-read.sh, shaped like
// `nbdcopy URI null:` so that the two compare like for like. By default it
// does what nbdcopy 1.14 does on this machine: as many connections as
// nbdcopy would open (up to 4, no more than the cores, one when the
// server does not advertise multi-conn), 64 requests of 256 KiB in flight
// on each, every request a ReadAt of its own taking the next chunk of
// the export. It prints one line: bytes, seconds (from the first dial to
// the last byte), MB/s (10^6) and the connections used.
//
//	go run ./tools/bench/nbdread [-connections N] [-requests 64] [-request-size 262144]
//	    [-callers N] [-read-size BYTES] [-ca-cert FILE] [-cpuprofile FILE] [-sha256]
//	    nbd+unix:///?socket=S | nbd://HOST:PORT/EXPORT | nbds://...
//
// -callers and -read-size give other shapes: `-connections 1 -callers 1
// -read-size 8388608 -requests 8 -request-size 33554432` is what `ahvfs
// nbd cat` does. -sha256 prints the SHA-256 of the export as well (the
// chunks are hashed in order; slower), to check the client against the
// image.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/nbd"
)

func main() {
	conns := flag.Int("connections", 0, "connections (0: nbdcopy's default, min(4, cores), 1 without multi-conn)")
	requests := flag.Int("requests", 64, "requests in flight per connection (nbdcopy --requests): Options.QueueDepth, and as many ReadAt callers unless -callers")
	reqSize := flag.Int("request-size", 256<<10, "bytes per request (nbdcopy --request-size): Options.MaxRequest, and the size of every ReadAt unless -read-size")
	callers := flag.Int("callers", 0, "ReadAt callers per connection (0: -requests)")
	readSize := flag.Int("read-size", 0, "bytes per ReadAt (0: -request-size); larger reads are split into requests in flight together")
	caFile := flag.String("ca-cert", "", "CA certificates of an nbds:// server")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	sum := flag.Bool("sha256", false, "print the export's SHA-256 as well")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("nbdread: ")
	if *callers == 0 {
		*callers = *requests
	}
	if *readSize == 0 {
		*readSize = *reqSize
	}
	if flag.NArg() != 1 {
		log.Fatal("want one NBD URI")
	}
	o, err := nbd.ParseURI(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	o.CAFile = *caFile
	o.QueueDepth = *requests
	o.MaxRequest = *reqSize
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	ctx := context.Background()
	start := time.Now()
	first, err := nbd.Dial(ctx, o)
	if err != nil {
		log.Fatal(err)
	}
	clients := []*nbd.Client{first}
	n := *conns
	if n == 0 {
		n = min(4, runtime.NumCPU())
	}
	if first.Info().Flags&nbd.FlagCanMultiConn == 0 {
		n = 1
	}
	for len(clients) < n {
		c, err := nbd.Dial(ctx, o)
		if err != nil {
			log.Fatal(err)
		}
		clients = append(clients, c)
	}
	size := first.Size()
	var h hash.Hash
	if *sum {
		h = sha256.New()
	}
	if err := readAll(ctx, clients, size, *readSize, *callers, h); err != nil {
		log.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	for _, c := range clients {
		if err := c.Close(); err != nil {
			log.Print(err)
		}
	}
	fmt.Printf("%d bytes %.3f s %.0f MB/s connections %d\n", size, secs, float64(size)/secs/1e6, len(clients))
	if h != nil {
		fmt.Printf("sha256 %x\n", h.Sum(nil))
	}
}

// readAll reads [0, size) in chunks of readSize, perConn callers on each
// client, every caller with a buffer of its own taking the next chunk.
// With h, the chunks are hashed in order: a caller waits for its turn.
func readAll(ctx context.Context, clients []*nbd.Client, size int64, readSize, perConn int, h hash.Hash) error {
	var next atomic.Int64
	var failed atomic.Bool
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var hashed int64 // under mu: bytes hashed so far
	errs := make(chan error, len(clients)*perConn)
	var wg sync.WaitGroup
	for _, c := range clients {
		for range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, readSize)
				for !failed.Load() {
					off := next.Add(int64(readSize)) - int64(readSize)
					if off >= size {
						return
					}
					k := min(int64(readSize), size-off)
					if _, err := c.ReadAtContext(ctx, buf[:k], off); err != nil && !errors.Is(err, io.EOF) {
						failed.Store(true)
						errs <- err
						mu.Lock()
						cond.Broadcast()
						mu.Unlock()
						return
					}
					if h != nil {
						mu.Lock()
						for hashed != off && !failed.Load() {
							cond.Wait()
						}
						h.Write(buf[:k])
						hashed += k
						cond.Broadcast()
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}
