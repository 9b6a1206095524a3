package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
)

// Source is the read side of the repository an export needs.
// *engine.Repository implements it; an export never writes to it.
type Source interface {
	// OpenDisk opens disk n of rp for concurrent random reads.
	OpenDisk(ctx context.Context, rp *engine.RestorePoint, n int) (*engine.DiskReader, error)
}

var _ Source = (*engine.Repository)(nil)

// Export formats.
const (
	FormatQCOW2 = "qcow2"
	FormatVMDK  = "vmdk"
	FormatVHDX  = "vhdx"
	FormatRaw   = "raw"
)

// Options configure Export. Zero values mean the documented default.
type Options struct {
	// Format of the disk files: qcow2 (default), vmdk (streamOptimized, as
	// vSphere imports it with an OVF), vhdx or raw (sparse).
	Format string
	// OutDir receives disk-N.<format>, <vm>.ovf and <vm>.xml (libvirt). It
	// is created if missing; existing files of the same names are an
	// error. Required.
	OutDir string
	// Disks selects disks by index (disk-N); nil exports all.
	Disks []int
	// QemuImg is the qemu-img binary (default "qemu-img" from $PATH).
	QemuImg string
	// Progress, if set, is called with the bytes of a disk read so far
	// (from several goroutines; done is monotonic per disk).
	Progress func(disk int, done, total int64)
	// Logger receives debug lines (default: discard).
	Logger *slog.Logger
}

// Validate reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	switch o.Format {
	case "", FormatQCOW2, FormatVMDK, FormatVHDX, FormatRaw:
	default:
		errs = append(errs, fmt.Errorf("format %q: want qcow2, vmdk, vhdx or raw", o.Format))
	}
	if o.OutDir == "" {
		errs = append(errs, errors.New("no output directory"))
	}
	return errors.Join(errs...)
}

// ExportedDisk is one converted disk.
type ExportedDisk struct {
	Name   string `json:"name"` // disk-N
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size"` // virtual size
	Bus    string `json:"bus"`
	Index  int    `json:"index"`
}

// Result says what Export wrote.
type Result struct {
	RestorePoint string         `json:"restore_point"`
	Dir          string         `json:"dir"`
	Disks        []ExportedDisk `json:"disks"`
	OVF          string         `json:"ovf"`
	Libvirt      string         `json:"libvirt,omitempty"` // "" for vhdx (libvirt has no vhdx driver)
	Notes        []string       `json:"notes,omitempty"`
	Bytes        int64          `json:"bytes"`
	Duration     time.Duration  `json:"duration_ns"`
}

