package engine

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// Fuzz targets for every decoder of on-disk data. Each must return an error
// or a value that passes its own checks: never panic, never hang. Seed
// corpora are generated from real encodings below and kept in
// testdata/fuzz.

func samplePack() []byte {
	var body []byte
	var entries []packEntry
	for i, s := range []string{"alpha", "bravo charlie", "delta echo foxtrot"} {
		var id ID
		id[0] = byte(i + 1)
		entries = append(entries, packEntry{ID: id, Offset: uint64(len(body)), Stored: uint32(len(s)), Raw: uint32(len(s)), Flags: codecRaw})
		body = append(body, s...)
	}
	p, _ := sealPack(body, entries, 64, 2, 1)
	return p
}

func FuzzPackFooter(f *testing.F) {
	p := samplePack()
	f.Add(p, int64(0))
	f.Add(p[len(p)-packTrailerSize:], int64(len(p)-packTrailerSize))
	f.Add([]byte(packMagic), int64(0))
	f.Fuzz(func(t *testing.T, tail []byte, extra int64) {
		if extra < 0 || extra > 1<<40 {
			return
		}
		ft, err := decodeFooter(tail, int64(len(tail))+extra)
		if err != nil {
			return
		}
		var next uint64
		for _, e := range ft.Entries {
			if e.Offset != next {
				t.Fatalf("entries out of order: %+v", e)
			}
			next += uint64(e.Stored)
		}
		if next != ft.TableOff || ft.DataLen < ft.TableOff {
			t.Fatalf("inconsistent footer accepted: %+v", ft)
		}
	})
}

// FuzzPack decodes whole pack files, as a writer does with a pack the
// index lost: whatever it accepts must describe blobs inside the file and
// report damage only to shards before the table.
func FuzzPack(f *testing.F) {
	p := samplePack()
	f.Add(p)
	damaged := bytes.Clone(p)
	damaged[3] ^= 1
	f.Add(damaged)
	f.Add(p[:len(p)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		ft, bad, err := decodePack(data)
		if err != nil {
			return
		}
		if ft.DataLen > uint64(len(data)) || ft.TableOff > ft.DataLen {
			t.Fatalf("footer outside the file accepted: %+v", ft)
		}
		for _, e := range ft.Entries {
			if e.Offset+uint64(e.Stored) > ft.TableOff {
				t.Fatalf("blob past the table accepted: %+v", e)
			}
		}
		for _, i := range bad {
			if uint64(i+1)*uint64(ft.ShardSize) > ft.TableOff {
				t.Fatalf("damage to the table's shard %d reported as blob damage", i)
			}
		}
	})
}

func FuzzParity(f *testing.F) {
	data := samplePack()
	sums := shardSums(data[:len(data)-packTrailerSize], 64)
	par, _ := buildParity(data[:len(data)-packTrailerSize], 10, sums, 64, 2, 1)
	f.Add(par, data[:len(data)-packTrailerSize])
	f.Fuzz(func(t *testing.T, par, data []byte) {
		p, err := decodeParity(par, true)
		if err != nil {
			return
		}
		if uint64(len(data)) != p.DataLen {
			return
		}
		if _, err := checkAndRepair(append([]byte(nil), data...), p, true); err != nil {
			return
		}
	})
}

func FuzzManifestPage(f *testing.F) {
	ids := []ID{{1}, {2}, ZeroID, {3}}
	f.Add(encodePage(ids), 4)
	f.Add([]byte{}, 1024)
	f.Fuzz(func(t *testing.T, b []byte, entries int) {
		if entries <= 0 || entries > 1<<16 {
			return
		}
		got, err := decodePage(b, entries)
		if err != nil {
			return
		}
		if !bytes.Equal(encodePage(got), b) {
			t.Fatal("page does not round-trip")
		}
	})
}

func FuzzRestorePointRecord(f *testing.F) {
	rp := &RestorePoint{ID: "abc", VM: "web01", Time: time.Unix(1e9, 0).UTC(), Level: LevelFull,
		Disks: []Disk{{Index: 0, Size: 3 << 20, Pages: []ID{{9}}}}, Config: json.RawMessage(`{"vcpus":2}`)}
	b, _ := encodeRestorePoint(rp)
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"vm":"x","id":"y","time":"2026-01-01T00:00:00Z","disks":[{"size":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rp, err := decodeRestorePoint(b, 1<<20, 1024)
		if err != nil {
			return
		}
		for _, d := range rp.Disks {
			if len(d.Pages) != pagesFor(d.Size, 1<<20, 1024) || d.Size < 0 {
				t.Fatalf("inconsistent record accepted: %+v", d)
			}
		}
	})
}

func FuzzIndexValues(f *testing.F) {
	f.Add(encodeLocation(location{Offset: 5, Stored: 10, Raw: 20, Flags: codecS2}))
	f.Add(encodeLocation(location{Offset: 5, Stored: 10, Raw: 20, Flags: codecS2, CRC: 0xdeadbeef, HasCRC: true}))
	f.Add(encodePackRecord(packRecord{Size: 100, DataLen: 50, Blobs: 2, Sealed: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if l, err := decodeLocation(b); err == nil && !bytes.Equal(encodeLocation(l), b) {
			t.Fatal("location does not round-trip")
		}
		if r, err := decodePackRecord(b); err == nil && !bytes.Equal(encodePackRecord(r), b) {
			t.Fatal("pack record does not round-trip")
		}
	})
}

func FuzzConfig(f *testing.F) {
	c := Config{Format: 1, ID: "x", ChunkSize: 1 << 20, PageEntries: 1024, PackSize: 32 << 20, Compression: CompressS2, Hash: "blake3"}
	c.Parity.Data, c.Parity.Parity, c.Parity.ShardSize = 10, 2, 256<<10
	b, _ := json.Marshal(c)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err != nil {
			return
		}
		if c.ChunkSize&(c.ChunkSize-1) != 0 || c.Format > FormatVersion {
			t.Fatalf("bad config accepted: %+v", c)
		}
	})
}

func FuzzBlobDecode(f *testing.F) {
	c, _ := newCodec(CompressS2, nil)
	h := hasher{}
	plain := bytes.Repeat([]byte("ahvfs blob "), 100)
	id := h.sum(plain)
	enc, flags := c.encode(make([]byte, 0, maxEncodedLen(len(plain))), plain, id, false)
	f.Add(enc, flags, len(plain))
	f.Fuzz(func(t *testing.T, stored []byte, flags byte, raw int) {
		if raw < 0 || raw > 1<<20 {
			return
		}
		out, err := c.decode(nil, stored, flags, raw, id, h)
		if err == nil && !bytes.Equal(out, plain) {
			t.Fatal("decode accepted a blob that does not hash to its ID")
		}
	})
}
