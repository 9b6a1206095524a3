package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/bootcheck"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "verify-boot",
			Usage:     "boot a restore point in QEMU (throwaway overlay, no network) and report whether it came up",
			ArgsUsage: "VM@TIME",
			Description: "Starts the restore point's disks in QEMU (KVM when /dev/kvm is usable, TCG otherwise) on the\n" +
				"buses the VM had, each behind a throwaway qcow2 overlay, with no network, and watches the first\n" +
				"serial port until it prints --expect (default: a login prompt), a known boot failure (no kernel,\n" +
				"kernel panic, no bootable device) or --timeout passes. The disks are read from a private FUSE\n" +
				"mount of the repository, or with --nfs from a running 'ahvfs nfs-serve' on its standard ports.\n" +
				"Nothing is written to the repository. Exit code 8 when the guest did not boot; the console\n" +
				"output is printed (and in --json). UEFI VMs boot with OVMF; Secure Boot VMs with Secure Boot\n" +
				"enforced (Microsoft's keys enrolled, Q35 with SMM), so a boot loader they do not sign fails the\n" +
				"check. KVM when it can run the guest, TCG otherwise (the report notes a fallback).",
			Flags: []cli.Flag{
				repoPasswordFlag(),
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up after `DURATION` without the expected text"},
				&cli.StringFlag{Name: "expect", Usage: "`REGEX` the serial console must print (default: a login prompt, '(?im)login:[ \\t]*$'); a kernel message printed on the same line after it starts a line of its own"},
				&cli.StringFlag{Name: "screenshot", Usage: "save the screen as a PNG `FILE` when the check ends"},
				&cli.StringFlag{Name: "nfs", Usage: "read the disks from 'ahvfs nfs-serve' at `HOST` (portmapper on 111, NFS on 2049) instead of a FUSE mount"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("verify-boot: want VM@TIME")
				}
				if err := checkRestorePointArg(c.Args().First()); err != nil {
					return err
				}
				o := bootcheck.Options{Timeout: c.Duration("timeout"), Screenshot: c.String("screenshot"), Logger: env.Log}
				if s := c.String("expect"); s != "" {
					re, err := regexp.Compile(s)
					if err != nil {
						return usagef("verify-boot: --expect: %v", err)
					}
					if re.MatchString("") {
						return usagef("verify-boot: --expect %q matches an empty console: name text the guest prints", s)
					}
					o.Expect = re
				}
				nfsHost, err := verifyBootNFSHost(c.String("nfs"))
				if err != nil {
					return err
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runVerifyBoot(c.Context, env, r, c.Args().First(), nfsHost, o)
			},
		}
	})
}

// verifyBootNFSHost checks --nfs: QEMU's NFS driver finds MOUNT through
// the portmapper and NFS on 2049, so no other port can be given.
func verifyBootNFSHost(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return strings.Trim(s, "[]"), nil // no port
	}
	if port != "2049" {
		return "", usagef("verify-boot: --nfs %s: QEMU reaches NFS on port 2049 through the portmapper only; run 'ahvfs nfs-serve' on its standard ports", s)
	}
	return host, nil
}

