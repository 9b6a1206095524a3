package xapisim

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/ahvfs/ahvfs/internal/simkit"
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
	c, err := simkit.NewCerts(simkit.CertRequest{Org: "ahvfs xapisim", CAName: "xapisim CA", Name: s.opts.HostName,
		DNSNames: []string{s.opts.HostName, "localhost"}, IPs: s.certIPs()})
	if err != nil {
		return fmt.Errorf("xapisim: %w", err)
	}
	keyPEM, err := c.KeyPEM()
	if err != nil {
		return fmt.Errorf("xapisim: %w", err)
	}
	certPEM := c.CertPEM()
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}, {s.caFile, c.CAPEM(), 0o644}} {
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
	s.tlsConf = simkit.ServerTLS(cert)
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
