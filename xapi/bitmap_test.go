package xapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
)

const bs = xapi.CBTBlockSize

func TestBitmapOrder(t *testing.T) {
	b := xapi.Bitmap{0b0110_0000, 0b0000_0001}
	for i, want := range []bool{false, true, true, false, false, false, false, false, false, false, false, false, false, false, false, true, false} {
		if b.Changed(int64(i)) != want {
			t.Errorf("Changed(%d) = %v", i, !want)
		}
	}
	if b.Changed(-1) || b.Count() != 3 {
		t.Errorf("Changed(-1) %v, Count %d", b.Changed(-1), b.Count())
	}
}

func TestExtents(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    xapi.Bitmap
		size int64
		want []xapi.Extent
	}{
		{"none", xapi.Bitmap{0, 0}, 16 * bs, nil},
		{"coalesced", xapi.Bitmap{0b0111_0000, 0b1000_0001}, 16 * bs, []xapi.Extent{{bs, 3 * bs}, {8 * bs, bs}, {15 * bs, bs}}},
		{"across bytes", xapi.Bitmap{0b0000_0011, 0b1100_0000}, 16 * bs, []xapi.Extent{{6 * bs, 4 * bs}}},
		{"all", xapi.Bitmap{0xff, 0xff}, 16 * bs, []xapi.Extent{{0, 16 * bs}}},
		{"clipped to a partial last block", xapi.Bitmap{0xff, 0xff}, 3*bs + 100, []xapi.Extent{{0, 3*bs + 100}}},
		{"bits past the disk ignored", xapi.Bitmap{0b0000_1001}, 4 * bs, nil},
		{"disk longer than the bitmap", xapi.Bitmap{0b0000_0001}, 1 << 40, []xapi.Extent{{7 * bs, bs}}},
		{"empty disk", xapi.Bitmap{0xff}, 0, nil},
		{"empty bitmap", nil, 1 << 30, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Extents(tc.size); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Extents = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeBitmap(t *testing.T) {
	for in, want := range map[string]xapi.Bitmap{
		"gAE=":       {0x80, 0x01},
		"gAE":        {0x80, 0x01},
		" gA\nE= \n": {0x80, 0x01},
		"":           {},
	} {
		got, err := xapi.DecodeBitmap(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("DecodeBitmap(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := xapi.DecodeBitmap("not*base64"); err == nil {
		t.Error("bad base64 accepted")
	}
}

func TestListChangedBlocks(t *testing.T) {
	f := newFake(t)
	f.handle("VDI.list_changed_blocks", func(p []json.RawMessage) (any, error) {
		if str(p[0]) != "OpaqueRef:from" || str(p[1]) != "OpaqueRef:to" {
			t.Errorf("params %s", p)
		}
		return base64.StdEncoding.EncodeToString([]byte{0b1100_0000}), nil
	})
	b, err := f.connect(t).ListChangedBlocks(context.Background(), "OpaqueRef:from", "OpaqueRef:to")
	if err != nil || !reflect.DeepEqual(b.Extents(8*bs), []xapi.Extent{{0, 2 * bs}}) {
		t.Fatalf("ListChangedBlocks = %v, %v", b, err)
	}
	f.returns("VDI.list_changed_blocks", "%%%")
	if _, err := f.connect(t).ListChangedBlocks(context.Background(), "OpaqueRef:from", "OpaqueRef:to"); err == nil {
		t.Error("bad bitmap accepted")
	}
}
