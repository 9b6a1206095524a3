package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// web is the page and its assets, served as they are: plain HTML, CSS
// and JavaScript, no build step, nothing fetched from elsewhere.
//
//go:embed web
var web embed.FS

// pageRoutes serves the page at / and its assets under /ui/. They are the
// same for everyone and hold no data: the page asks the API, which checks
// the user.
func (c *Console) pageRoutes(mux *http.ServeMux) {
	assets, _ := fs.Sub(web, "web")
	files := http.FileServerFS(assets)
	mux.Handle("GET /ui/", pageHeaders(http.StripPrefix("/ui", files)))
	mux.Handle("GET /{$}", pageHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "index.html")
	})))
}

// pageHeaders sets what a browser needs to keep the page to itself: no
// script, style or frame from elsewhere, no inline script, no sniffing,
// no referrer.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
