package prismsim

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// makeTLS creates a fresh CA and a server certificate for 127.0.0.1,
// 127.0.0.2, ::1, localhost and the listener's own address, and writes the CA
// to DIR/ca.crt.
func (s *Sim) makeTLS() (*tls.Config, error) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv6loopback}
	if ip := net.ParseIP(s.host); ip != nil {
		ips = append(ips, ip)
	}
	c, err := simkit.NewCerts(simkit.CertRequest{Org: "ahvfs prismsim", CAName: "prismsim CA", Name: "prismsim",
		DNSNames: []string{"localhost", "prismsim"}, IPs: ips})
	if err != nil {
		return nil, fmt.Errorf("prismsim: %w", err)
	}
	s.caFile = filepath.Join(s.dir, "ca.crt")
	if err := os.WriteFile(s.caFile, c.CAPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("prismsim: write ca.crt: %w", err)
	}
	return simkit.ServerTLS(tls.Certificate{Certificate: [][]byte{c.Cert, c.CA}, PrivateKey: c.Key}), nil
}
