// Package testtls makes certificate authorities and certificates for
// tests that run real TLS (S3 peers, ahvfs serve with client
// certificates).
package testtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// T is what reports a failure: a *testing.T, or a tool's own (see
// Must).
type T interface {
	Helper()
	Fatal(args ...any)
}

// Must is a T for programs: the first failure panics with its message,
// which Recover turns back into an error.
type Must struct{}

// Helper implements T.
func (Must) Helper() {}

// Fatal implements T.
func (Must) Fatal(args ...any) { panic(mustFailure{fmt.Errorf("testtls: %s", fmt.Sprint(args...))}) }

type mustFailure struct{ err error }

// Recover, deferred by a function that uses Must, sets *err to the
// failure Must panicked with; other panics go on.
func Recover(err *error) {
	if v := recover(); v != nil {
		f, ok := v.(mustFailure)
		if !ok {
			panic(v)
		}
		*err = f.err
	}
}

// CA is a certificate authority whose certificate is in the file CertFile.
type CA struct {
	CertFile string
	dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	serial   int64
}

// NewCA makes a CA named name; its files go to dir.
func NewCA(t T, dir, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{CertFile: filepath.Join(dir, name+"-ca.pem"), dir: dir, cert: cert, key: key, serial: 1}
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for 127.0.0.1 and returns the
// paths of the certificate and its key.
func (ca *CA) Server(t T, name string) (cert, key string) {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
}

// Client issues a client certificate of common name name.
func (ca *CA) Client(t T, name string) (cert, key string) {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(t T, name string, use x509.ExtKeyUsage, ips []net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{use}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
