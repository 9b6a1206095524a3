package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
)

func TestImportListCatStatsVerify(t *testing.T) {
	img := enginetest.Ext4Image(t, 64<<20, 1)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "256KiB", "--parity", "4+2")
	out := mustCLI(t, "import", "--repo", repo, "--vm", "web01", "--time", "2026-11-22T01:30:00Z", "--json", img, img)
	var res importResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("import --json: %v: %s", err, out)
	}
	if res.RestorePoint != "web01@2026-11-22T01:30:00Z" || len(res.Disks) != 2 {
		t.Fatalf("import result: %+v", res)
	}
	// The second disk is the same image: it must add nothing.
	out = mustCLI(t, "list", "--repo", repo, "--json")
	var list []listEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || len(list[0].Disks) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}
	if list[0].Stats.NewRawBytes >= 64<<20 {
		t.Fatalf("two copies of one image stored %d new bytes", list[0].Stats.NewRawBytes)
	}
	text := mustCLI(t, "list", "--repo", repo, "web01")
	if !strings.Contains(text, "web01") || !strings.Contains(text, "import") {
		t.Fatalf("list: %s", text)
	}
	want, _ := os.ReadFile(img)
	for _, d := range []string{"disk-0", "disk-1"} {
		got := mustCLI(t, "cat", "--repo", repo, "web01@latest", d)
		if !bytes.Equal([]byte(got), want) {
			t.Fatalf("cat %s differs from the image", d)
		}
	}
	stats := mustCLI(t, "stats", "--repo", repo, "--json")
	var st struct {
		DedupRatio float64 `json:"dedup_ratio"`
		Packs      int     `json:"packs"`
	}
	if err := json.Unmarshal([]byte(stats), &st); err != nil || st.DedupRatio < 1.9 || st.Packs == 0 {
		t.Fatalf("stats: %v %s", err, stats)
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("verify: %s", out)
	}
}

func TestCLIErrors(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("correct horse\n"), 0o600)
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("battery staple\n"), 0o600)
	mustCLI(t, "init", "--repo", repo, "--encrypt", "--repo-password-file", pw)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no repo flag", []string{"list"}, 2, "no repository"},
		{"not a repository", []string{"list", "--repo", t.TempDir()}, 3, "not an ahvfs repository"},
		{"no password", []string{"list", "--repo", repo}, 5, "the repository is encrypted: give its password with --repo-password-file FILE or AHVFS_REPO_PASSWORD_FILE"},
		{"wrong password", []string{"list", "--repo", repo, "--repo-password-file", wrong}, 5, "wrong repository password (check --repo-password-file or AHVFS_REPO_PASSWORD_FILE)"},
		{"missing file", []string{"import", "--repo", repo, "--repo-password-file", pw, "--vm", "x", "/nonexistent.raw"}, 1, "no such file"},
		{"unknown restore point", []string{"cat", "--repo", repo, "--repo-password-file", pw, "nope@latest", "disk-0"}, 1, "not found"},
		{"bad disk name", []string{"cat", "--repo", repo, "x@latest", "floppy"}, 2, "want disk-N"},
		{"init twice", []string{"init", "--repo", repo}, 1, "not empty"},
		{"encrypt without password file", []string{"init", "--repo", filepath.Join(t.TempDir(), "r"), "--encrypt"}, 2, "--encrypt needs --repo-password-file"},
		{"password without encrypt", []string{"init", "--repo", filepath.Join(t.TempDir(), "r"), "--repo-password-file", pw}, 2, "without --encrypt"},
		{"bad chunk size", []string{"init", "--repo", filepath.Join(t.TempDir(), "r"), "--chunk-size", "3MiB"}, 2, "power of two"},
		{"junk chunk size", []string{"init", "--repo", filepath.Join(t.TempDir(), "r"), "--chunk-size", "lots"}, 2, `invalid value "lots" for --chunk-size`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(errs, c.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errs, c.code, c.msg)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") > 0 {
				t.Fatalf("error is not one line: %q", errs)
			}
		})
	}
}

func TestEncryptedRoundTrip(t *testing.T) {
	img := enginetest.Ext4Image(t, 64<<20, 1)
	repo := filepath.Join(t.TempDir(), "repo")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret"), 0o600)
	mustCLI(t, "init", "--repo", repo, "--encrypt", "--repo-password-file", pw)
	t.Setenv("AHVFS_REPO_PASSWORD_FILE", pw)
	mustCLI(t, "import", "--repo", repo, "--vm", "enc", img)
	got := mustCLI(t, "cat", "--repo", repo, "enc", "disk-0")
	want, _ := os.ReadFile(img)
	if !bytes.Equal([]byte(got), want) {
		t.Fatal("encrypted round trip differs")
	}
	// Chunk IDs are keyed: no pack holds a plain BLAKE3 of any chunk, and no
	// plaintext of the image appears in a pack.
	packs, _ := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	var probe []byte
	for off := 1 << 20; off+64 < len(want); off += 4096 {
		if c := want[off : off+64]; len(bytes.Fields(c)) > 4 { // text from a real file
			probe = c
			break
		}
	}
	if probe == nil {
		t.Fatal("no text found in the image to probe for")
	}
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, probe) {
			t.Fatalf("pack %s holds plaintext", p)
		}
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("verify: %s", out)
	}
}
