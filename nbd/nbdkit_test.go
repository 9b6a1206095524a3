package nbd_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/nbd/nbdtest"
)

func TestNbdkit(t *testing.T) {
	testenv.Commands(t, "nbdkit")
	t.Parallel()
	img := nbdtest.NewImage(t, t.TempDir(), imageSize, 11)

	t.Run("file", func(t *testing.T) {
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{}, "file", "file="+img.Path)
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, QueueDepth: 16})
		if info := c.Info(); info.Size != imageSize || !info.StructuredReplies || !info.BlockStatus {
			t.Fatalf("info %+v", info)
		}
		readAll(t, c, img.Data)
		readConcurrently(t, c, img.Data, 1<<20)
		oddReads(t, c, img.Data)
		checkBlockStatus(t, c, img)
	})
	t.Run("no-structured-replies", func(t *testing.T) {
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{NoStructuredReplies: true}, "file", "file="+img.Path)
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export})
		if info := c.Info(); info.StructuredReplies || info.BlockStatus {
			t.Fatalf("info %+v", info)
		}
		readAll(t, c, img.Data)
	})
	t.Run("min-block-size", func(t *testing.T) {
		// The policy filter fails every request that is not aligned to
		// 4 KiB or longer than 64 KiB: unaligned reads must be widened
		// and long ones split.
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{Filters: []string{"blocksize-policy"}}, "file", "file="+img.Path,
			"blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=65536", "blocksize-error-policy=error")
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export})
		if info := c.Info(); info.MinBlock != 4096 || info.MaxPayload != 65536 || info.MaxRequest != 65536 {
			t.Fatalf("info %+v", info)
		}
		readAll(t, c, img.Data)
		oddReads(t, c, img.Data)
		checkBlockStatus(t, c, img)
	})
	t.Run("read-errors", func(t *testing.T) {
		// Reads fail with EIO while the trigger file exists.
		trigger := filepath.Join(t.TempDir(), "fail-now")
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{Filters: []string{"error"}}, "file", "file="+img.Path,
			"error-pread=EIO", "error-pread-rate=100%", "error-pread-file="+trigger)
		for _, sr := range []bool{true, false} {
			c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, NoStructuredReplies: !sr})
			if err := os.WriteFile(trigger, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100000)
			_, err := c.ReadAtContext(testCtx(t), buf, 4096)
			var ce *nbd.CommandError
			if !errors.As(err, &ce) || !errors.Is(err, syscall.EIO) || errors.Is(err, nbd.ErrConnectionLost) {
				t.Fatalf("read failing on the server (structured %v): %v", sr, err)
			}
			t.Logf("server error (structured %v): %v", sr, err)
			if err := os.Remove(trigger); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadAtContext(testCtx(t), buf, 4096); err != nil {
				t.Fatalf("read after the error cleared: %v", err)
			}
			compare(t, buf, img.Data[4096:4096+len(buf)], 4096)
		}
	})
	t.Run("strict-export-name", func(t *testing.T) {
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{Filters: []string{"exportname"}}, "file", "file="+img.Path,
			"exportname=disk", "exportname-strict=true")
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: "other"})
		if !errors.Is(err, nbd.ErrUnknownExport) && !errors.Is(err, nbd.ErrPolicy) {
			t.Fatalf("dial an unknown export: %v", err)
		}
		t.Logf("unknown export: %v", err)
		readAll(t, dial(t, nbd.Options{Address: srv.Addr, Export: "disk"}), img.Data)
	})
	t.Run("tls", func(t *testing.T) {
		certs := nbdtest.NewTLSDir(t, "nbdkit")
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{Common: nbdtest.Common{TLSDir: certs.Dir}, Filters: []string{"exportname"}},
			"file", "file="+img.Path, "exportname=disk", "exportname-strict=true")
		testTLS(t, srv, img, certs)
	})
	t.Run("unix-uri", func(t *testing.T) {
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{Common: nbdtest.Common{Unix: true}}, "file", "file="+img.Path)
		o, err := nbd.ParseURI("nbd+unix:///disk?socket=" + srv.Addr[len("unix:"):])
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, dial(t, o), img.Data)
	})
	t.Run("memory", func(t *testing.T) {
		// A sparse export much larger than what is read: block status
		// reports it as one hole.
		srv := nbdtest.StartNbdkit(t, nbdtest.NbdkitOptions{}, "memory", "size=1T")
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export})
		exts, err := c.BlockStatus(testCtx(t), 1<<30, 1<<40)
		if err != nil || len(exts) == 0 || !exts[0].Hole() || !exts[0].Zero() || exts[0].Offset != 1<<30 {
			t.Fatalf("block status: %+v, %v", exts, err)
		}
		buf := make([]byte, 8<<20)
		buf[0] = 1
		if _, err := c.ReadAt(buf, 1<<40-int64(len(buf))); err != nil || buf[0] != 0 {
			t.Fatalf("read the end: %v", err)
		}
	})
}
