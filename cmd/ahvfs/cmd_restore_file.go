package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/extract"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "restore-file",
			Usage:     "copy files out of a guest filesystem of a restore point (no mount needed)",
			ArgsUsage: "VM@TIME disk-N/part-M/PATH...",
			Description: "Copies files, directories (recursively) and symlinks with their mode, times and, when run\n" +
				"as root, owners into --to DIR, each under its own name. Existing files are not overwritten\n" +
				"unless --overwrite is given; a symlink already in --to is never written through.\n\n" +
				"Setuid, setgid and sticky bits are dropped (and each such file named on stderr) unless\n" +
				"--preserve-special is given. A symlink whose target leaves --to is never written without\n" +
				"saying so: --symlinks relative (the default) makes an absolute target that points inside\n" +
				"the restored tree relative and skips the others, skip skips them all, keep writes them as\n" +
				"they are; each such link is named on stderr. Devices, FIFOs and sockets are not restored.\n\n" +
				"With --to-vm the files go straight into that running VM instead (Prism vmm v4.3, guest tools in the\n" +
				"guest): the cluster reads the restore point's disk from 'ahvfs nfs-serve' at --nfs, registered as an\n" +
				"external repository for the time of the copy, and logs in to the guest with --guest-credentials-file\n" +
				"(a file: the user on the first line, the password on the second). Each file goes back to its own path\n" +
				"in the guest, or under --to (a guest directory); directories are copied file by file. The guest tools\n" +
				"write the files as the guest user: owners, modes and times are the guest's defaults, not the backup's,\n" +
				"and symlinks and special files are left out (each named on stderr), as are empty directories.",
			Flags: append(clusterFlags(),
				repoPasswordFlag(),
				&cli.StringFlag{Name: "to", Usage: "directory to restore into (created if missing); with --to-vm, the `DIR` in the guest (default: each file's own path)"},
				&cli.StringFlag{Name: "to-vm", Usage: "copy into this running VM (by `NAME`) instead of a local directory"},
				&cli.StringFlag{Name: "guest-credentials-file", Usage: "with --to-vm: `FILE` with the guest's user (first line) and password (second line)"},
				&cli.StringFlag{Name: "nfs", Usage: "with --to-vm: the ahvfs NFS server as the cluster reaches it, `HOST[:PORT]` (port default 2049)"},
				&cli.BoolFlag{Name: "overwrite", Usage: "replace existing files and symlinks (directories are merged)"},
				&cli.BoolFlag{Name: "preserve-special", Usage: "keep setuid, setgid and sticky bits (owners are restored when run as root either way)"},
				&cli.StringFlag{Name: "symlinks", Value: string(extract.SymlinksRelative),
					Usage: "symlinks whose target leaves --to: relative (rewrite absolute targets inside the restored tree, skip the rest), skip, or keep (write as they are)"},
			),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() < 2 {
					return usagef("restore-file: want VM@TIME disk-N/part-M/PATH...")
				}
				if c.String("to-vm") != "" {
					return restoreFilesToVM(c, env)
				}
				for _, f := range []string{"guest-credentials-file", "nfs"} {
					if c.IsSet(f) {
						return usagef("restore-file: --%s goes with --to-vm only", f)
					}
				}
				if c.String("to") == "" {
					return usagef("restore-file: --to DIR is required (or --to-vm NAME)")
				}
				policy, err := extract.ParseSymlinkPolicy(c.String("symlinks"))
				if err != nil {
					return usagef("restore-file: --symlinks: %v", err)
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runRestoreFile(c.Context, env, r, c.Args().First(), c.Args().Tail(), restoreFileOptions{
					To: c.String("to"), Overwrite: c.Bool("overwrite"), PreserveSpecial: c.Bool("preserve-special"), Symlinks: policy})
			},
		}
	})
}

type restoreFileOptions struct {
	To              string
	Overwrite       bool
	PreserveSpecial bool
	Symlinks        extract.SymlinkPolicy
}

// restoredItem is what one PATH argument restored.
type restoredItem struct {
	Path string `json:"path"`
	*extract.Result
}

