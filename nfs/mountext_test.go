package nfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
)

// TestInjectBetweenRecords: replies rpcConn writes itself go out between
// the records go-nfs writes (in pieces of any size), never inside one.
func TestInjectBetweenRecords(t *testing.T) {
	server, client := net.Pipe()
	rc := newRPCConn(server, []string{"/"}, nil)
	rnd := rand.New(rand.NewPCG(5, 6))
	const records = 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // go-nfs: records of 1 to 9000 bytes, written in random pieces
		defer wg.Done()
		for i := range records {
			body := bytes.Repeat([]byte{byte(i)}, 1+rnd.IntN(9000))
			rec := binary.BigEndian.AppendUint32(nil, 1<<31|uint32(len(body)))
			rec = append(rec, body...)
			for len(rec) > 0 {
				n := min(1+rnd.IntN(5000), len(rec))
				if _, err := rc.Write(rec[:n]); err != nil {
					t.Error(err)
					return
				}
				rec = rec[n:]
				runtime.Gosched()
			}
		}
	}()
	go func() { // our replies, meanwhile
		defer wg.Done()
		for range records {
			runtime.Gosched()
			if err := rc.inject([]byte("EXPORTREPLY!")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	in := bufio.NewReader(client)
	ours, theirs := 0, 0
	for ours+theirs < 2*records {
		rec, err := readRecordLimit(in, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case string(rec) == "EXPORTREPLY!":
			ours++
		case len(rec) > 0 && bytes.Count(rec, rec[:1]) == len(rec):
			theirs++
		default:
			t.Fatalf("a record of %d bytes mixes two writers: %q...", len(rec), rec[:min(len(rec), 24)])
		}
	}
	wg.Wait()
}
