package main

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/urfave/cli/v2"
)

// restoreFilesToVM is restore-file --to-vm: the files go into a running
// guest through the cluster (restore.FilesToGuest).
func restoreFilesToVM(c *cli.Context, env *cliEnv) error {
	if c.NArg() < 2 {
		return usagef("restore-file: want VM@TIME disk-N/part-M/PATH...")
	}
	for _, f := range []string{"guest-credentials-file", "nfs"} {
		if c.String(f) == "" {
			return usagef("restore-file --to-vm: --%s is required", f)
		}
	}
	if c.Bool("preserve-special") || c.IsSet("symlinks") {
		return usagef("restore-file --to-vm: --preserve-special and --symlinks apply to a local --to only (the guest's tools write regular files)")
	}
	guestDir := c.String("to")
	if guestDir != "" && !strings.HasPrefix(guestDir, "/") {
		return usagef("restore-file --to-vm: --to %q: want an absolute path in the guest", guestDir)
	}
	rels, err := restoreFilePaths(c.Args().Tail())
	if err != nil {
		return err
	}
	cred, err := readGuestCredentials(c.Context, c.String("guest-credentials-file"))
	if err != nil {
		return err
	}
	return withRestoreSite(c, env, restore.Options{}, func(r *engine.Repository, cl *nutanix.Client, o restore.Options) error {
		rp, err := r.Resolve(c.Context, c.Args().First())
		if err != nil {
			return err
		}
		sets, err := guestFileSets(c.Context, env, r, rp, rels, guestDir, c.Bool("overwrite"))
		if err != nil {
			return err
		}
		res, err := restore.FilesToGuest(c.Context, cl, r, rp, sets, restore.GuestFilesOptions{
			VM: c.String("to-vm"), NFS: c.String("nfs"), Credential: cred,
			Journal: o.Journal, Clusters: o.Clusters, Logger: env.Log})
		if err != nil {
			return err
		}
		if env.JSON {
			type out struct {
				*restore.GuestFilesResult
				Sets []restore.DiskFiles `json:"disks"`
			}
			return writeJSON(env.Stdout, out{res, sets})
		}
		for _, s := range sets {
			for _, f := range s.Files {
				fmt.Fprintf(env.Stdout, "disk-%d: %s → %s:%s\n", s.Disk, f.Source, res.VM, f.Destination)
			}
		}
		fmt.Fprintf(env.Stdout, "copied %d file(s) of %s into VM %s in %s (through external repository %s, now removed)\n",
			res.Files, res.RestorePoint, res.VM, res.Duration.Round(1e7), res.Repository)
		return nil
	})
}

// readGuestCredentials reads the user (first line) and password (second
// line) of the guest.
func readGuestCredentials(ctx context.Context, file string) (nutanix.GuestCredential, error) {
	b, err := readFileContext(ctx, file, 64<<10)
	if err != nil {
		return nutanix.GuestCredential{}, fmt.Errorf("--guest-credentials-file: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\n")
	if len(lines) != 2 || strings.TrimSpace(lines[0]) == "" || strings.TrimRight(lines[1], "\r") == "" {
		return nutanix.GuestCredential{}, usagef("--guest-credentials-file %s: want the user on the first line and the password on the second", file)
	}
	return nutanix.GuestCredential{Username: strings.TrimSpace(lines[0]), Password: strings.TrimRight(lines[1], "\r")}, nil
}

// guestFileSets turns disk-N/part-M/PATH arguments into the files to copy,
// per disk: a directory becomes the regular files under it (symlinks and
// special files are named on stderr and left out). A file goes to its own
// path in the guest, or under guestDir.
func guestFileSets(ctx context.Context, env *cliEnv, r *engine.Repository, rp *engine.RestorePoint, rels []string, guestDir string, overwrite bool) ([]restore.DiskFiles, error) {
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log, RefreshInterval: -1})
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	byDisk := map[int]int{} // disk → index in sets
	var sets []restore.DiskFiles
	root := rptree.RestorePointDir(rp)
	for _, rel := range rels {
		comps := strings.SplitN(rel, "/", 3)
		if len(comps) < 3 {
			return nil, usagef("restore-file --to-vm: %q: want disk-N/FILESYSTEM/PATH (part-M or lv-VG-LV, then a file or directory in it)", rel)
		}
		n, err := parseDiskName(comps[0])
		if err != nil {
			return nil, err
		}
		inFS := comps[2] // PATH inside the filesystem
		// The cluster's copy names the disk and the path, not the
		// filesystem: a path that exists in another filesystem of the
		// disk too would be ambiguous.
		if other := sameNameElsewhere(tree, root+"/"+comps[0], comps[1], inFS); other != "" {
			return nil, fmt.Errorf("restore-file --to-vm: %s exists in %s/%s and in %s/%s: the cluster's copy does not say which filesystem it reads; restore it locally with --to DIR",
				inFS, comps[0], comps[1], comps[0], other)
		}
		var files []nutanix.GuestFile
		err = fs.WalkDir(tree, root+"/"+rel, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			sub := strings.TrimPrefix(strings.TrimPrefix(p, root+"/"+rel), "/")
			switch {
			case d.IsDir():
				return nil
			case !d.Type().IsRegular():
				fmt.Fprintf(env.Stderr, "restore-file: %s/%s is not a regular file: not copied into the guest\n", rel, sub)
				return nil
			}
			src := path.Join(inFS, sub)
			dest := "/" + src
			if guestDir != "" {
				dest = path.Join(guestDir, path.Base(inFS), sub)
			}
			files = append(files, nutanix.GuestFile{Source: src, Destination: dest, Overwrite: overwrite})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("restore-file %s %s: %w", rp.Name(), rel, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("restore-file %s %s: no regular file to copy", rp.Name(), rel)
		}
		i, ok := byDisk[n]
		if !ok {
			i = len(sets)
			byDisk[n] = i
			sets = append(sets, restore.DiskFiles{Disk: n})
		}
		sets[i].Files = append(sets[i].Files, files...)
	}
	return sets, nil
}

// sameNameElsewhere is the name of another filesystem of disk dir (in the
// tree) that holds inFS too, or "".
func sameNameElsewhere(tree fs.FS, dir, chosen, inFS string) string {
	entries, err := fs.ReadDir(tree, dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Name() == chosen || !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(tree, dir+"/"+e.Name()+"/"+inFS); err == nil {
			return e.Name()
		}
	}
	return ""
}
