package xapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ahvfs/ahvfs/xapi"
)

// withTask makes task.create hand out ref and scripts its records.
func withTask(t *testing.T, f *fakeXAPI, ref string, records ...map[string]any) *fakeTask {
	f.handle("task.create", func(p []json.RawMessage) (any, error) {
		if !strings.HasPrefix(str(p[0]), "ahvfs ") {
			t.Errorf("task label %s", p[0])
		}
		return ref, nil
	})
	return f.task(ref, records...)
}

func TestExportRawVDI(t *testing.T) {
	f := newFake(t)
	disk := make([]byte, 3<<20+17)
	rand.Read(disk)
	ft := withTask(t, f, "OpaqueRef:t1", taskRec("success", ""))
	f.handleHTTP("/export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodGet || q.Get("vdi") != "OpaqueRef:vdi" || q.Get("format") != "raw" || q.Get("task_id") != "OpaqueRef:t1" {
			t.Errorf("%s %s", r.Method, r.URL)
		}
		for off := 0; off < len(disk); off += 1 << 16 { // streamed, no Content-Length
			w.Write(disk[off:min(off+1<<16, len(disk))])
			w.(http.Flusher).Flush()
		}
	})
	rc, err := f.connect(t).ExportRawVDI(context.Background(), "OpaqueRef:vdi")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	rc.Close()
	if _, destroyed, _ := ft.state(); !destroyed {
		t.Error("task not destroyed")
	}
}

func TestExportVHD(t *testing.T) {
	f := newFake(t)
	withTask(t, f, "OpaqueRef:t1", taskRec("success", ""))
	var queries []string
	f.handleHTTP("/export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		queries = append(queries, q.Get("vdi")+" "+q.Get("format")+" "+q.Get("base"))
		io.WriteString(w, "conectix")
	})
	c := f.connect(t)
	for _, base := range []xapi.Ref{"OpaqueRef:base", xapi.NullRef} {
		rc, err := c.ExportVHD(context.Background(), "OpaqueRef:vdi", base)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(rc); err != nil || string(b) != "conectix" {
			t.Errorf("read %q, %v", b, err)
		}
		rc.Close()
	}
	if want := []string{"OpaqueRef:vdi vhd OpaqueRef:base", "OpaqueRef:vdi vhd "}; !reflect.DeepEqual(queries, want) {
		t.Errorf("queries %q", queries)
	}
}

func TestExportFailsMidStream(t *testing.T) {
	f := newFake(t)
	withTask(t, f, "OpaqueRef:t1", taskRec("failure", "", "VDI_IO_ERROR", "Device I/O errors"))
	f.handleHTTP("/export", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Get("ref") != "OpaqueRef:vm" || q.Get("use_compression") != "false" {
			t.Errorf("%s", r.URL)
		}
		w.Write([]byte("ova.xml partial")) // then the host gives up and closes
	})
	rc, err := f.connect(t).ExportVM(context.Background(), "OpaqueRef:vm")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !xapi.IsCode(err, "VDI_IO_ERROR") {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "export", "the export failed")
}

func TestExportCloseEarlyCancels(t *testing.T) {
	f := newFake(t)
	ft := withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	f.handleHTTP("/export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 1<<20))
	})
	rc, err := f.connect(t).ExportRawVDI(context.Background(), "OpaqueRef:vdi")
	if err != nil {
		t.Fatal(err)
	}
	rc.Read(make([]byte, 10))
	rc.Close()
	if _, destroyed, cancelled := ft.state(); !cancelled || !destroyed {
		t.Errorf("cancelled %v destroyed %v", cancelled, destroyed) // the fake's task ends at once
	}
}

func TestTransferStatusError(t *testing.T) {
	f := newFake(t)
	ft := withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	f.handleHTTP("/export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "\n<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred\nsecond line")
	})
	_, err := f.connect(t).ExportRawVDI(context.Background(), "OpaqueRef:vdi")
	var he *xapi.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 500 || he.Handler != "export_raw_vdi" {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "export_raw_vdi", "500", "HTTP 500 internal server error</h1>An unexpected error occurred")
	if strings.Contains(err.Error(), "second line") {
		t.Errorf("more than the first line: %v", err)
	}
	if _, _, cancelled := ft.state(); !cancelled {
		t.Error("task not cancelled")
	}
}

