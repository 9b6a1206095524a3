package prismsim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ahvfs/ahvfs/internal/mkimage"
)

// DemoOptions tunes AddDemoVMs.
type DemoOptions struct {
	// DiskSize of each VM's first disk (default 1 GiB). Every second VM gets
	// a second disk of DiskSize/4.
	DiskSize int64
	// Fill is the fraction of each filesystem filled with real files
	// (default 0.3).
	Fill float64
	// Prefix of the VM names (default "demo-vm-"): demo-vm-1, demo-vm-2, ...
	Prefix string
}

// AddDemoVMs adds n VMs whose disks hold GPT disks with one ext4 filesystem
// each, filled with real files by internal/mkimage (seeded by the VM number, so
// the same n gives the same content). NGT cycles through VSS-capable,
// installed and absent.
func (s *Sim) AddDemoVMs(ctx context.Context, n int, o DemoOptions) ([]VMInfo, error) {
	if o.DiskSize <= 0 {
		o.DiskSize = 1 << 30
	}
	if o.Fill <= 0 {
		o.Fill = 0.3
	}
	if o.Prefix == "" {
		o.Prefix = "demo-vm-"
	}
	work, err := os.MkdirTemp(s.dir, ".demo-*")
	if err != nil {
		return nil, fmt.Errorf("prismsim: demo: %w", err)
	}
	defer os.RemoveAll(work)
	ngts := []NGT{NGTVSS, NGTInstalled, NGTAbsent}
	var out []VMInfo
	for i := 1; i <= n; i++ {
		sizes := []int64{o.DiskSize}
		if i%2 == 0 {
			sizes = append(sizes, max(o.DiskSize/4, 16<<20))
		}
		var files []string
		for j, size := range sizes {
			tree := filepath.Join(work, fmt.Sprintf("tree-%d-%d", i, j))
			partSize := size - 2<<20 // GPT: 1 MiB before, 1 MiB after
			if _, err := mkimage.Tree(ctx, tree, int64(float64(partSize)*o.Fill), mkimage.TreeOptions{Seed: uint64(i*10 + j)}); err != nil {
				return out, fmt.Errorf("prismsim: demo tree: %w", err)
			}
			img := filepath.Join(work, fmt.Sprintf("vm-%d-disk-%d.raw", i, j))
			err := mkimage.Build(ctx, img, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{
				{FS: mkimage.Ext4, Size: partSize, Dir: tree, Label: fmt.Sprintf("vm%d-d%d", i, j)}}})
			if err != nil {
				return out, fmt.Errorf("prismsim: demo image: %w", err)
			}
			os.RemoveAll(tree)
			files = append(files, img)
		}
		info, err := s.AddVM(ctx, fmt.Sprintf("%s%d", o.Prefix, i), files, VMOptions{NGT: ngts[(i-1)%len(ngts)], Move: true})
		if err != nil {
			return out, err
		}
		out = append(out, info)
	}
	return out, nil
}