type restoreFileResult struct {
	RestorePoint string         `json:"restore_point"`
	To           string         `json:"to"`
	Items        []restoredItem `json:"items"`
}

// restoreFilePath checks a PATH argument and returns it clean: a path
// below a restore point, starting at disk-N, where ".." may not climb out
// of the guest filesystem (disk-N/part-M).
func restoreFilePath(p string) (string, error) {
	var comps []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(comps) <= 2 {
				return "", usagef("restore-file: path %q: '..' climbs out of disk-N/part-M", p)
			}
			comps = comps[:len(comps)-1]
		default:
			comps = append(comps, c)
		}
	}
	if len(comps) == 0 || !strings.HasPrefix(comps[0], "disk-") {
		return "", usagef("restore-file: path %q: want disk-N/part-M/PATH", p)
	}
	return strings.Join(comps, "/"), nil
}

// restoreFilePaths checks and cleans every PATH argument (restoreFilePath).
func restoreFilePaths(paths []string) ([]string, error) {
	var rels []string
	for _, p := range paths {
		rel, err := restoreFilePath(p)
		if err != nil {
			return nil, err
		}
		rels = append(rels, rel)
	}
	return rels, nil
}

func runRestoreFile(ctx context.Context, env *cliEnv, r *engine.Repository, name string, paths []string, o restoreFileOptions) error {
	rels, err := restoreFilePaths(paths)
	if err != nil {
		return err
	}
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log, RefreshInterval: -1})
	if err != nil {
		return err
	}
	defer tree.Close()
	if err := os.MkdirAll(o.To, 0o755); err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	eo := extract.Options{Overwrite: o.Overwrite, PreserveSpecial: o.PreserveSpecial, Owners: os.Geteuid() == 0, Symlinks: o.Symlinks}
	res := restoreFileResult{RestorePoint: rp.Name(), To: o.To}
	for _, rel := range rels {
		item, err := extract.Copy(ctx, tree, rptree.RestorePointDir(rp), rel, o.To, eo)
		if item != nil {
			warnRestored(env.Stderr, item, eo)
		}
		if errors.Is(err, extract.ErrExists) {
			err = fmt.Errorf("%w (use --overwrite to replace it)", err)
		}
		if err != nil {
			return fmt.Errorf("restore-file %s %s: %w", rp.Name(), rel, err)
		}
		res.Items = append(res.Items, restoredItem{Path: rel, Result: item})
		if !env.JSON {
			fmt.Fprintf(env.Stdout, "restored %s → %s (%d files, %d dirs, %d symlinks, %s)\n",
				rel, item.Dest, item.Files, item.Dirs, item.Symlinks, ibytes(item.Bytes))
		}
	}
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	return nil
}

// warnRestored tells w about every file restored otherwise than the guest
// has it: special files not restored, special bits dropped and links that
// leave --to (skipped or kept) by name; links made relative by number.
func warnRestored(w io.Writer, item *extract.Result, o extract.Options) {
	for _, s := range item.Skipped {
		fmt.Fprintf(w, "restore-file: skipped special file %s (devices, FIFOs and sockets are not restored)\n", s)
	}
	for _, m := range item.SpecialBitsDropped {
		fmt.Fprintf(w, "restore-file: %s: mode %s restored as %s: setuid, setgid and sticky bits dropped (--preserve-special keeps them)\n",
			m.Path, m.Mode, m.Restored)
	}
	for _, l := range item.LinksOutside {
		if l.Written != "" {
			fmt.Fprintf(w, "restore-file: symlink %s -> %s points outside --to; written as it is (--symlinks %s)\n", l.Path, l.Target, o.Symlinks)
			continue
		}
		fmt.Fprintf(w, "restore-file: symlink %s -> %s points outside --to; not restored (--symlinks keep writes it)\n", l.Path, l.Target)
	}
	if n := len(item.LinksRewritten); n > 0 {
		fmt.Fprintf(w, "restore-file: %d absolute symlinks under %s point inside the restored tree: made relative (--json lists them)\n", n, item.Dest)
	}
}
