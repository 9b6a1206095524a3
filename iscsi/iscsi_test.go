package iscsi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/iscsi/iscsitest"
)

const testIQN = "iqn.2024-01.io.ahvfs:test"

func needTgtd(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	testenv.Commands(t, "tgtd", "tgtadm")
}

// newTarget starts tgtd with target 1 (testIQN) and one LUN per size,
// numbered from 1, each backed by a file of random data.
func newTarget(t *testing.T, host string, sizes ...int64) (*iscsitest.Tgtd, []string) {
	t.Helper()
	d := iscsitest.StartTgtd(t, host)
	d.AddTarget(1, testIQN)
	var paths []string
	for i, size := range sizes {
		p := iscsitest.LUNFile(t, size, uint64(i+1)+rand.Uint64()%1000*16)
		d.AddLUN(1, i+1, p)
		paths = append(paths, p)
	}
	return d, paths
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, o iscsi.Options) *iscsi.Session {
	t.Helper()
	if o.TargetIQN == "" {
		o.TargetIQN = testIQN
	}
	s, err := iscsi.Dial(testCtx(t), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func openLUN(t *testing.T, s *iscsi.Session, n uint64) *iscsi.LUN {
	t.Helper()
	l, err := s.LUN(testCtx(t), n)
	if err != nil {
		t.Fatalf("open LUN %d: %v", n, err)
	}
	return l
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// firstDiff describes where a and b differ, for failure messages.
func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d", i)
		}
	}
	return "equal"
}

// TestReadWrite checks exact reads and writes at random unaligned offsets
// and sizes (many above MaxBurstLength and MaxTransferLength, one across
// the end of the LUN) under each way of moving write data and with
// digests on and off.
func TestReadWrite(t *testing.T) {
	needTgtd(t)
	cases := []struct {
		name         string
		o            iscsi.Options
		targetParams map[string]string
	}{
		{name: "plain"},
		{name: "header-digest", o: iscsi.Options{HeaderDigest: true}},
		{name: "data-digest", o: iscsi.Options{DataDigest: true}},
		{name: "both-digests-small-segments", o: iscsi.Options{HeaderDigest: true, DataDigest: true, MaxRecvDataSegmentLength: 4096}},
		// Unsolicited Data-Out after immediate data, larger target segments.
		{name: "unsolicited-data", targetParams: map[string]string{"InitialR2T": "No", "MaxRecvDataSegmentLength": "65536"}},
		// Everything by R2T; small commands, many in flight.
		{name: "r2t-only", o: iscsi.Options{MaxTransferLength: 64 << 10, QueueDepth: 8},
			targetParams: map[string]string{"ImmediateData": "No"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const size = 24<<20 + 512*3
			d, paths := newTarget(t, "127.0.0.1", size)
			for k, v := range tc.targetParams {
				d.SetParam(1, k, v)
			}
			// tgtd offers no digests unless told to.
			d.SetParam(1, "HeaderDigest", "CRC32C,None")
			d.SetParam(1, "DataDigest", "CRC32C,None")
			o := tc.o
			o.Portal = d.Addr()
			s := dial(t, o)
			info := s.Info()
			if info.HeaderDigest != o.HeaderDigest || info.DataDigest != o.DataDigest {
				t.Fatalf("negotiated digests header=%v data=%v, want %v %v", info.HeaderDigest, info.DataDigest, o.HeaderDigest, o.DataDigest)
			}
			if tc.targetParams["InitialR2T"] == "No" && info.InitialR2T {
				t.Fatalf("InitialR2T still Yes: unsolicited data not exercised")
			}
			if tc.targetParams["ImmediateData"] == "No" && info.ImmediateData {
				t.Fatalf("ImmediateData still Yes: R2T-only path not exercised")
			}
			ctx := testCtx(t)
			lun := openLUN(t, s, 1)
			if lun.Size() != size || lun.BlockSize() != 512 {
				t.Fatalf("size %d block %d, want %d 512", lun.Size(), lun.BlockSize(), size)
			}
			model := readFile(t, paths[0])
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			randRange := func() (int64, int) {
				n := 1 + rng.IntN(3<<20)
				off := rng.Int64N(size - int64(n))
				return off, n
			}
			for i := range 25 {
				off, n := randRange()
				if i%5 == 0 {
					off = off / 512 * 512 // some aligned ones too
				}
				buf := make([]byte, n)
				got, err := lun.ReadAtContext(ctx, buf, off)
				if err != nil || got != n {
					t.Fatalf("read %d at %d: n=%d err=%v", n, off, got, err)
				}
				if !bytes.Equal(buf, model[off:off+int64(n)]) {
					t.Fatalf("read %d at %d: %s", n, off, firstDiff(buf, model[off:off+int64(n)]))
				}
			}
			// Across the end: io.ReaderAt semantics.
			tail := make([]byte, 10000)
			got, err := lun.ReadAtContext(ctx, tail, size-777)
			if got != 777 || err != io.EOF || !bytes.Equal(tail[:777], model[size-777:]) {
				t.Fatalf("tail read: n=%d err=%v", got, err)
			}
			if got, err := lun.ReadAt(tail, size); got != 0 || err != io.EOF {
				t.Fatalf("read at end: n=%d err=%v", got, err)
			}
			for range 15 {
				off, n := randRange()
				buf := make([]byte, n)
				fill(rng, buf)
				if got, err := lun.WriteAtContext(ctx, buf, off); err != nil || got != n {
					t.Fatalf("write %d at %d: n=%d err=%v", n, off, got, err)
				}
				copy(model[off:], buf)
			}
			if _, err := lun.WriteAt(make([]byte, 1024), size-512); err == nil {
				t.Fatal("write across the end succeeded")
			}
			if err := lun.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			all := make([]byte, size)
			if n, err := lun.ReadAtContext(ctx, all, 0); err != nil || n != size {
				t.Fatalf("read all: %d %v", n, err)
			}
			if !bytes.Equal(all, model) {
				t.Fatalf("LUN after writes: %s", firstDiff(all, model))
			}
			if file := readFile(t, paths[0]); !bytes.Equal(file, model) {
				t.Fatalf("backing file after writes: %s", firstDiff(file, model))
			}
		})
	}
}

