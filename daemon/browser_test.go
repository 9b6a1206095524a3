package daemon_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// guestTrees writes the files of the browser test's guest: an ext4
// partition (a binary file, a directory with a symlink) and an NTFS one.
func guestTrees(t *testing.T) (ext, ntfs string) {
	t.Helper()
	root := t.TempDir()
	ext, ntfs = filepath.Join(root, "ext"), filepath.Join(root, "ntfs")
	rng := rand.New(rand.NewPCG(7, 7))
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	files := map[string][]byte{
		"ext/etc/hostname":               []byte("app01\n"),
		"ext/data/report.bin":            big,
		"ext/data/sub/a.txt":             []byte(strings.Repeat("alpha\n", 1000)),
		"ext/data/sub/deeper/b.txt":      []byte("beta\n"),
		"ntfs/Users/Admin/notes.txt":     []byte(strings.Repeat("quarterly notes\r\n", 300)),
		"ntfs/Windows/win.ini":           []byte("[fonts]\r\n"),
		"ntfs/Program Files/App/app.cfg": []byte("mode=prod\r\n"),
	}
	for name, b := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(ext, "data/sub/link")); err != nil {
		t.Fatal(err)
	}
	return ext, ntfs
}

// browserEnv is the simulator with app01 (ext4 and NTFS, category
// Env:prod) and web01, and a daemon protecting both, serving the console
// on loopback.
func browserEnv(t *testing.T) (e *env, base, extTree, appImg string) {
	t.Helper()
	testenv.Commands(t, "chromium", "mkfs.ext4", "mkntfs")
	ctx := context.Background()
	extTree, ntfsTree := guestTrees(t)
	appImg = filepath.Join(t.TempDir(), "app01.img")
	if err := mkimage.Build(ctx, appImg, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{
		{FS: mkimage.Ext4, Size: 24 << 20, Dir: extTree, Label: "root"},
		{FS: mkimage.NTFS, Size: 24 << 20, Dir: ntfsTree, Label: "Windows"},
	}}); err != nil {
		t.Fatal(err)
	}
	e = newEnvWith(t, simtest.Options{}, "web01")
	if _, err := e.sim.AddVM(ctx, "app01", []string{appImg}, prismsim.VMOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetVMCategories(ctx, "app01", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.json")
	consoleUsers(t, users)
	cfg := e.consoleConfig(users, filepath.Join(t.TempDir(), "exports"), `
[[policy]]
name = "gold"
vms = ["app01"]
every = "24h"
[[policy]]
name = "bronze"
vms = ["web01"]
every = "24h"
`)
	e.start(cfg)
	e.expect("backup/gold", "backup/bronze")
	return e, "http://" + serveHTTP(t, e, cfg.HTTP), extTree, appImg
}

// browser drives one headless Chromium (Debian's) through the console.
type browserT struct {
	t        *testing.T
	ctx      context.Context
	base     string
	shots    string // where screenshots go
	n        int
	download string // Chromium's download directory
}

func newBrowser(t *testing.T, base string) *browserT {
	t.Helper()
	exe, err := testenv.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("AHVFS_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	} else {
		shots = filepath.Join(shots, "console", t.Name())
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		// This machine's network is closed: no calls home.
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("password-store", "basic"), chromedp.Flag("use-mock-keychain", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browserT{t: t, ctx: ctx, base: base, shots: shots, download: t.TempDir()}
	// The first call starts the browser: no timeout on it.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: b.download, EventsEnabled: ptr(true)})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	return b
}

func ptr[T any](v T) *T { return &v }

// do runs steps, each within two minutes.
func (b *browserT) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.shot("failed")
		b.t.Fatalf("at %s: %v", loc, err)
	}
}

// goTo shows a page of the console (a hash route) and waits for sel.
func (b *browserT) goTo(hash, sel string) {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[string](fmt.Sprintf("location.hash = %q", hash))(ctx, t)
		return err
	}), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// text is the visible text of sel.
func (b *browserT) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// count is how many elements match sel.
func (b *browserT) count(sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		b.t.Fatal(err)
	}
	return n
}

// shot saves a screenshot of the whole page, numbered in order.
func (b *browserT) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name)), buf, 0o644); err != nil {
		b.t.Error(err)
	}
}

// clickDownload clicks sel (a download link) and returns the file
// Chromium saved.
func (b *browserT) clickDownload(sel string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	b.do(chromedp.Click(chromedp.CSS(sel)))
	for ev, err := range progress {
		if err != nil {
			b.t.Fatalf("download of %s: %v", sel, err)
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			data, err := os.ReadFile(filepath.Join(b.download, ev.GUID))
			if err != nil {
				b.t.Fatal(err)
			}
			return data
		case browser.DownloadProgressStateCanceled:
			b.t.Fatalf("download of %s cancelled", sel)
		}
	}
	b.t.Fatalf("download of %s did not end", sel)
	return nil
}

