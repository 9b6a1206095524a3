package nbdtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testtls"
)

// TLSDir holds a CA and a server certificate for 127.0.0.1 in the layout
// qemu-nbd's tls-creds-x509 and nbdkit's --tls-certificates read:
// ca-cert.pem, server-cert.pem, server-key.pem.
type TLSDir struct {
	Dir    string // give to Common.TLSDir
	CAFile string // the CA certificate a client must trust
}

// NewTLSDir makes a CA named name and a server certificate it signs.
func NewTLSDir(t testing.TB, name string) *TLSDir {
	t.Helper()
	work := t.TempDir()
	ca := testtls.NewCA(t, work, name)
	cert, key := ca.Server(t, name+"-server")
	dir := filepath.Join(work, "server")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{ca.CertFile: "ca-cert.pem", cert: "server-cert.pem", key: "server-key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &TLSDir{Dir: dir, CAFile: ca.CertFile}
}