// rawImport serves /import_raw_vdi: it answers first, as XAPI does, then
// reads the body and completes the task.
func rawImport(t *testing.T, got *bytes.Buffer, ft *fakeTask) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodPut || q.Get("vdi") != "OpaqueRef:vdi" || q.Get("format") != "raw" || q.Get("task_id") != "OpaqueRef:t1" {
			t.Errorf("%s %s", r.Method, r.URL)
		}
		if len(r.TransferEncoding) > 0 {
			t.Errorf("chunked upload: %v", r.TransferEncoding)
		}
		http.NewResponseController(w).EnableFullDuplex() // answer, then read, as XAPI does
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		n, err := io.Copy(got, r.Body)
		status := "success"
		if err != nil || n != r.ContentLength {
			status = "failure"
			t.Logf("import: %d of %d bytes, %v", n, r.ContentLength, err)
		}
		ft.mu.Lock()
		ft.records = []map[string]any{taskRec(status, "", "IMPORT_ERROR_PREMATURE_EOF")}
		ft.mu.Unlock()
		w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
	}
}

func TestImportRawVDI(t *testing.T) {
	f := newFake(t)
	ft := withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	var got bytes.Buffer
	f.handleHTTP("/import_raw_vdi", rawImport(t, &got, ft))
	c := f.connect(t)
	disk := make([]byte, 5<<20+3)
	rand.Read(disk)
	if err := c.ImportRawVDI(context.Background(), "OpaqueRef:vdi", iotest.HalfReader(bytes.NewReader(disk)), int64(len(disk))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), disk) {
		t.Fatalf("received %d bytes", got.Len())
	}
	if _, destroyed, _ := ft.state(); !destroyed {
		t.Error("task not destroyed")
	}

	// Fewer bytes than announced.
	ft = withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	got.Reset()
	f.handleHTTP("/import_raw_vdi", rawImport(t, &got, ft))
	err := c.ImportRawVDI(context.Background(), "OpaqueRef:vdi", bytes.NewReader(disk[:1000]), int64(len(disk)))
	if err == nil {
		t.Fatal("short body accepted")
	}
	contains(t, err.Error(), "import_raw_vdi")

	// The source fails.
	ft = withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	f.handleHTTP("/import_raw_vdi", rawImport(t, &got, ft))
	boom := errors.New("disk on fire")
	err = c.ImportRawVDI(context.Background(), "OpaqueRef:vdi", io.MultiReader(bytes.NewReader(disk[:100]), iotest.ErrReader(boom)), int64(len(disk)))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "reading the data to send")
}

func TestImportRedirected(t *testing.T) {
	master, member := newFake(t), newFake(t)
	ft := withTask(t, master, "OpaqueRef:t1", taskRec("pending", ""))
	var got bytes.Buffer
	member.mu.Lock()
	member.session = fakeSession // the pool shares sessions
	member.mu.Unlock()
	member.handleHTTP("/import_raw_vdi", rawImport(t, &got, ft))
	master.handleHTTP("/import_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		to := *r.URL
		to.Scheme, to.Host = "https", hostPort(t, member)
		http.Redirect(w, r, to.String(), http.StatusFound) // the SR is local to the member
	})
	data := []byte("hello, member")
	if err := master.connect(t).ImportRawVDI(context.Background(), "OpaqueRef:vdi", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(data) {
		t.Errorf("member received %q", got.String())
	}
}

func TestImportVM(t *testing.T) {
	f := newFake(t)
	ft := withTask(t, f, "OpaqueRef:t1", taskRec("pending", ""))
	xva := bytes.Repeat([]byte("tar!"), 10000)
	f.handleHTTP("/import", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); r.Method != http.MethodPut || q.Get("sr_id") != "OpaqueRef:sr" || q.Get("task_id") != "OpaqueRef:t1" || r.ContentLength != int64(len(xva)) {
			t.Errorf("%s %s (%d bytes)", r.Method, r.URL, r.ContentLength)
		}
		b, _ := io.ReadAll(r.Body)
		ft.mu.Lock()
		ft.records = []map[string]any{taskRec("success", "<value><array><data><value>OpaqueRef:new1</value><value>OpaqueRef:new2</value></data></array></value>")}
		if !bytes.Equal(b, xva) {
			ft.records = []map[string]any{taskRec("failure", "", "IMPORT_ERROR_PREMATURE_EOF")}
		}
		ft.mu.Unlock()
	})
	c := f.connect(t)
	refs, err := c.ImportVM(context.Background(), "OpaqueRef:sr", bytes.NewReader(xva))
	if err != nil || len(refs) != 2 || refs[0] != "OpaqueRef:new1" || refs[1] != "OpaqueRef:new2" {
		t.Fatalf("ImportVM = %v, %v", refs, err)
	}
	if _, err := c.ImportVM(context.Background(), "OpaqueRef:sr", io.MultiReader(bytes.NewReader(xva))); err == nil || !strings.Contains(err.Error(), "ImportVMSize") {
		t.Errorf("unknown length: %v", err)
	}
}