// login logs in through the form and waits for the dashboard.
func (b *browserT) login(user string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS("form#login")),
		chromedp.SendKeys(chromedp.CSS("#user"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`form#login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("table#vms")))
}

// TestConsoleBrowser drives the console's page in Debian's Chromium: an
// admin logs in, sees the dashboard, opens app01 and a restore point,
// browses into its ext4 and NTFS partitions, downloads a file (byte-exact
// against the guest's) and a directory as .tar.gz (the same files and
// symlink), backs up now and sees the job end, restores to the simulator
// (byte-exact), exports qcow2 and downloads it (byte-exact once converted
// back), and sees the jobs and the repository. Then a restore-files
// user scoped to Env:prod sees app01 alone, and no button to start
// anything. Each page's screenshot is saved ($AHVFS_ARTIFACTS/console).
func TestConsoleBrowser(t *testing.T) {
	e, base, extTree, appImg := browserEnv(t)
	b := newBrowser(t, base)

	b.shot("login")
	b.login("alice")
	if n := b.count("table#vms tbody tr"); n != 2 {
		t.Fatalf("the admin's dashboard lists %d VMs, want 2", n)
	}
	b.shot("dashboard")

	b.do(chromedp.Click(chromedp.CSS(`tr[data-vm="app01"] a`)), chromedp.WaitVisible(chromedp.CSS("table#points")))
	if n := b.count("table#points tbody tr"); n != 1 {
		t.Fatalf("app01 has %d restore points on its page, want 1", n)
	}
	b.shot("restore-points")
	b.do(chromedp.Click(chromedp.CSS(`table#points tbody tr a`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="disk-0"]`)))
	b.shot("restore-point")
	b.do(chromedp.Click(chromedp.CSS(`tr[data-name="disk-0"] a`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="part-1"]`)))
	if n := b.count(`tr[data-name^="part-"]`); n != 2 {
		t.Fatalf("disk-0 shows %d partitions, want 2", n)
	}
	b.shot("partitions")

	// ext4: a file, byte-exact; a directory as .tar.gz.
	b.do(chromedp.Click(chromedp.CSS(`tr[data-name="part-1"] a`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="data"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-name="data"] a`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="report.bin"]`)))
	if got := b.text(`tr[data-name="report.bin"] td.num`); got != "3.0 MiB" {
		t.Errorf("report.bin's size reads %q", got)
	}
	b.shot("ext4-data")
	want, _ := os.ReadFile(filepath.Join(extTree, "data/report.bin"))
	if got := b.clickDownload(`tr[data-name="report.bin"] a.button`); !bytes.Equal(got, want) {
		t.Fatalf("downloaded report.bin: %d bytes, differs from the guest's %d", len(got), len(want))
	}
	archive := b.clickDownload(`tr[data-name="sub"] a[href$="format=tar.gz"]`)
	checkTarGz(t, archive, filepath.Join(extTree, "data/sub"), "sub")
	b.do(chromedp.Click(chromedp.CSS(`tr[data-name="sub"] a`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-name="link"]`)))
	if got := b.text(`tr[data-name="link"] td`); !strings.Contains(got, "→ a.txt") {
		t.Errorf("the symlink reads %q", got)
	}
	b.shot("ext4-symlink")

	// NTFS.
	at := strings.Split(strings.TrimPrefix(locationOf(t, b), "#/vm/app01/"), "/")[0]
	b.goTo("#/vm/app01/"+at+"/disk-0/part-2/Users/Admin", `tr[data-name="notes.txt"]`)
	if got := b.text(`tr[data-name="notes.txt"] td.num`); got != fmt.Sprintf("%.1f KiB", float64(len("quarterly notes\r\n")*300)/1024) {
		t.Errorf("notes.txt's size reads %q", got)
	}
	b.shot("ntfs")
	wantNotes := []byte(strings.Repeat("quarterly notes\r\n", 300))
	if got := b.clickDownload(`tr[data-name="notes.txt"] a.button`); !bytes.Equal(got, wantNotes) {
		t.Fatalf("downloaded notes.txt differs: %q", got[:min(len(got), 40)])
	}

	// Back up now, and watch the job: held by the simulator as it
	// deletes the older snapshot (its disks read), then let go.
	release := e.sim.GateTasks("Delete", 2, 2*time.Minute)
	b.goTo("#/vm/app01", "table#points")
	b.do(chromedp.Click(chromedp.CSS(`h1 button.backup-now`)), chromedp.WaitVisible(chromedp.CSS(`h1 .badge.warn`)))
	// The page reloads the job every second: its disk is read.
	b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](`(document.getElementById("job-log") || {}).textContent.includes("disk done vm=app01")`)(ctx, tg)
		return err
	}))
	if got := b.text(`tr[data-vm="app01"] .muted`); !strings.HasPrefix(got, "50.0 MiB of 50.0 MiB") {
		t.Errorf("app01's progress reads %q", got)
	}
	b.shot("backup-running")
	release()
	b.do(chromedp.WaitVisible(chromedp.CSS(`h1 .badge.ok`)))
	b.shot("backup-job")
	j := e.expect("backup/gold")["backup/gold"]
	if j.Trigger != "console" || len(j.VMs) != 1 || j.VMs[0].VM != "app01" {
		t.Fatalf("the backup the page started: %+v", j)
	}
	b.goTo("#/vm/app01", "table#points")
	if n := b.count("table#points tbody tr"); n != 2 {
		t.Fatalf("app01 has %d restore points after the backup, want 2", n)
	}

	// Restore to the simulator under a new name.
	b.goTo("#/restore/app01/"+at, "form#restore")
	b.do(chromedp.SendKeys(chromedp.CSS("#name"), "app01-copy"), chromedp.SetValue(chromedp.CSS("#data_path"), "rest"))
	b.shot("restore-form")
	b.do(chromedp.Click(chromedp.CSS(`form#restore button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`h1 .badge.ok`)))
	b.shot("restore-job")
	e.expect("restore/")
	copyVM, ok := e.sim.VM("app01-copy")
	if !ok {
		t.Fatal("no VM app01-copy on the simulator")
	}
	sameDisk(t, copyVM.Disks[0], appImg)

	// Export as qcow2; the disk downloaded from the job converts back
	// to the image.
	b.goTo("#/export/app01/"+at, "form#export")
	b.shot("export-form")
	b.do(chromedp.Click(chromedp.CSS(`form#export button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`h1 .badge.ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#job-files a[download="disk-0.qcow2"]`)))
	b.shot("export-job")
	e.expect("export/")
	qcow := filepath.Join(t.TempDir(), "disk-0.qcow2")
	if err := os.WriteFile(qcow, b.clickDownload(`#job-files a[download="disk-0.qcow2"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "disk-0.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	sameDisk(t, raw, appImg)

	b.goTo("#/jobs", `table#jobs tbody tr`)
	if n := b.count(`table#jobs tbody tr`); n != 5 {
		t.Errorf("the jobs page lists %d jobs, want 5 (two backups at start, one now, a restore, an export)", n)
	}
	b.shot("jobs")
	b.goTo("#/repository", "dl#health")
	if got := b.text("dl#health"); !strings.Contains(got, "Restore points") {
		t.Errorf("the repository page reads %q", got)
	}
	b.shot("repository")

	// A restore-files user scoped to Env:prod.
	b.do(chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("form#login")))
	b.login("helpdesk")
	if n, rows := b.count("table#vms tbody tr"), b.text("table#vms tbody"); n != 1 || !strings.Contains(rows, "app01") {
		t.Fatalf("helpdesk's dashboard: %d rows: %s", n, rows)
	}
	if n := b.count("button.backup-now"); n != 0 {
		t.Errorf("helpdesk is offered %d backups", n)
	}
	b.shot("helpdesk-dashboard")
	b.goTo("#/vm/web01", "#error")
	if got := b.text("#error"); !strings.Contains(got, "no VM web01") {
		t.Errorf("web01's page for helpdesk reads %q", got)
	}
	b.goTo("#/vm/app01", "table#points")
	if n := b.count("table#points a.button"); n != 2 || b.count("button.lock, button.forget") != 0 {
		t.Errorf("helpdesk's restore points offer %d links and %d lock or forget buttons", n, b.count("button.lock, button.forget"))
	}
	b.shot("helpdesk-points")
}

// locationOf is the page's hash.
func locationOf(t *testing.T, b *browserT) string {
	t.Helper()
	h, err := chromedp.Run(b.ctx, chromedp.Evaluate[string]("decodeURIComponent(location.hash)"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sameDisk compares a restored disk with the image it came from (the
// restored one may be longer: rounded up).
func sameDisk(t *testing.T, got, want string) {
	t.Helper()
	g, _ := os.ReadFile(got)
	w, _ := os.ReadFile(want)
	if len(w) == 0 || len(g) < len(w) || !bytes.Equal(g[:len(w)], w) || len(bytes.Trim(g[len(w):], "\x00")) != 0 {
		t.Fatalf("restored disk %s (%d bytes) differs from %s (%d bytes)", got, len(g), want, len(w))
	}
}

// checkTarGz compares a .tar.gz of a directory with the directory: the
// same regular files, byte for byte, and the same symlinks, under top.
func checkTarGz(t *testing.T, archive []byte, dir, top string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			got[h.Name] = string(b)
		case tar.TypeSymlink:
			got[h.Name] = "-> " + h.Linkname
		}
	}
	want := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(filepath.Join(top, rel))
		switch {
		case d.Type()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			want[name] = "-> " + l
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			want[name] = string(b)
		}
		return nil
	})
	if len(got) != len(want) {
		t.Fatalf("the archive holds %d files and links, the directory %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("the archive's %s differs (%d bytes, want %d)", k, len(got[k]), len(v))
		}
	}
}
