package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyTellsRepairable flips one byte of a pack: verify --read-data
// must call it repairable (not "NOT repaired") and say how, and report the
// damage in its JSON; verify --repair must repair it; a last verify finds
// nothing.
func TestVerifyTellsRepairable(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	disk := make([]byte, 1200000)
	rnd := rand.New(rand.NewPCG(1, 1))
	for i := range disk {
		disk[i] = byte(rnd.Uint32())
	}
	img := filepath.Join(tmp, "disk.raw")
	if err := os.WriteFile(img, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB", "--parity", "3+2")
	mustCLI(t, "import", "--repo", repo, "--vm", "web01", "--time", "2026-11-22T01:30:00Z", img)
	packs, _ := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	b, _ := os.ReadFile(packs[0])
	b[1000] ^= 0x10
	os.WriteFile(packs[0], b, 0o600)

	out, _, code := runCLI(t, "", "verify", "--repo", repo, "--read-data")
	if code == 0 || strings.Contains(out, "NOT") || !strings.Contains(out, "(repairable: run 'ahvfs verify --repair')") ||
		!strings.Contains(out, "stripe 0 (pack bytes 0-786431): data shard(s) 0 damaged") ||
		!strings.Contains(out, "restore point web01@2026-11-22T01:30:00Z: 1 damaged (1 of them repairable)") ||
		!strings.Contains(out, "disk-0 bytes 0-65535 (64 KiB): repairable") {
		t.Fatalf("verify --read-data of a repairable flip: exit %d:\n%s", code, out)
	}
	out, _, _ = runCLI(t, "", "verify", "--repo", repo, "--read-data", "--json")
	var rep struct {
		OK      bool `json:"ok"`
		Damaged []struct {
			Pack         string `json:"pack"`
			BadShards    int    `json:"bad_shards"`
			Repaired     bool   `json:"repaired"`
			DamagedBlobs int    `json:"damaged_blobs"`
			State        string `json:"state"`
			Stripes      []struct {
				Stripe     int    `json:"stripe"`
				DataShards []int  `json:"data_shards"`
				State      string `json:"state"`
			} `json:"stripes"`
		} `json:"damaged_packs"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.OK || len(rep.Damaged) != 1 {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if d := rep.Damaged[0]; d.BadShards != 1 || d.Repaired || d.DamagedBlobs != 1 || d.State != "repairable" ||
		len(d.Stripes) != 1 || d.Stripes[0].State != "repairable" || len(d.Stripes[0].DataShards) != 1 {
		t.Fatalf("verify --json: %+v", d)
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--repair"); !strings.Contains(out, "(repaired)") {
		t.Fatalf("verify --repair:\n%s", out)
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("verify after the repair:\n%s", out)
	}
}
