package xapisim

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

func (s *Sim) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jsonrpc", s.serveJSONRPC)
	mux.HandleFunc("GET /export_raw_vdi", s.serveExportRawVDI)
	mux.HandleFunc("PUT /import_raw_vdi", s.serveImportRawVDI)
	mux.HandleFunc("GET /export", s.serveExport)
	mux.HandleFunc("PUT /import", s.serveImport)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "xapisim: XenAPI at POST /jsonrpc\n")
	})
	admin := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !s.basicAuthOK(r) {
				w.Header().Set("WWW-Authenticate", `Basic realm="xapisim"`)
				http.Error(w, "root's basic auth is required", http.StatusUnauthorized)
				return
			}
			h(w, r)
		})
	}
	admin("GET /sim/inventory", s.simInventory)
	admin("GET /sim/faults", func(w http.ResponseWriter, _ *http.Request) { simkit.WriteJSON(w, http.StatusOK, s.Faults()) })
	admin("POST /sim/faults", s.simAddFault)
	admin("DELETE /sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	admin("GET /sim/gates", func(w http.ResponseWriter, _ *http.Request) { simkit.WriteJSON(w, http.StatusOK, s.Gates()) })
	admin("PUT /sim/gates/{method}", func(w http.ResponseWriter, r *http.Request) {
		s.Hold(r.PathValue("method"))
		w.WriteHeader(http.StatusNoContent)
	})
	admin("DELETE /sim/gates/{method}", func(w http.ResponseWriter, r *http.Request) {
		s.Release(r.PathValue("method"))
		w.WriteHeader(http.StatusNoContent)
	})
	admin("POST /sim/write", s.simWrite)
	admin("POST /sim/quiesce", func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err == nil {
			err = s.SetQuiesce(r.URL.Query().Get("vm"), on)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	admin("POST /sim/sessions/expire", func(w http.ResponseWriter, _ *http.Request) {
		s.ExpireSessions()
		w.WriteHeader(http.StatusNoContent)
	})
	return simkit.RecoverPanics(mux, s.logf, func(w http.ResponseWriter, _ *http.Request, v any) {
		http.Error(w, fmt.Sprint("INTERNAL_ERROR: ", v), http.StatusInternalServerError)
	})
}

func (s *Sim) basicAuthOK(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u), []byte("root")) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(s.password)) == 1
}

// simInventory answers GET /sim/inventory[?wait=DURATION]: the objects,
// after waiting up to DURATION for Async tasks under way.
func (s *Sim) simInventory(w http.ResponseWriter, r *http.Request) {
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil {
			http.Error(w, "wait: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.WaitTasks(d)
	}
	simkit.WriteJSON(w, http.StatusOK, s.Inventory())
}

func (s *Sim) simAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil || f.Method == "" || f.Code == "" {
		http.Error(w, fmt.Sprintf("want {method, code, params, count}: %v", err), http.StatusBadRequest)
		return
	}
	s.AddFault(f)
	simkit.WriteJSON(w, http.StatusOK, s.Faults())
}

// simWrite answers POST /sim/write?vm=NAME&disk=N&offset=OFF: the body is
// written into the VM's disk (Sim.Write).
func (s *Sim) simWrite(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	disk, err1 := strconv.Atoi(q.Get("disk"))
	off, err2 := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err1 != nil || err2 != nil {
		http.Error(w, "want vm, disk and offset", http.StatusBadRequest)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
	if err == nil {
		err = s.Write(q.Get("vm"), disk, off, data)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
