package xapisim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// initTLS loads DIR/ca.crt, DIR/server.crt and DIR/server.key, or makes
// them: a CA and a server certificate for the host name, localhost,
// 127.0.0.1, ::1 and the listener's address. Keeping them across
// restarts lets a client that pinned the certificate (as ahvfs does with
// get_nbd_info's) carry on.
func (s *Sim) initTLS() error {
	s.caFile = filepath.Join(s.dir, "ca.crt")
	certFile, keyFile := filepath.Join(s.dir, "server.crt"), filepath.Join(s.dir, "server.key")
	if cert, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && s.certFits(cert) {
		if _, err := os.Stat(s.caFile); err == nil {
			s.setTLS(cert)
			return nil
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("xapisim: ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "xapisim CA", Organization: []string{"ahvfs xapisim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("xapisim: ca cert: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("xapisim: server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.opts.HostName, Organization: []string{"ahvfs xapisim"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{s.opts.HostName, "localhost"},
		IPAddresses:  s.certIPs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("xapisim: server cert: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("xapisim: server key: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}, {s.caFile, caPEM, 0o644}} {
		if err := atomicfile.WriteFile(f.path, f.data, f.perm); err != nil {
			return fmt.Errorf("xapisim: %w", err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("xapisim: server cert: %w", err)
	}
	s.setTLS(cert)
	return nil
}

func (s *Sim) setTLS(cert tls.Certificate) {
	s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func (s *Sim) certIPs() []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(s.host); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	return ips
}

// certFits reports whether a stored certificate still names this host.
func (s *Sim) certFits(c tls.Certificate) bool {
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || time.Now().After(x.NotAfter.Add(-24*time.Hour)) || !slices.Contains(x.DNSNames, s.opts.HostName) {
		return false
	}
	for _, ip := range s.certIPs() {
		if !slices.ContainsFunc(x.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}
