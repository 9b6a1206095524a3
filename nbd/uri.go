package nbd

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseURI turns an NBD URI (doc/uri.md of the NBD project) into Options
// with Address, Export and the TLS fields set:
//
//	nbd://HOST[:PORT]/EXPORT                 plain TCP (default port 10809)
//	nbds://HOST[:PORT]/EXPORT                TLS required
//	nbd+unix:///EXPORT?socket=PATH           Unix socket
//	nbds+unix:///EXPORT?socket=PATH&tls-hostname=NAME
//
// The export name is the path without its leading slash, unescaped.
// Query parameters: socket, tls-hostname (the name the certificate must
// carry), tls-verify-peer (0 turns verification off; lab only) and
// tls-type=x509 (the only kind supported). Other parameters are errors,
// except experimental ones (x-...), which are ignored. nbd:// never
// upgrades to TLS opportunistically: use nbds:// for TLS.
func ParseURI(s string) (Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Options{}, fmt.Errorf("nbd: parse URI: %w", err)
	}
	var o Options
	unix := false
	switch u.Scheme {
	case "nbd":
	case "nbds":
		o.TLS = true
	case "nbd+unix":
		unix = true
	case "nbds+unix":
		o.TLS, unix = true, true
	default:
		return Options{}, fmt.Errorf("nbd: URI %q: scheme %q is not nbd, nbds, nbd+unix or nbds+unix", s, u.Scheme)
	}
	if u.Opaque != "" {
		return Options{}, fmt.Errorf("nbd: URI %q: want %s://...", s, u.Scheme)
	}
	if u.User != nil {
		return Options{}, fmt.Errorf("nbd: URI %q: user names are not supported", s)
	}
	o.Export = strings.TrimPrefix(u.Path, "/")
	var socket string
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return Options{}, fmt.Errorf("nbd: URI %q: parameter %s given %d times", s, k, len(vs))
		}
		v := vs[0]
		switch {
		case k == "socket":
			socket = v
		case k == "tls-hostname":
			o.ServerName = v
		case k == "tls-verify-peer":
			switch v {
			case "0", "false":
				o.InsecureSkipVerify = true
			case "1", "true":
			default:
				return Options{}, fmt.Errorf("nbd: URI %q: tls-verify-peer=%q is not 0 or 1", s, v)
			}
		case k == "tls-type":
			if v != "x509" {
				return Options{}, fmt.Errorf("nbd: URI %q: tls-type=%q is not supported (only x509)", s, v)
			}
		case strings.HasPrefix(k, "x-"):
		default:
			return Options{}, fmt.Errorf("nbd: URI %q: unknown parameter %q", s, k)
		}
	}
	if (o.ServerName != "" || o.InsecureSkipVerify) && !o.TLS {
		return Options{}, fmt.Errorf("nbd: URI %q: TLS parameters need the nbds scheme", s)
	}
	if unix {
		if u.Host != "" {
			return Options{}, fmt.Errorf("nbd: URI %q: a Unix socket URI has no host", s)
		}
		if socket == "" {
			return Options{}, fmt.Errorf("nbd: URI %q: missing socket parameter", s)
		}
		o.Address = "unix:" + socket
	} else {
		if socket != "" {
			return Options{}, fmt.Errorf("nbd: URI %q: socket parameter on a TCP URI", s)
		}
		if u.Hostname() == "" {
			return Options{}, fmt.Errorf("nbd: URI %q: missing host", s)
		}
		port := u.Port()
		if port == "" {
			if strings.HasSuffix(u.Host, ":") {
				return Options{}, fmt.Errorf("nbd: URI %q: empty port", s)
			}
			port = DefaultPort
		}
		o.Address = net.JoinHostPort(u.Hostname(), port)
	}
	if err := o.Validate(); err != nil {
		return Options{}, fmt.Errorf("nbd: URI %q: %w", s, errors.Unwrap(err))
	}
	return o, nil
}
