package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/internal/testtls"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// peers are the certificates of the two sites, from one test CA.
type peers struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPeers(dir string) (_ peers, err error) {
	defer testtls.Recover(&err)
	ca := testtls.NewCA(testtls.Must{}, dir, "sites")
	p := peers{ca: ca.CertFile}
	p.serverCert, p.serverKey = ca.Server(testtls.Must{}, "dr-site")
	p.clientCert, p.clientKey = ca.Client(testtls.Must{}, "prod-site")
	return p, nil
}

func (p peers) clientArgs() []string {
	return []string{"--tls-cert", p.clientCert, "--tls-key", p.clientKey, "--ca-cert", p.ca}
}

// target is a DR repository and the ahvfs serve in front of it.
type target struct {
	repo  string
	url   string
	serve *crashproc.Proc
}

// newTarget makes a fresh DR repository with the source's parameters and
// serves it.
func (k *killer) newTarget(ctx context.Context, n int) (*target, error) {
	t := &target{repo: filepath.Join(k.work, fmt.Sprintf("dr%d", n))}
	if _, err := k.ahvfs(ctx, "setup", "init", "--repo", t.repo, "--copy-params-from", k.src); err != nil {
		return nil, err
	}
	return k.restartServe(t)
}

// urlRE finds the address serve prints on its first line.
var urlRE = regexp.MustCompile(`https://[0-9.]+:[0-9]+`)

// restartServe starts ahvfs serve on t's repository (a port of its own
// choosing) and waits for the line that says where it listens.
func (k *killer) restartServe(t *target) (*target, error) {
	p, line, err := crashproc.StartServer(k.o.Ahvfs, nil, "serve", "--repo", t.repo, "--listen", "127.0.0.1:0",
		"--tls-cert", k.tls.serverCert, "--tls-key", k.tls.serverKey, "--client-ca", k.tls.ca, "--log-level", "info")
	if err != nil {
		return nil, err
	}
	t.url, t.serve = urlRE.FindString(line), p
	if t.url == "" {
		t.stop()
		return nil, fmt.Errorf("serve printed %q", line)
	}
	return t, nil
}

// stop ends the server with SIGTERM, as a service manager would, and
// SIGKILL if it takes more than a minute.
func (t *target) stop() {
	if t.serve == nil || exited(t.serve) {
		return
	}
	syscall.Kill(t.serve.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-t.serve.Done:
	case <-time.After(time.Minute):
		t.serve.Kill()
		<-t.serve.Done
	}
}

// exited reports whether p has exited.
func exited(p *crashproc.Proc) bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}
