package s3test

import (
	"testing"

	"github.com/ahvfs/ahvfs/internal/testtls"
)

// writeTLS makes a CA and a server certificate for 127.0.0.1 signed by it
// in dir, and returns the paths of the CA certificate, the server
// certificate and its key.
func writeTLS(t testing.TB, dir string) (ca, cert, key string) {
	t.Helper()
	c := testtls.NewCA(t, dir, "ahvfs-test")
	cert, key = c.Server(t, "server")
	return c.CertFile, cert, key
}
