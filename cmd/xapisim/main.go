// Command xapisim runs the XCP-ng/XenServer simulator (package xapisim) as
// a process: XenAPI JSON-RPC and xapi's HTTP transfers over HTTPS, VDIs
// over NBD with TLS, VM disks as plain files in the state directory.
//
//	xapisim --listen 127.0.0.1:8443 --state DIR --vm NAME:FILE[,FILE...]
//	        [--nbd-listen 127.0.0.1:10809] [--quiesce] [--firmware uefi]
//
// It prints the URL, the CA certificate, the user (root), the password
// file, the state directory, the NBD address and one line per VM, then
// serves until SIGINT/SIGTERM. The --vm images are copied in on the first
// start (DIR/vms/NAME/disk-N.raw); a restart with the same state keeps the
// VMs, snapshots and VDIs. Without --state the state goes to a new
// temporary directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/xapisim"
)

func main() { simkit.Main("xapisim", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xapisim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen    = fs.String("listen", "127.0.0.1:8443", "HTTPS listen address (JSON-RPC and HTTP transfers)")
		nbdListen = fs.String("nbd-listen", "127.0.0.1:10809", "NBD listen address")
		state     = fs.String("state", "", "state directory (default: a new temporary directory)")
		password  = fs.String("password", "", "root's password (default: from STATE/root.password or random)")
		hostName  = fs.String("host-name", "xapisim.local", "host name in the certificate and in VDI.get_nbd_info")
		taskDelay = fs.Duration("task-delay", 50*time.Millisecond, "time an Async task stays pending before it runs")
		firmware  = fs.String("firmware", "bios", "firmware of the --vm VMs: bios or uefi")
		secure    = fs.Bool("secure-boot", false, "UEFI Secure Boot on the --vm VMs")
		quiesce   = fs.Bool("quiesce", false, "the --vm VMs' guest tools can quiesce (VM.snapshot_with_quiesce works)")
		halted    = fs.Bool("halted", false, "create the --vm VMs powered off")
		quiet     = fs.Bool("quiet", false, "do not log requests' problems to stderr")
		vms       simkit.VMFlag
	)
	fs.Var(&vms, "vm", "NAME:FILE[,FILE...]: a VM whose disks are copies of the images (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var specs []xapisim.VMSpec
	for _, v := range vms {
		name, files, err := simkit.SplitVM(v)
		if err != nil {
			return err
		}
		spec := xapisim.VMSpec{Name: name, Files: files, Firmware: *firmware,
			SecureBoot: *secure, Quiesce: *quiesce, Halted: *halted}
		if err := spec.Validate(); err != nil {
			return fmt.Errorf("--vm %q: %w", v, err)
		}
		specs = append(specs, spec)
	}
	dir, err := simkit.StateDirOrTemp(*state, "xapisim")
	if err != nil {
		return err
	}
	o := xapisim.Options{Listen: *listen, NBDListen: *nbdListen, StateDir: dir, Password: *password,
		HostName: *hostName, TaskDelay: *taskDelay}
	if *taskDelay == 0 {
		o.TaskDelay = -1
	}
	if !*quiet {
		o.Logf = simkit.Logf(stderr, "xapisim")
	}
	sim, err := xapisim.New(ctx, o)
	if err != nil {
		return err
	}
	defer sim.Close()
	for _, spec := range specs {
		if _, err := sim.AddVM(ctx, spec); err != nil {
			return err
		}
	}
	simkit.Contract{URL: sim.URL(), CAFile: sim.CAFile(), User: sim.User(), PasswordFile: sim.PasswordFile(),
		StateDir: sim.StateDir()}.Print(stdout)
	simkit.PrintField(stdout, "NBD", fmt.Sprintf("%s (TLS, subject %s)", sim.NBDAddr(), sim.HostName()))
	for _, v := range sim.VMs() {
		simkit.PrintVM(stdout, v.Name, v.UUID, v.Disks)
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "xapisim: stopping")
	return sim.Close()
}