// Export converts the disks of rp with qemu-img straight from the engine —
// qemu-img reads each disk from an in-process read-only NBD server on a
// unix socket, so no raw copy is ever written — and writes an OVF and a
// libvirt domain XML describing the VM. Files are written under temporary
// names and renamed when complete; a failed export removes them.
func Export(ctx context.Context, src Source, rp *engine.RestorePoint, o Options) (_ *Result, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Format == "" {
		o.Format = FormatQCOW2
	}
	if o.QemuImg == "" {
		o.QemuImg = "qemu-img"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	qemu, err := exec.LookPath(o.QemuImg)
	if err != nil {
		return nil, fmt.Errorf("export needs qemu-img (Debian package qemu-utils): %w", err)
	}
	cfg, err := clusterjob.ConfigOf(rp)
	if err != nil {
		return nil, err
	}
	places, err := clusterjob.PlaceDisks(rp, o.Disks)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	start := time.Now()
	res := &Result{RestorePoint: rp.Name(), Dir: o.OutDir}
	base := safeName(rp.VM)
	res.OVF = filepath.Join(o.OutDir, base+".ovf")
	if o.Format != FormatVHDX {
		res.Libvirt = filepath.Join(o.OutDir, base+".xml")
	} else {
		res.Notes = append(res.Notes, "no libvirt XML: libvirt cannot use vhdx disks (export qcow2 or raw for KVM)")
	}
	var final []string
	for _, p := range places {
		res.Disks = append(res.Disks, ExportedDisk{Name: p.Disk.Name(), Format: o.Format, Size: p.Disk.Size, Bus: p.Bus, Index: p.Index,
			File: filepath.Join(o.OutDir, p.Disk.Name()+"."+o.Format)})
		final = append(final, res.Disks[len(res.Disks)-1].File)
	}
	final = append(final, res.OVF, res.Libvirt)
	for _, f := range final {
		if f == "" {
			continue
		}
		if _, err := os.Lstat(f); err == nil {
			return nil, fmt.Errorf("export: %s exists (choose another --out or remove it)", f)
		}
	}
	var written []string
	defer func() {
		if err != nil {
			for _, f := range written {
				os.Remove(f)
			}
		}
	}()
	sock, err := os.MkdirTemp("", "ahvfs-nbd-")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(sock)
	for i, p := range places {
		out := res.Disks[i].File
		tmp := out + ".partial"
		written = append(written, tmp)
		if err := convertDisk(ctx, src, rp, p.Disk, qemu, filepath.Join(sock, "nbd.sock"), tmp, o); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, out); err != nil {
			return nil, fmt.Errorf("export %s: %w", p.Disk.Name(), err)
		}
		written = append(written, out)
		res.Bytes += p.Disk.Size
	}
	ovf, err := OVF(cfg, rp, res.Disks)
	if err != nil {
		return nil, err
	}
	descs := []struct {
		path string
		data []byte
	}{{res.OVF, ovf}}
	if res.Libvirt != "" {
		lv, err := LibvirtXML(cfg, rp, res.Disks)
		if err != nil {
			return nil, err
		}
		descs = append(descs, struct {
			path string
			data []byte
		}{res.Libvirt, lv})
	}
	for _, f := range descs {
		written = append(written, f.path)
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// convertDisk serves disk d over NBD on sockPath and runs qemu-img convert
// into out.
func convertDisk(ctx context.Context, src Source, rp *engine.RestorePoint, d *engine.Disk, qemu, sockPath, out string, o Options) error {
	dr, err := src.OpenDisk(ctx, rp, d.Index)
	if err != nil {
		return err
	}
	defer dr.Close()
	os.Remove(sockPath)
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		return fmt.Errorf("export %s: nbd socket: %w", d.Name(), err)
	}
	var done atomic.Int64
	data := readerAtFunc(func(p []byte, off int64) (int, error) {
		n, err := dr.ReadAtContext(ctx, p, off)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		if err == nil && o.Progress != nil {
			o.Progress(d.Index, done.Add(int64(n)), d.Size)
		}
		return n, err
	})
	disk := nbdserver.Export{Name: d.Name(), Size: d.Size, Data: data}
	srv := nbdserver.Serve(ctx, ln, nbdserver.Options{
		Lookup: func(_ context.Context, name string) (nbdserver.Export, error) {
			if name != d.Name() && name != "" {
				return nbdserver.Export{}, fmt.Errorf("%w: %q", nbdserver.ErrUnknownExport, name)
			}
			return disk, nil
		},
		Logger: o.Logger,
	})
	args := []string{"convert", "-f", "raw", "-O", o.Format}
	switch o.Format {
	case FormatVMDK:
		args = append(args, "-o", "subformat=streamOptimized")
	case FormatQCOW2:
		args = append(args, "-o", "compat=1.1")
	}
	args = append(args, "-m", "8", "nbd+unix:///"+d.Name()+"?socket="+sockPath, out)
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	o.Logger.Debug("export: qemu-img", "args", args)
	runErr := cmd.Run()
	srvErr := srv.Close()
	if srvErr != nil {
		return fmt.Errorf("export %s: %w", d.Name(), srvErr)
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("export %s: qemu-img convert: %v: %s", d.Name(), runErr, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// readerAtFunc adapts a function to io.ReaderAt.
type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// safeName makes a VM name usable as a file name.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	if s == "" || s == "." || s == ".." {
		s = "vm"
	}
	return s
}
