package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "import",
			Usage:     "store raw images (files or block devices) as one restore point: disk-0, disk-1, ... in order",
			ArgsUsage: "FILE...",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "vm", Usage: "VM name the restore point belongs to", Required: true},
				&cli.StringFlag{Name: "time", Usage: "restore point time, RFC 3339 (default: now)"},
				&cli.StringFlag{Name: "config", Usage: "file with the VM configuration JSON to keep with the restore point"},
				repoPasswordFlag(),
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() == 0 {
					return usagef("import: name at least one image file")
				}
				o := importOpts{VM: c.String("vm"), Files: c.Args().Slice(), Time: time.Now()}
				if s := c.String("time"); s != "" {
					t, err := time.Parse(time.RFC3339, s)
					if err != nil {
						return usagef("--time %q: want RFC 3339", s)
					}
					o.Time = t
				}
				if p := c.String("config"); p != "" {
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					o.Config = b
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

type importOpts struct {
	VM     string
	Files  []string
	Time   time.Time
	Config []byte
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
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range o.Files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		files = append(files, f)
	}
	// Avoid a clash with a restore point of the same second.
	var w *engine.RestorePointWriter
	var err error
	for range 5 {
		w, err = r.NewRestorePoint(ctx, engine.RestorePointSpec{VM: o.VM, Time: o.Time, Level: engine.LevelImport, Config: o.Config})
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
	for i, f := range files {
		size, err := fileSize(f)
		if err != nil {
			return fmt.Errorf("import %s: %w", f.Name(), err)
		}
		d, err := w.AddDisk(engine.DiskSpec{Index: i, Size: size})
		if err != nil {
			return err
		}
		plan, err := cbt.FilePlan(f, size, r.ChunkSize())
		if err != nil {
			return fmt.Errorf("import %s: %w", f.Name(), err)
		}
		b := prog.bytesBar(fmt.Sprintf("disk-%d %s", i, filepath.Base(f.Name())), size)
		if _, err := cbt.Ingest(ctx, f, plan, d, cbt.Options{Progress: b.set}); err != nil {
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
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	fmt.Fprintf(env.Stdout, "restore point %s: %d disk(s), %s logical, %s new (%s stored) in %.1fs\n",
		rp.Name(), len(rp.Disks), ibytes(rp.LogicalBytes()), ibytes(rp.Stats.NewRawBytes), ibytes(rp.Stats.NewStoredBytes), res.Seconds)
	return nil
}

// fileSize is the size of a regular file or a block device.
func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	n, err := f.Seek(0, 2)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", f.Name(), err)
	}
	return n, nil
}
