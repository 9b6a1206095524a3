package nfs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	gonfs "github.com/willscott/go-nfs"
)

// go-nfs logs through one package-level Logger; setLogger routes it to
// slog: its errors as warnings (a client's bad request is not ours), the
// rest at debug.
var logMu sync.Mutex

func setLogger(l *slog.Logger) {
	logMu.Lock()
	defer logMu.Unlock()
	gonfs.SetLogger(&slogAdapter{l: l})
}

// slogAdapter implements go-nfs's Logger interface.
type slogAdapter struct {
	l     *slog.Logger
	level gonfs.LogLevel
}

func (a *slogAdapter) SetLevel(level gonfs.LogLevel) { a.level = level }
func (a *slogAdapter) GetLevel() gonfs.LogLevel      { return gonfs.InfoLevel }
func (a *slogAdapter) ParseLevel(level string) (gonfs.LogLevel, error) {
	return gonfs.Log.ParseLevel(level)
}

func (a *slogAdapter) log(lv slog.Level, args ...any) {
	if a.l.Enabled(context.Background(), lv) {
		a.l.Log(context.Background(), lv, "nfs: "+fmt.Sprint(args...))
	}
}

func (a *slogAdapter) logf(lv slog.Level, format string, args ...any) {
	if a.l.Enabled(context.Background(), lv) {
		a.l.Log(context.Background(), lv, "nfs: "+fmt.Sprintf(format, args...))
	}
}

func (a *slogAdapter) Panic(args ...any)                 { a.log(slog.LevelError, args...) }
func (a *slogAdapter) Fatal(args ...any)                 { a.log(slog.LevelError, args...) }
func (a *slogAdapter) Error(args ...any)                 { a.log(slog.LevelWarn, args...) }
func (a *slogAdapter) Warn(args ...any)                  { a.log(slog.LevelWarn, args...) }
func (a *slogAdapter) Info(args ...any)                  { a.log(slog.LevelDebug, args...) }
func (a *slogAdapter) Debug(args ...any)                 { a.log(slog.LevelDebug, args...) }
func (a *slogAdapter) Trace(args ...any)                 { a.log(slog.LevelDebug, args...) }
func (a *slogAdapter) Print(args ...any)                 { a.log(slog.LevelDebug, args...) }
func (a *slogAdapter) Panicf(format string, args ...any) { a.logf(slog.LevelError, format, args...) }
func (a *slogAdapter) Fatalf(format string, args ...any) { a.logf(slog.LevelError, format, args...) }
func (a *slogAdapter) Errorf(format string, args ...any) { a.logf(slog.LevelWarn, format, args...) }
func (a *slogAdapter) Warnf(format string, args ...any)  { a.logf(slog.LevelWarn, format, args...) }
func (a *slogAdapter) Infof(format string, args ...any)  { a.logf(slog.LevelDebug, format, args...) }
func (a *slogAdapter) Debugf(format string, args ...any) { a.logf(slog.LevelDebug, format, args...) }
func (a *slogAdapter) Tracef(format string, args ...any) { a.logf(slog.LevelDebug, format, args...) }
func (a *slogAdapter) Printf(format string, args ...any) { a.logf(slog.LevelDebug, format, args...) }
