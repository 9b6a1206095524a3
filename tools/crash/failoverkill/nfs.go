package main

import (
	"fmt"
	"os"
	"regexp"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// nfsAddrRE finds the address nfs-serve prints on its first line.
var nfsAddrRE = regexp.MustCompile(`on (127\.0\.0\.1:[0-9]+) `)

// startNFS starts `ahvfs nfs-serve` of the DR repository on a port of its
// own choosing, once, and writes the instant plan with its address.
func (k *killer) startNFS() error {
	if k.nfs != nil {
		return nil
	}
	p, line, err := crashproc.StartServer(k.o.Ahvfs, nil, "nfs-serve", "--repo", k.drRepo, "--listen", "127.0.0.1:0", "--portmap", "off")
	if err != nil {
		return err
	}
	m := nfsAddrRE.FindStringSubmatch(line)
	if m == nil {
		p.Kill()
		<-p.Done
		return fmt.Errorf("nfs-serve printed %q", line)
	}
	k.nfs = p
	return os.WriteFile(k.instPlan, []byte(fmt.Sprintf("instant_nfs = %q\n", m[1])+k.instBody), 0o600)
}
