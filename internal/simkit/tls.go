package simkit

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
	"time"
)

// CertRequest describes the certificates NewCerts makes.
type CertRequest struct {
	Org      string   // both certificates' organization, e.g. "ahvfs prismsim"
	CAName   string   // the CA's common name
	Name     string   // the server certificate's common name
	DNSNames []string // the server certificate's DNS names
	IPs      []net.IP // the server certificate's IP addresses
}

// Certs are a fresh certificate authority and a server certificate it
// signed, both ECDSA P-256: the CA valid for 10 years, the server
// certificate for 2, both from an hour ago (a clock a little behind still
// accepts them).
type Certs struct {
	CA   []byte // the CA certificate, DER
	Cert []byte // the server certificate, DER
	Key  *ecdsa.PrivateKey
}

// NewCerts makes a CA and a server certificate as r describes.
func NewCerts(r CertRequest) (*Certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: r.CAName, Organization: []string{r.Org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("ca cert: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.Name, Organization: []string{r.Org}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     r.DNSNames,
		IPAddresses:  r.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("server cert: %w", err)
	}
	return &Certs{CA: caDER, Cert: der, Key: key}, nil
}

// CAPEM is the CA certificate in PEM, what a client trusts.
func (c *Certs) CAPEM() []byte { return certPEM(c.CA) }

// CertPEM is the server certificate in PEM.
func (c *Certs) CertPEM() []byte { return certPEM(c.Cert) }

// KeyPEM is the server certificate's key in PEM ("EC PRIVATE KEY").
func (c *Certs) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// ServerTLS is a simulator's TLS configuration: cert, TLS 1.2 or later.
func ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}