func runVerifyBoot(ctx context.Context, env *cliEnv, r *engine.Repository, name, nfsHost string, o bootcheck.Options) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	wd, err := bootcheck.NewWorkDir("")
	if err != nil {
		return err
	}
	defer wd.Close()
	o.WorkDir = wd
	host := nfsHost
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	source := func(d *engine.Disk) string {
		return (&url.URL{Scheme: "nfs", Host: host, Path: "/" + rptree.DiskPath(rp, d)}).String()
	}
	if nfsHost == "" {
		done, err := verifyBootMount(ctx, env, r, wd.MountDir())
		if err != nil {
			return err
		}
		defer done()
		source = func(d *engine.Disk) string {
			return filepath.Join(wd.MountDir(), filepath.FromSlash(rptree.DiskPath(rp, d)))
		}
	}
	m, err := bootcheck.MachineOf(rp, source)
	if err != nil {
		return fmt.Errorf("verify-boot: %w", err)
	}
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "booting %s (%d disk(s), %s memory, %d vCPU) ...\n", rp.Name(), len(m.Disks), ibytes(m.MemoryBytes), m.VCPUs)
	}
	rep, err := bootcheck.Run(ctx, m, o)
	if err != nil {
		return err
	}
	type report struct {
		RestorePoint string `json:"restore_point"`
		*bootcheck.Report
	}
	if env.JSON {
		writeJSON(env.Stdout, report{RestorePoint: rp.Name(), Report: rep})
	} else {
		printBootReport(env, rp.Name(), rep)
	}
	if !rep.Booted {
		why := rep.Reason
		if rep.Matched != "" {
			why += ": " + rep.Matched
		}
		return &notBootedError{rp: rp.Name(), reason: why}
	}
	return nil
}

// verifyBootMount mounts the repository read-only on mnt (in the check's
// work directory) for QEMU to read; done unmounts it.
func verifyBootMount(ctx context.Context, env *cliEnv, r *engine.Repository, mnt string) (func(), error) {
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log, RefreshInterval: -1})
	if err != nil {
		return nil, err
	}
	srv, err := fusefs.Mount(ctx, tree, mnt, fusefs.Options{Logger: env.Log, OthersOnly: true})
	if err != nil {
		tree.Close()
		return nil, fmt.Errorf("verify-boot: mount the repository for QEMU: %w", err)
	}
	served := make(chan struct{})
	go func() { srv.Wait(); close(served) }()
	return func() {
		if err := srv.Unmount(); err != nil {
			srv.UnmountLazy()
		}
		<-served
		tree.Close()
	}, nil
}

// printBootReport prints the outcome, and the console when it failed.
func printBootReport(env *cliEnv, rp string, rep *bootcheck.Report) {
	if rep.Booted {
		fmt.Fprintf(env.Stdout, "BOOTED: %s printed %q after %.1f s (%s)\n", rp, rep.Matched, rep.Seconds, rep.Accel)
	} else {
		fmt.Fprintf(env.Stdout, "NOT BOOTED: %s: %s", rp, rep.Reason)
		if rep.Matched != "" {
			fmt.Fprintf(env.Stdout, ": %q", rep.Matched)
		}
		fmt.Fprintf(env.Stdout, " after %.1f s (%s)\n", rep.Seconds, rep.Accel)
		if strings.TrimSpace(rep.Console) == "" {
			fmt.Fprintln(env.Stdout, "the first serial port printed nothing: verify-boot reads the guest's serial console. A guest that\n"+
				"shows its console on the screen only (Windows; Linux without console=ttyS0) needs --screenshot to be seen,\n"+
				"and --expect with text it prints on the serial port; a slow guest needs a longer --timeout.")
		} else {
			fmt.Fprintln(env.Stdout, "console (last 40 lines):")
			lines := strings.Split(strings.TrimRight(rep.Console, "\n"), "\n")
			for _, l := range lines[max(0, len(lines)-40):] {
				fmt.Fprintln(env.Stdout, "  | "+l)
			}
		}
		if rep.ExitStatus != "" {
			fmt.Fprintf(env.Stdout, "QEMU ended by itself (%s): the guest reset or powered off, or its firmware found nothing to boot\n", rep.ExitStatus)
		}
		if rep.QEMUStderr != "" {
			fmt.Fprintln(env.Stdout, "qemu: "+rep.QEMUStderr)
		}
	}
	switch {
	case rep.Screenshot != "":
		fmt.Fprintf(env.Stdout, "screenshot: %s\n", rep.Screenshot)
	case rep.ScreenshotError != "":
		fmt.Fprintf(env.Stdout, "no screenshot: %s\n", rep.ScreenshotError)
	}
}
