// Package benchlog is the benchmarks' logger: silent, or with -v every
// debug line (each Prism request with its duration) without the request
// and response headers, which drown the timings.
package benchlog

import (
	"log/slog"
	"os"
)

// New returns a logger that discards everything unless verbose.
func New(verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "request_headers" || a.Key == "response_headers" {
				return slog.Attr{}
			}
			return a
		}}))
}
