package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// Small geometry, so that a pack has several stripes and the tests run in
// well under a second each: 64 KiB chunks stored as they are (random data,
// no compression), packs of about 256 KiB, 3+2 stripes of 16 KiB shards
// (48 KiB of data each, so chunks and stripes do not line up).
const (
	tShard = 16 << 10
	tK     = 3
	tM     = 2
)

// smallRepo creates a repository of that geometry holding one restore
// point of a 1 MiB + 5000 byte random disk (17 chunks, two manifest
// pages), closes its writer, and returns the directory, the restore point
// and the disk's bytes.
func smallRepo(t *testing.T) (string, *engine.RestorePoint, []byte) {
	t.Helper()
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 16, PackSize: 256 << 10,
		ParityData: tK, ParityShards: tM, ShardSize: tShard, Compression: engine.CompressNone})
	want := make([]byte, 1<<20+5000)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rnd.Uint32())
	}
	r, err := engine.Open(context.Background(), dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rp, err := enginetest.ImportFiles(context.Background(), r, "vm", time.Unix(1e9, 0), writeTemp(t, want))
	if err != nil {
		t.Fatal(err)
	}
	return dir, rp, want
}

// packGeometry is what a pack's trailer and its sidecar's header say.
type packGeometry struct {
	pack, par                 string
	id                        string
	size, tableOff, dataLen   int64
	nData, nParity            int
	parSize, sumsEnd          int64
	shardSize, k, m, nStripes int
}

func geometryOf(t *testing.T, pack string) packGeometry {
	t.Helper()
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	tr := b[len(b)-64:]
	g := packGeometry{pack: pack, par: strings.TrimSuffix(pack, ".pack") + ".par", id: hex.EncodeToString(packID(t, pack)),
		size: int64(len(b)), tableOff: int64(binary.LittleEndian.Uint64(tr[16:])), dataLen: int64(binary.LittleEndian.Uint64(tr[24:])),
		shardSize: int(binary.LittleEndian.Uint32(tr[32:])), k: int(binary.LittleEndian.Uint16(tr[36:])), m: int(binary.LittleEndian.Uint16(tr[38:]))}
	p, err := os.ReadFile(g.par)
	if err != nil {
		t.Fatal(err)
	}
	g.nData, g.nParity = int(binary.LittleEndian.Uint32(p[28:])), int(binary.LittleEndian.Uint32(p[32:]))
	g.parSize, g.sumsEnd = int64(len(p)), int64(64+4*(g.nData+g.nParity))
	g.nStripes = (g.nData + g.k - 1) / g.k
	if g.shardSize != tShard || g.k != tK || g.m != tM || g.nParity != g.nStripes*g.m {
		t.Fatalf("unexpected pack geometry: %+v", g)
	}
	return g
}

// bigDataPack is the geometry of a pack that holds no manifest page and
// has at least three stripes.
func bigDataPack(t *testing.T, dir string, rp *engine.RestorePoint) packGeometry {
	t.Helper()
	g := geometryOf(t, dataPack(t, dir, rp))
	if g.nStripes < 3 {
		t.Fatalf("the largest data pack has %d stripes, want 3 or more", g.nStripes)
	}
	return g
}

// flipBitAt flips bit `bit` of the byte at off.
func flipBitAt(t *testing.T, path string, off int64, bit uint) {
	enginetest.XorAt(t, path, off, []byte{1 << bit})
}

func damageOf(rep *engine.VerifyReport, id string) *engine.PackDamage {
	for i := range rep.Damaged {
		if rep.Damaged[i].Pack == id {
			return &rep.Damaged[i]
		}
	}
	return nil
}

func mustVerify(t *testing.T, r *engine.Repository, o engine.VerifyOptions) *engine.VerifyReport {
	t.Helper()
	rep, err := r.Verify(context.Background(), o)
	if err != nil {
		t.Fatalf("verify %+v: %v", o, err)
	}
	return rep
}

