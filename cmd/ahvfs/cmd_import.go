package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "import",
			Usage:     "store raw images (files or block devices) as one restore point: disk-0, disk-1, ... in order; or an XCP-ng XVA export",
			ArgsUsage: "FILE... | VM.xva",
			Description: "An XVA (what `xe vm-export` writes) is read in one pass: its disks, checked against their\n" +
				"checksums, and its VM's configuration, so that `ahvfs restore --target xapi://` recreates the VM.",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "vm", Usage: "`NAME` of the VM the restore point belongs to (docs/FORMAT.md, Names)", Required: true},
				&cli.StringFlag{Name: "time", Usage: "restore point `TIME`, RFC 3339, 1970 to 2261 (default: now)"},
				&cli.StringFlag{Name: "config", Usage: "`FILE` with the VM configuration JSON to keep with the restore point"},
				repoPasswordFlag(),
			}, lockFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() == 0 {
					return usagef("import: name at least one image file")
				}
				o := importOpts{VM: c.String("vm"), Time: time.Now()}
				if err := engine.ValidateVMName(o.VM); err != nil {
					return usagef("--vm: %v", err)
				}
				if s := c.String("time"); s != "" {
					t, err := parseTimeFlag("time", s)
					if err != nil {
						return err
					}
					o.Time = t
				}
				lock, err := lockRule(c, "lock-until", "lock-for")
				if err != nil {
					return err
				}
				if lock != nil {
					o.LockUntil = lock(o.Time)
				}
				if p := c.String("config"); p != "" {
					b, err := readFileContext(c.Context, p, 16<<20)
					if err != nil {
						return fmt.Errorf("import: --config: %w", err)
					}
					o.Config = b
				}
				xva := false
				if c.NArg() == 1 {
					if xva, err = isXVA(c.Context, c.Args().First()); err != nil {
						return err
					}
				}
				if xva {
					if o.Config != nil {
						return usagef("import: an XVA carries its VM's configuration; --config is for raw images")
					}
					return runImportXVA(c, env, c.Args().First(), o)
				}
				defer func() {
					for _, img := range o.Images {
						img.f.Close()
					}
				}()
				for _, name := range c.Args().Slice() {
					f, size, err := openImage(name)
					if err != nil {
						return err
					}
					o.Images = append(o.Images, image{f, size})
				}
				r, err := openRepo(c.Context, c, env, true)
				if err != nil {
					return err
				}
				defer r.Close()
				return runImport(c.Context, env, r, o)
			},
		}
	})
}

// image is one opened image of an import and its size.
type image struct {
	f    *os.File
	size int64
}

type importOpts struct {
	VM     string
	Images []image // opened by openImage; the caller closes them
	Time   time.Time
	Config []byte
	// LockUntil, when set, locks the restore point (see 'ahvfs lock').
	LockUntil time.Time
}

type importResult struct {
	RestorePoint string            `json:"restore_point"`
	Disks        []importDisk      `json:"disks"`
	Stats        engine.WriteStats `json:"stats"`
	Seconds      float64           `json:"seconds"`
}

type importDisk struct {
	Disk string `json:"disk"`
	File string `json:"file"`
	Size int64  `json:"size"`
}

func runImport(ctx context.Context, env *cliEnv, r *engine.Repository, o importOpts) error {
	start := time.Now()
	// Avoid a clash with a restore point of the same second.
	var w *engine.RestorePointWriter
	var err error
	for range 5 {
		w, err = r.NewRestorePoint(ctx, engine.RestorePointSpec{VM: o.VM, Time: o.Time, Level: engine.LevelImport, Config: o.Config, LockUntil: o.LockUntil})
		if err == nil || !errorsIsExists(err) {
			break
		}
		o.Time = o.Time.Add(time.Second)
	}
	if err != nil {
		return err
	}
	defer w.Abort()
	prog := newProgress(ctx, env)
	res := importResult{}
	for i, img := range o.Images {
		f, size := img.f, img.size
		d, err := w.AddDisk(engine.DiskSpec{Index: i, Size: size})
		if err != nil {
			return err
		}
		plan, err := cbt.FilePlan(f, size, r.ChunkSize())
		if err != nil {
			return fmt.Errorf("import %s: %w", f.Name(), err)
		}
		b := prog.bytesBar(fmt.Sprintf("disk-%d %s", i, filepath.Base(f.Name())), size)
		if _, err := cbt.Ingest(ctx, ctxFile{f}, plan, d, cbt.Options{Progress: b.set}); err != nil {
			return fmt.Errorf("import %s: %w", f.Name(), err)
		}
		b.finish()
		res.Disks = append(res.Disks, importDisk{Disk: fmt.Sprintf("disk-%d", i), File: f.Name(), Size: size})
	}
	rp, err := w.Commit(ctx)
	prog.wait()
	if err != nil {
		return err
	}
	res.RestorePoint = rp.Name()
	res.Stats = rp.Stats
	res.Seconds = time.Since(start).Seconds()
	return printImport(env, rp, res)
}

func printImport(env *cliEnv, rp *engine.RestorePoint, res importResult) error {
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	fmt.Fprintf(env.Stdout, "restore point %s: %d disk(s), %s logical, %s new (%s stored) in %.1fs\n",
		rp.Name(), len(rp.Disks), ibytes(rp.LogicalBytes()), ibytes(rp.Stats.NewRawBytes), ibytes(rp.Stats.NewStoredBytes), res.Seconds)
	return nil
}

// isXVA reports whether path is an XVA: a tar whose first member is
// ova.xml. Only a regular file is looked into (opening a FIFO would
// wait for a writer; openImage says what is wrong with it), and the sniff
// is abandoned when ctx ends (a read may hang).
func isXVA(ctx context.Context, path string) (bool, error) {
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return false, nil
	}
	hdr, err := cancelable(ctx, func() ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil // openImage reports it
		}
		defer f.Close()
		b := make([]byte, 512)
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, nil
		}
		return b, nil
	})
	if err != nil || len(hdr) < 512 {
		return false, err
	}
	name, _, _ := strings.Cut(string(hdr[:100]), "\x00")
	return strings.TrimPrefix(name, "./") == "ova.xml" && string(hdr[257:262]) == "ustar", nil
}

// runImportXVA stores an XVA as one restore point (backup.ImportXVA).
func runImportXVA(c *cli.Context, env *cliEnv, path string, o importOpts) error {
	ctx := c.Context
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	r, err := openRepo(ctx, c, env, true)
	if err != nil {
		return err
	}
	defer r.Close()
	start := time.Now()
	prog := newProgress(ctx, env)
	xo := backup.ImportXVAOptions{VM: o.VM, LockUntil: o.LockUntil, Progress: &cliBackupProgress{p: prog}}
	if c.String("time") != "" {
		xo.Time = o.Time
	}
	rp, err := backup.ImportXVA(ctx, r, bufio.NewReaderSize(f, 1<<20), xo)
	prog.wait()
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	res := importResult{RestorePoint: rp.Name(), Stats: rp.Stats, Seconds: time.Since(start).Seconds()}
	for _, d := range rp.Disks {
		res.Disks = append(res.Disks, importDisk{Disk: fmt.Sprintf("disk-%d", d.Index), File: path, Size: d.Size})
	}
	return printImport(env, rp, res)
}