// TestConcurrent runs many readers and writers on one LUN at once, each
// owning a region, with a small queue so that commands wait for slots.
func TestConcurrent(t *testing.T) {
	needTgtd(t)
	const size = 32 << 20
	d, paths := newTarget(t, "127.0.0.1", size)
	s := dial(t, iscsi.Options{Portal: d.Addr(), QueueDepth: 16, MaxTransferLength: 128 << 10})
	lun := openLUN(t, s, 1)
	ctx := testCtx(t)
	model := readFile(t, paths[0])
	const workers = 16
	region := int64(size / workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			base := int64(w) * region
			for i := range 12 {
				n := 1 + rng.IntN(int(region)/2)
				off := base + rng.Int64N(region-int64(n))
				buf := make([]byte, n)
				if i%2 == 0 {
					fill(rng, buf)
					if _, err := lun.WriteAtContext(ctx, buf, off); err != nil {
						errs <- err
						return
					}
					copy(model[off:], buf) // regions are disjoint
				} else {
					if _, err := lun.ReadAtContext(ctx, buf, off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(buf, model[off:off+int64(n)]) {
						errs <- fmt.Errorf("worker %d read at %d: %s", w, off, firstDiff(buf, model[off:off+int64(n)]))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if file := readFile(t, paths[0]); !bytes.Equal(file, model) {
		t.Fatalf("backing file: %s", firstDiff(file, model))
	}
}

func TestDiscover(t *testing.T) {
	needTgtd(t)
	d, _ := newTarget(t, "127.0.0.1", 1<<20)
	d.AddTarget(2, testIQN+"-two")
	targets, err := iscsi.Discover(testCtx(t), iscsi.Options{Portal: d.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name)
		if len(tg.Addresses) == 0 || tg.Addresses[0] != d.Addr()+",1" {
			t.Errorf("target %s addresses %q, want [%s,1]", tg.Name, tg.Addresses, d.Addr())
		}
	}
	slices.Sort(names)
	if want := []string{testIQN, testIQN + "-two"}; !slices.Equal(names, want) {
		t.Fatalf("targets %q, want %q", names, want)
	}
}

func TestCHAP(t *testing.T) {
	needTgtd(t)
	d, paths := newTarget(t, "127.0.0.1", 1<<20)
	const user, secret = "backup", "initiator-secret-123"
	const tuser, tsecret = "array", "target-secret-4567"
	d.RequireCHAP(1, user, secret)
	d.MutualCHAP(1, tuser, tsecret)
	want := readFile(t, paths[0])[:4096]
	cases := []struct {
		name string
		chap iscsi.CHAP
		ok   bool
	}{
		{"one-way", iscsi.CHAP{User: user, Secret: secret}, true},
		{"mutual", iscsi.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: tsecret}, true},
		{"wrong-secret", iscsi.CHAP{User: user, Secret: "wrong-secret-000000"}, false},
		{"unknown-user", iscsi.CHAP{User: "nobody", Secret: secret}, false},
		{"wrong-target-secret", iscsi.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: "not-the-target-secret"}, false},
		{"wrong-target-user", iscsi.CHAP{User: user, Secret: secret, TargetUser: "impostor", TargetSecret: tsecret}, false},
		{"none", iscsi.CHAP{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := iscsi.Dial(testCtx(t), iscsi.Options{Portal: d.Addr(), TargetIQN: testIQN, CHAP: tc.chap})
			if !tc.ok {
				if err == nil {
					s.Close(context.Background())
					t.Fatal("login succeeded")
				}
				if !errors.Is(err, iscsi.ErrAuth) {
					t.Fatalf("error %v does not match ErrAuth", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			lun := openLUN(t, s, 1)
			buf := make([]byte, 4096)
			if _, err := lun.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, want) {
				t.Fatalf("read after CHAP login: %v", err)
			}
		})
	}
	// Discovery with the same credentials (tgtd checks target accounts
	// only for normal sessions, so this proves the exchange works).
	if _, err := iscsi.Discover(testCtx(t), iscsi.Options{Portal: d.Addr(), CHAP: iscsi.CHAP{User: user, Secret: secret}}); err != nil {
		t.Fatalf("discover with CHAP: %v", err)
	}
}

func TestSeveralLUNs(t *testing.T) {
	needTgtd(t)
	sizes := []int64{3 << 20, 5<<20 + 4096, 1 << 20}
	d, paths := newTarget(t, "127.0.0.1", sizes...)
	s := dial(t, iscsi.Options{Portal: d.Addr()})
	ctx := testCtx(t)
	luns, err := s.ReportLUNs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0, 1, 2, 3}; !slices.Equal(luns, want) {
		t.Fatalf("REPORT LUNS %v, want %v", luns, want)
	}
	inq, err := s.Inquiry(ctx, 0)
	if err != nil || inq.DeviceType != iscsi.TypeController {
		t.Fatalf("LUN 0 inquiry %+v %v, want a controller", inq, err)
	}
	serials := map[string]bool{}
	wwns := map[string]bool{}
	for i, size := range sizes {
		lun := openLUN(t, s, uint64(i+1))
		if lun.Size() != size {
			t.Errorf("LUN %d size %d, want %d", i+1, lun.Size(), size)
		}
		inq, err := lun.Inquiry(ctx)
		if err != nil || inq.DeviceType != iscsi.TypeDisk || inq.Vendor == "" {
			t.Fatalf("LUN %d inquiry %+v %v", i+1, inq, err)
		}
		serial, err := lun.Serial(ctx)
		if err != nil || serial == "" {
			t.Fatalf("LUN %d serial %q %v", i+1, serial, err)
		}
		serials[serial] = true
		ids, err := lun.DeviceID(ctx)
		if err != nil || len(ids) == 0 {
			t.Fatalf("LUN %d device id %v %v", i+1, ids, err)
		}
		for _, id := range ids {
			if id.Association == 0 && id.Type == 3 {
				wwns[id.String()] = true
				break
			}
		}
		buf := make([]byte, 1<<20)
		if _, err := lun.ReadAtContext(ctx, buf, size-int64(len(buf))); err != nil {
			t.Fatal(err)
		}
		if want := readFile(t, paths[i])[size-int64(len(buf)):]; !bytes.Equal(buf, want) {
			t.Fatalf("LUN %d data: %s", i+1, firstDiff(buf, want))
		}
	}
	if len(serials) != len(sizes) {
		t.Errorf("serial numbers not distinct: %v", serials)
	}
	if len(wwns) != len(sizes) {
		t.Errorf("NAA designators not distinct: %v", wwns)
	}
}

func TestSenseErrors(t *testing.T) {
	needTgtd(t)
	d, _ := newTarget(t, "127.0.0.1", 1<<20)
	d.Admin("--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--params", "readonly=1")
	s := dial(t, iscsi.Options{Portal: d.Addr()})
	ctx := testCtx(t)
	lun := openLUN(t, s, 1)
	_, err := lun.WriteAtContext(ctx, make([]byte, 4096), 0)
	var se *iscsi.SenseError
	if !errors.As(err, &se) || se.Key != iscsi.SenseDataProtect || se.ASC != 0x27 {
		t.Fatalf("write to a read-only LUN: %v, want DATA PROTECT / write protected", err)
	}
	_, err = s.LUN(ctx, 9)
	if !errors.As(err, &se) || se.Key != iscsi.SenseIllegalRequest || se.ASC != 0x25 {
		t.Fatalf("open a missing LUN: %v, want ILLEGAL REQUEST / LUN not supported", err)
	}
}

func TestCancelAndClose(t *testing.T) {
	needTgtd(t)
	d, paths := newTarget(t, "127.0.0.1", 16<<20)
	s := dial(t, iscsi.Options{Portal: d.Addr(), MaxTransferLength: 4 << 10, QueueDepth: 1})
	lun := openLUN(t, s, 1)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := lun.ReadAtContext(ctx, make([]byte, 16<<20), 0)
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled read did not return")
	}
	// The session still works.
	buf := make([]byte, 1<<20)
	if _, err := lun.ReadAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, paths[0])[1<<20 : 2<<20]; !bytes.Equal(buf, want) {
		t.Fatalf("read after cancel: %s", firstDiff(buf, want))
	}
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := lun.ReadAt(buf, 0); !errors.Is(err, iscsi.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
