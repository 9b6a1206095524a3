package nutanix

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// TLSInfo describes the certificate the endpoint presented.
type TLSInfo struct {
	Subject  string
	Issuer   string
	NotAfter time.Time
	Verified bool // false with Options.Insecure
}

// CheckTLS performs only a TLS handshake with the endpoint, with the trust
// the client uses for requests (system roots + CACertFile, or none with
// Insecure). A verification failure matches ErrTLSVerify.
func (c *Client) CheckTLS(ctx context.Context) (TLSInfo, error) {
	host := c.rest.base.Host
	conf := c.transport.TLSClientConfig.Clone()
	conf.ServerName = c.rest.base.Hostname()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: min(c.opts.Timeout, 15*time.Second)}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return TLSInfo{}, wrapTransportError("TLS handshake", c.rest.base, err)
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return TLSInfo{}, fmt.Errorf("TLS handshake with %s: no certificate", host)
	}
	leaf := st.PeerCertificates[0]
	return TLSInfo{Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter, Verified: !conf.InsecureSkipVerify}, nil
}