// TestVerifyDetectsEveryBitFlip flips single bits all over a real pack and
// its sidecar, region by region: the first and last byte of each, every one
// of the last 24 bytes of the pack trailer and of the sidecar header (CRC
// and reserved zeros included), and a random sample of the others.
// verify --read-data must report every flip against that pack, name the
// damaged stripe and shard where it can, and, for two flips per region,
// --repair must give back both files byte for byte.
func TestVerifyDetectsEveryBitFlip(t *testing.T) {
	dir, rp, _ := smallRepo(t)
	g := bigDataPack(t, dir, rp)
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if rep := mustVerify(t, r, engine.VerifyOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("verify of an intact repository: %+v", rep)
	}
	origPack, _ := os.ReadFile(g.pack)
	origPar, _ := os.ReadFile(g.par)
	restore := func() {
		t.Helper()
		if err := os.WriteFile(g.pack, origPack, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g.par, origPar, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	regions := []struct {
		name    string
		file    string
		lo, hi  int64
		exhaust bool // a 64-byte header: its last 24 bytes all flipped
	}{
		{"pack data", g.pack, 0, g.tableOff, false},
		{"pack table", g.pack, g.tableOff, g.dataLen, false},
		{"pack shard sums", g.pack, g.dataLen, g.size - 64, false},
		{"pack trailer", g.pack, g.size - 64, g.size, true},
		{"sidecar header", g.par, 0, 64, true},
		{"sidecar data sums", g.par, 64, 64 + 4*int64(g.nData), false},
		{"sidecar parity sums", g.par, 64 + 4*int64(g.nData), g.sumsEnd, false},
		{"sidecar parity body", g.par, g.sumsEnd, g.parSize, false},
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, reg := range regions {
		var offs []int64
		offs = append(offs, reg.lo, reg.hi-1)
		if reg.exhaust {
			// The trailer's and header's last 24 bytes (table offset,
			// CRC, reserved zeros) whole, a sample of the rest.
			for o := reg.hi - 24; o < reg.hi-1; o++ {
				offs = append(offs, o)
			}
			for range 8 {
				offs = append(offs, reg.lo+1+rnd.Int64N(reg.hi-reg.lo-25))
			}
		} else {
			for range 10 {
				offs = append(offs, reg.lo+rnd.Int64N(reg.hi-reg.lo))
			}
		}
		detected := 0
		for n, off := range offs {
			bit := uint(rnd.IntN(8))
			flipBitAt(t, reg.file, off, bit)
			rep := mustVerify(t, r, engine.VerifyOptions{ReadData: true})
			d := damageOf(rep, g.id)
			if d == nil || rep.OK() {
				t.Errorf("%s: flip of bit %d at %d not detected: %+v", reg.name, bit, off, rep)
				restore()
				continue
			}
			detected++
			if d.State != engine.DamageRepairable || d.LostBlobs != 0 || d.Repaired {
				t.Errorf("%s: flip at %d: state %q, %d lost blobs: want repairable, none lost", reg.name, off, d.State, d.LostBlobs)
			}
			switch reg.name {
			case "pack data", "pack table":
				shard := int(off) / g.shardSize
				if len(d.Stripes) != 1 || d.Stripes[0].Stripe != shard/g.k || !slices.Equal(d.Stripes[0].DataShards, []int{shard}) {
					t.Errorf("%s: flip at %d: stripes %+v, want stripe %d data shard %d", reg.name, off, d.Stripes, shard/g.k, shard)
				}
			case "sidecar parity body":
				i := int((off - g.sumsEnd) / int64(g.shardSize))
				want := fmt.Sprintf("parity of pack %s: stripe %d parity shard %d damaged", g.id, i/g.m, i%g.m)
				if !strings.Contains(d.Problem, want) || !d.ParityDamaged {
					t.Errorf("%s: flip at %d: problem %q lacks %q", reg.name, off, d.Problem, want)
				}
			}
			if n != 0 && n != len(offs)/2 {
				restore()
				continue
			}
			// Repair gives back both files exactly.
			rep = mustVerify(t, r, engine.VerifyOptions{Repair: true})
			if d := damageOf(rep, g.id); d == nil || !d.Repaired || d.State != engine.DamageRepaired || rep.Repaired != 1 {
				t.Errorf("%s: repair of a flip at %d: %+v", reg.name, off, rep)
			}
			gotPack, _ := os.ReadFile(g.pack)
			gotPar, _ := os.ReadFile(g.par)
			if !bytes.Equal(gotPack, origPack) || !bytes.Equal(gotPar, origPar) {
				t.Errorf("%s: repair of a flip at %d did not give back the original files", reg.name, off)
			}
			restore()
		}
		t.Logf("%s [%d, %d): %d of %d single-bit flips detected", reg.name, reg.lo, reg.hi, detected, len(offs))
	}
	if rep := mustVerify(t, r, engine.VerifyOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("verify after the test put the files back: %+v", rep)
	}
}

// TestParityShardRewrittenWithItsSum replaces a parity shard and its sum
// (and the header CRC) consistently: no checksum fails, but the parity
// recomputed from the data differs. Verify must name the shard, and repair
// must give back the original sidecar.
func TestParityShardRewrittenWithItsSum(t *testing.T) {
	dir, rp, _ := smallRepo(t)
	g := bigDataPack(t, dir, rp)
	orig, _ := os.ReadFile(g.par)
	par := bytes.Clone(orig)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	i := g.m + 1 // stripe 1, parity shard 1
	body := par[g.sumsEnd+int64(i*g.shardSize):][:g.shardSize]
	for j := range body {
		body[j] ^= byte(j)
	}
	binary.LittleEndian.PutUint32(par[64+4*(g.nData+i):], crc32.Checksum(body, castagnoli))
	h := append(append([]byte(nil), par[:36]...), par[40:48]...)
	binary.LittleEndian.PutUint32(par[36:], crc32.Update(crc32.Checksum(h, castagnoli), castagnoli, par[64:g.sumsEnd]))
	if err := os.WriteFile(g.par, par, 0o600); err != nil {
		t.Fatal(err)
	}
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	rep := mustVerify(t, r, engine.VerifyOptions{ReadData: true})
	d := damageOf(rep, g.id)
	want := fmt.Sprintf("parity of pack %s: stripe 1 parity shard 1 damaged", g.id)
	if d == nil || !strings.Contains(d.Problem, want) || len(d.Stripes) != 1 || !slices.Equal(d.Stripes[0].ParityShards, []int{1}) ||
		d.State != engine.DamageRepairable {
		t.Fatalf("verify of a parity shard rewritten with its sum: want %q: %+v", want, rep)
	}
	mustVerify(t, r, engine.VerifyOptions{Repair: true})
	if got, _ := os.ReadFile(g.par); !bytes.Equal(got, orig) {
		t.Fatal("repair did not give back the original sidecar")
	}
}

// chunkStates maps each chunk of disk 0 to the damage its blob holds: the
// worst of the states of the flipped pack offsets inside it.
func chunkStates(t *testing.T, r *engine.Repository, rp *engine.RestorePoint, pack string, flips map[int64]string) []string {
	t.Helper()
	ids, err := r.ChunkIDs(context.Background(), &rp.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ids))
	for ci, id := range ids {
		if id.IsZero() {
			continue
		}
		p, off, stored, err := engine.BlobLocation(r, id)
		if err != nil {
			t.Fatal(err)
		}
		if p != pack {
			continue
		}
		for fo, st := range flips {
			if fo >= off && fo < off+int64(stored) && (out[ci] == "" || st == engine.DamageLost) {
				out[ci] = st
			}
		}
	}
	return out
}

// rangesOf merges chunk states into the ranges verify should report.
func rangesOf(states []string, cs, size int64) []engine.DamagedRange {
	var out []engine.DamagedRange
	for ci, st := range states {
		if st == "" {
			continue
		}
		off := int64(ci) * cs
		n := min(cs, size-off)
		if k := len(out) - 1; k >= 0 && out[k].State == st && out[k].Offset+out[k].Length == off {
			out[k].Length += n
			continue
		}
		out = append(out, engine.DamagedRange{Disk: "disk-0", Offset: off, Length: n, State: st})
	}
	return out
}

// TestRepairPerStripe damages one pack in two stripes: one shard of stripe
// 0 (within parity) and three of stripe 1 (one more than parity). Verify
// must report both stripes precisely, with the restore point's disk ranges;
// --repair must rebuild stripe 0, write the pack, leave stripe 1 as it was
// and report it; every chunk outside stripe 1's damage reads back exactly.
func TestRepairPerStripe(t *testing.T) {
	ctx := context.Background()
	dir, rp, want := smallRepo(t)
	g := bigDataPack(t, dir, rp)
	orig, _ := os.ReadFile(g.pack)
	stripe := int64(g.k * g.shardSize)
	flips := map[int64]string{
		100:         engine.DamageRepairable,                                                                                                       // stripe 0, shard 0
		stripe + 10: engine.DamageLost, stripe + int64(g.shardSize) + 20: engine.DamageLost, stripe + 2*int64(g.shardSize) + 30: engine.DamageLost, // stripe 1, shards k..k+2
	}
	for off := range flips {
		flipBitAt(t, g.pack, off, 3)
	}
	damaged, _ := os.ReadFile(g.pack)

	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	states := chunkStates(t, r, rp, g.pack, flips)
	cs, size := int64(r.ChunkSize()), rp.Disks[0].Size
	wantStripes := func(first string) []engine.StripeDamage {
		return []engine.StripeDamage{
			{Stripe: 0, Offset: 0, Length: stripe, DataShards: []int{0}, State: first, Blobs: 1},
			{Stripe: 1, Offset: stripe, Length: stripe, DataShards: []int{g.k, g.k + 1, g.k + 2}, State: engine.DamageBeyondParity, Blobs: blobsIn(states, engine.DamageLost)},
		}
	}
	checkStripes := func(what string, got []engine.StripeDamage, want []engine.StripeDamage) {
		t.Helper()
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Fatalf("%s: stripes\n got %+v\nwant %+v", what, got, want)
		}
	}
	checkRanges := func(what string, rep *engine.VerifyReport, want []engine.DamagedRange) {
		t.Helper()
		if len(rep.Affected) != 1 || rep.Affected[0].Name != rp.Name() || !slices.Equal(rep.Affected[0].Ranges, want) {
			t.Fatalf("%s: affected restore points %+v, want %s with ranges %+v", what, rep.Affected, rp.Name(), want)
		}
	}

	// Without --repair: both stripes, one repairable, one not.
	rep := mustVerify(t, r, engine.VerifyOptions{ReadData: true})
	d := damageOf(rep, g.id)
	if d == nil || d.State != engine.DamagePartlyRepairable || d.Repaired || d.BadShards != 4 || d.LostBlobs == 0 {
		t.Fatalf("verify: %+v", rep)
	}
	checkStripes("verify", d.Stripes, wantStripes(engine.DamageRepairable))
	checkRanges("verify", rep, rangesOf(states, cs, size))
	if a := rep.Affected[0]; a.RepairableChunks != blobsIn(states, engine.DamageRepairable) || a.DamagedChunks != a.RepairableChunks+blobsIn(states, engine.DamageLost) {
		t.Fatalf("verify: chunk counts %+v for states %q", a, states)
	}
	if got, _ := os.ReadFile(g.pack); !bytes.Equal(got, damaged) {
		t.Fatal("verify without --repair changed the pack")
	}

	// --repair: stripe 0 rebuilt and written, stripe 1 reported.
	rep = mustVerify(t, r, engine.VerifyOptions{Repair: true})
	d = damageOf(rep, g.id)
	if d == nil || d.State != engine.DamagePartlyRepaired || d.Repaired || rep.OK() || rep.Repaired != 0 {
		t.Fatalf("verify --repair: %+v", rep)
	}
	checkStripes("verify --repair", d.Stripes, wantStripes(engine.DamageRepaired))
	lostOnly := slices.Clone(states)
	for i, s := range lostOnly {
		if s == engine.DamageRepairable {
			lostOnly[i] = ""
		}
	}
	checkRanges("verify --repair", rep, rangesOf(lostOnly, cs, size))
	got, _ := os.ReadFile(g.pack)
	if !bytes.Equal(got[:stripe], orig[:stripe]) {
		t.Fatal("stripe 0 was not rebuilt in the pack file")
	}
	if !bytes.Equal(got[stripe:], damaged[stripe:]) {
		t.Fatal("the repair changed bytes outside the stripe it rebuilt")
	}

	// Every chunk but the lost ones reads back exactly; the lost ones are
	// ErrCorrupt.
	dr, err := r.OpenDisk(ctx, rp, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	buf := make([]byte, cs)
	for ci, st := range lostOnly {
		off := int64(ci) * cs
		n, err := dr.ReadAt(buf, off)
		if err == io.EOF && off+int64(n) == size {
			err = nil // the short last chunk
		}
		if st == engine.DamageLost {
			if !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("read of lost chunk %d: %v, want ErrCorrupt", ci, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("read of chunk %d after the repair: %v (or wrong bytes)", ci, err)
		}
	}

	// A second verify finds only stripe 1.
	rep = mustVerify(t, r, engine.VerifyOptions{ReadData: true})
	d = damageOf(rep, g.id)
	if d == nil || d.State != engine.DamageBeyondParity || len(rep.Damaged) != 1 {
		t.Fatalf("verify after the repair: %+v", rep)
	}
	checkStripes("verify after the repair", d.Stripes, wantStripes(engine.DamageRepairable)[1:])
	checkRanges("verify after the repair", rep, rangesOf(lostOnly, cs, size))
}

func blobsIn(states []string, st string) int {
	n := 0
	for _, s := range states {
		if s == st {
			n++
		}
	}
	return n
}

// TestReadRepairsInMemory damages one byte of a chunk and one of a manifest
// page, each within parity. A reader (read-only, so it cannot write) must
// return the right bytes, log a warning that says the pack was repaired in
// memory and to run verify --repair, and leave the files as they are.
func TestReadRepairsInMemory(t *testing.T) {
	ctx := context.Background()
	dir, rp, want := smallRepo(t)
	w := enginetest.Open(t, dir, engine.OpenOptions{})
	ids, err := w.ChunkIDs(ctx, &rp.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	var damaged []string
	for _, id := range []engine.ID{ids[5], rp.Disks[0].Pages[0]} {
		p, off, stored, err := engine.BlobLocation(w, id)
		if err != nil {
			t.Fatal(err)
		}
		flipBitAt(t, p, off+int64(stored)/2, 0)
		damaged = append(damaged, p)
	}
	w.Close()
	before := map[string][]byte{}
	for _, p := range damaged {
		before[p], _ = os.ReadFile(p)
	}

	var log enginetest.LogBuffer
	r := enginetest.Open(t, dir, engine.OpenOptions{Logger: log.Logger()})
	if got := readAll(t, r, rp, 0); !bytes.Equal(got, want) {
		t.Fatal("a read through damage within parity returned wrong bytes")
	}
	for _, p := range damaged {
		id := hex.EncodeToString(packID(t, p))
		msg := "pack " + id + " is damaged"
		if !strings.Contains(log.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, log.String())
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, before[p]) {
			t.Errorf("a reader wrote pack %s", id)
		}
	}
	for _, s := range []string{"level=WARN", "repaired in memory", "ahvfs verify --repair"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, log.String())
		}
	}
}

// TestVerifyKeepsGoing damages two packs beyond repair: the pack holding
// the manifest pages is cut short and its sidecar removed, and a data pack
// has a stripe beyond parity. Verify must not stop at either: it lists
// both packs, and the restore point with every byte of its disk lost (its
// pages are gone).
func TestVerifyKeepsGoing(t *testing.T) {
	dir, rp, _ := smallRepo(t)
	g := bigDataPack(t, dir, rp)
	stripe := int64(g.k * g.shardSize)
	for i := range 3 {
		flipBitAt(t, g.pack, stripe+int64(i*g.shardSize)+7, 1)
	}
	var pagePack string
	for p := range pagePacks(t, dir, rp) {
		pagePack = p
	}
	st, _ := os.Stat(pagePack)
	if err := os.Truncate(pagePack, st.Size()/3); err != nil {
		t.Fatal(err)
	}
	os.Remove(strings.TrimSuffix(pagePack, ".pack") + ".par")

	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	for _, o := range []engine.VerifyOptions{{ReadData: true}, {Repair: true}} {
		rep := mustVerify(t, r, o)
		if damageOf(rep, g.id) == nil || damageOf(rep, hex.EncodeToString(packID(t, pagePack))) == nil {
			t.Fatalf("verify %+v does not list both damaged packs: %+v", o, rep)
		}
		want := []engine.DamagedRange{{Disk: "disk-0", Offset: 0, Length: rp.Disks[0].Size, State: engine.DamageLost}}
		if len(rep.Affected) != 1 || !slices.Equal(rep.Affected[0].Ranges, want) {
			t.Fatalf("verify %+v: affected %+v, want %+v", o, rep.Affected, want)
		}
		if !strings.Contains(strings.Join(rep.Problems, "\n"), "manifest page") {
			t.Fatalf("verify %+v: problems do not name the manifest pages: %q", o, rep.Problems)
		}
	}
}
