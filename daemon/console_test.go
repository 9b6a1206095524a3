package daemon_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/testtls"
	"github.com/ahvfs/ahvfs/rptree"
)

// TestConsoleAPI: the daemon serves the console's API over HTTPS beside
// /metrics. A restore-files user scoped to category Env:prod logs in and
// sees db01 alone on the dashboard and in every answer; web01's restore
// points are not found for it (and the attempt is in the audit log); a
// logout without the CSRF token is refused. An admin's API token sees
// every VM, the one outside its RPO first.
func TestConsoleAPI(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "web01", "web02", "db01")
	if err := e.sim.SetVMCategories(ctx, "db01", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := testtls.NewCA(t, dir, "console")
	srvCert, srvKey := ca.Server(t, "daemon")
	users := filepath.Join(dir, "users.json")
	token := consoleUsers(t, users)
	cfg := e.config(fmt.Sprintf(`
[http]
listen = "127.0.0.1:0"
tls_cert = %q
tls_key = %q
users = %q
[[policy]]
name = "gold"
vms = ["web*"]
every = "1h"
rpo = "2h"
[[policy]]
name = "silver"
vms = ["db01"]
every = "24h"
rpo = "1h"
`, srvCert, srvKey, users))
	e.start(cfg)
	e.expect("backup/gold", "backup/silver")
	// db01's newest point is now older than its RPO; web's are not.
	e.clock.Advance(90 * time.Minute)

	base := "https://" + serveHTTP(t, e, cfg.HTTP)
	pem, _ := os.ReadFile(ca.CertFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	call := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	names := func(body string) []string {
		var v struct{ VMs []struct{ Name string } }
		json.Unmarshal([]byte(body), &v)
		var out []string
		for _, x := range v.VMs {
			out = append(out, x.Name)
		}
		return out
	}

	if code, _ := call("GET", "/api/v1/vms", ""); code != http.StatusUnauthorized {
		t.Fatalf("dashboard without a login: %d", code)
	}
	code, body := call("POST", "/api/v1/login", `{"user":"helpdesk","password":"correct horse battery"}`)
	if code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body := call("GET", "/api/v1/vms", ""); code != http.StatusOK || !slices.Equal(names(body), []string{"db01"}) {
		t.Fatalf("helpdesk's dashboard: %d %s", code, body)
	}
	if code, body := call("GET", "/api/v1/vms/web01/points", ""); code != http.StatusNotFound || strings.Contains(body, "web01@") {
		t.Fatalf("web01's points for helpdesk: %d %s", code, body)
	}
	code, body = call("GET", "/api/v1/vms/db01/points", "")
	var pts struct {
		Points []struct {
			Name, Level string
			Size        int64
		}
	}
	if json.Unmarshal([]byte(body), &pts); code != http.StatusOK || len(pts.Points) != 1 || pts.Points[0].Level != "full" ||
		pts.Points[0].Size <= 0 || !strings.HasPrefix(pts.Points[0].Name, "db01@") {
		t.Fatalf("db01's points: %d %s", code, body)
	}
	checkFiles(t, e.repo, strings.TrimPrefix(pts.Points[0].Name, "db01@"), call)
	if code, _ := call("GET", "/api/v1/vms/web01/points/"+strings.TrimPrefix(pts.Points[0].Name, "db01@")+"/files/", ""); code != http.StatusNotFound {
		t.Fatalf("web01's files for helpdesk: %d", code)
	}
	// The job history: silver's backup of db01, nothing of web01 or gold.
	code, body = call("GET", "/api/v1/jobs", "")
	var jobs struct {
		Jobs []struct {
			Kind, Policy string
			VMs          []struct{ VM string }
		}
	}
	if json.Unmarshal([]byte(body), &jobs); code != http.StatusOK || len(jobs.Jobs) == 0 || strings.Contains(body, "web0") {
		t.Fatalf("helpdesk's job history: %d %s", code, body)
	}
	for _, j := range jobs.Jobs {
		if len(j.VMs) != 1 || j.VMs[0].VM != "db01" {
			t.Fatalf("helpdesk's job history holds %+v", j)
		}
	}
	if code, _ := call("GET", "/api/v1/repository", ""); code != http.StatusForbidden {
		t.Fatalf("the repository's figures for a scoped user: %d", code)
	}
	if code, _ := call("GET", "/metrics", ""); code != http.StatusForbidden {
		t.Fatalf("/metrics (every VM's series) for a scoped user: %d", code)
	}
	if code, _ := call("POST", "/api/v1/logout", ""); code != http.StatusForbidden {
		t.Fatalf("logout without the CSRF token: %d", code)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(audit), `"user":"helpdesk"`) || !strings.Contains(string(audit), `"target":"vm web01"`) {
		t.Fatalf("audit log:\n%s", audit)
	}
	if code, body := call("GET", "/metrics", "", "Authorization", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "ahvfs_backup_last_result") {
		t.Fatalf("/metrics for an admin's token: %d", code)
	}
	if code, body := call("GET", "/api/v1/repository", "", "Authorization", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, `"restore_points"`) {
		t.Fatalf("the repository's figures for an admin: %d %s", code, body)
	}
	if code, body := call("GET", "/api/v1/jobs", "", "Authorization", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, `"gold"`) || !strings.Contains(body, "web01") {
		t.Fatalf("an admin's job history: %d %s", code, body)
	}
	// An admin's API token: every VM, db01 (outside its RPO) first.
	if code, body := call("GET", "/api/v1/vms", "", "Authorization", "Bearer "+token); code != http.StatusOK ||
		!slices.Equal(names(body), []string{"db01", "web01", "web02"}) {
		t.Fatalf("admin's dashboard: %d %s", code, body)
	}
}

// checkFiles browses db01's restore point at `at` through the API down to
// its guest files, downloads one file and the partition's directory as
// .tar.gz and as .zip, and checks each byte, link and name against the
// restore-point tree read straight from the repository.
func checkFiles(t *testing.T, repo, at string, call func(method, path, body string, hdr ...string) (int, string)) {
	t.Helper()
	ctx := context.Background()
	r, err := engine.Open(ctx, repo, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tree, err := rptree.New(r, rptree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := "db01/" + at
	list := func(p string) map[string]string {
		t.Helper()
		code, body := call("GET", "/api/v1/vms/db01/points/"+at+"/files/"+p, "")
		var v struct{ Entries []struct{ Name, Type string } }
		if json.Unmarshal([]byte(body), &v); code != http.StatusOK {
			t.Fatalf("files %q: %d %s", p, code, body)
		}
		out := map[string]string{}
		for _, e := range v.Entries {
			out[e.Name] = e.Type
		}
		return out
	}
	if top := list(""); top["vm.json"] != "file" || top["disk-0.raw"] != "file" || top["disk-0"] != "dir" {
		t.Fatalf("the restore point's top: %v", top)
	}
	var part string
	for name, typ := range list("disk-0") {
		if typ == "dir" && strings.HasPrefix(name, "part-") {
			part = "disk-0/" + name
		}
	}
	if part == "" {
		t.Fatal("no partition listed under disk-0")
	}
	// A page of a directory: names in order from offset, and the total.
	ents, err := fs.ReadDir(tree, root+"/"+part)
	if err != nil || len(ents) < 3 {
		t.Fatalf("the partition's top: %d names, %v", len(ents), err)
	}
	code, body := call("GET", "/api/v1/vms/db01/points/"+at+"/files/"+part+"?offset=1&limit=2", "")
	var pg struct {
		Entries       []struct{ Name string }
		Total, Offset int
	}
	if json.Unmarshal([]byte(body), &pg); code != http.StatusOK || pg.Total != len(ents) || pg.Offset != 1 || len(pg.Entries) != 2 ||
		pg.Entries[0].Name != ents[1].Name() || pg.Entries[1].Name != ents[2].Name() {
		t.Fatalf("names 1 and 2 of %s: %d %s", part, code, body)
	}
	if code, _ := call("GET", "/api/v1/vms/db01/points/"+at+"/files/"+part+"?limit=0", ""); code != http.StatusBadRequest {
		t.Fatalf("limit 0: %d", code)
	}
	want := map[string][]byte{} // archive name → content ("->target" for links)
	var file string
	fs.WalkDir(tree, root+"/"+part, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel := path.Base(part) + strings.TrimPrefix(p, root+"/"+part)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := tree.ReadLink(p)
			want[rel] = []byte("->" + target)
		case d.Type().IsRegular():
			b, err := fs.ReadFile(tree, p)
			if err != nil {
				t.Fatal(err)
			}
			want[rel] = b
			if file == "" && len(b) > 4096 {
				file = strings.TrimPrefix(p, root+"/")
			}
		}
		return nil
	})
	if file == "" || len(want) < 3 {
		t.Fatalf("the guest file system has %d entries and no file over 4 KiB", len(want))
	}
	code, body = call("GET", "/api/v1/vms/db01/points/"+at+"/download/"+file, "")
	if code != http.StatusOK || body != string(want[path.Base(part)+"/"+strings.TrimPrefix(file, part+"/")]) {
		t.Fatalf("download of %s: %d, %d bytes, want %d", file, code, len(body), len(want[path.Base(part)+"/"+strings.TrimPrefix(file, part+"/")]))
	}
	// A restore-files user takes files back, not whole disks.
	if code, _ := call("GET", "/api/v1/vms/db01/points/"+at+"/download/disk-0.raw", ""); code != http.StatusForbidden {
		t.Fatalf("download of a whole disk by a restore-files user: %d", code)
	}
	code, body = call("GET", "/api/v1/vms/db01/points/"+at+"/download/", "")
	gz, err := gzip.NewReader(strings.NewReader(body))
	if code != http.StatusOK || err != nil {
		t.Fatalf("the restore point's archive for a restore-files user: %d %v", code, err)
	}
	var names []string
	for tr := tar.NewReader(gz); ; {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the restore point's archive: %v", err)
		}
		names = append(names, h.Name)
	}
	if !slices.Contains(names, "db01/vm.json") || slices.Contains(names, "db01/disk-0.raw") {
		t.Fatalf("the restore point's archive for a restore-files user holds %d names (vm.json: %v, disk-0.raw: %v)",
			len(names), slices.Contains(names, "db01/vm.json"), slices.Contains(names, "db01/disk-0.raw"))
	}
	for _, format := range []string{"tar.gz", "zip"} {
		code, body := call("GET", "/api/v1/vms/db01/points/"+at+"/download/"+part+"?format="+format, "")
		if code != http.StatusOK {
			t.Fatalf("%s of %s: %d %s", format, part, code, body)
		}
		got := map[string][]byte{}
		if format == "zip" {
			zr, err := zip.NewReader(strings.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				switch {
				case f.Mode()&fs.ModeSymlink != 0:
					got[f.Name] = []byte("->" + string(b))
				case f.Mode().IsRegular():
					got[f.Name] = b
				}
			}
		} else {
			gz, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(gz)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("tar: %v", err)
				}
				switch h.Typeflag {
				case tar.TypeSymlink:
					got[h.Name] = []byte("->" + h.Linkname)
				case tar.TypeReg:
					b, _ := io.ReadAll(tr)
					got[h.Name] = b
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s holds %d files and links, the tree %d", format, len(got), len(want))
		}
		for name, b := range want {
			if !bytes.Equal(got[name], b) {
				t.Fatalf("%s: %s differs from the tree (%d bytes, want %d)", format, name, len(got[name]), len(b))
			}
		}
	}
}
