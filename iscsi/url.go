package iscsi

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URL is a parsed iSCSI URL in libiscsi's form:
//
//	iscsi://[<user>[%<secret>]@]<host>[:<port>][/<target-iqn>[/<lun>]][?<options>]
//
// Options are target_user and target_password (mutual CHAP), and
// header_digest and data_digest ("crc32c" or "none").
type URL struct {
	Portal    string // host:port
	TargetIQN string // empty for a portal-only URL
	LUN       uint64
	HasLUN    bool
	CHAP      CHAP
	// HeaderDigest and DataDigest request CRC32C digests.
	HeaderDigest, DataDigest bool
}

// ParseURL parses an iSCSI URL. The secret after '%' is taken verbatim
// (libiscsi does not percent-decode it either).
func ParseURL(s string) (*URL, error) {
	bad := func(why string) error { return fmt.Errorf("parse iscsi URL %q: %s", redactURL(s), why) }
	rest, ok := strings.CutPrefix(s, "iscsi://")
	if !ok {
		return nil, bad("want iscsi://[user[%secret]@]host[:port]/target-iqn/lun")
	}
	var query string
	rest, query, _ = strings.Cut(rest, "?")
	hostPart, path, _ := strings.Cut(rest, "/")
	u := &URL{}
	if i := strings.LastIndexByte(hostPart, '@'); i >= 0 {
		user, secret, _ := strings.Cut(hostPart[:i], "%")
		if user == "" {
			return nil, bad("empty CHAP user")
		}
		u.CHAP.User, u.CHAP.Secret = user, secret
		hostPart = hostPart[i+1:]
	}
	if hostPart == "" {
		return nil, bad("no host")
	}
	addr, err := portalAddr(hostPart)
	if err != nil {
		return nil, bad(err.Error())
	}
	if h, _, _ := net.SplitHostPort(addr); h == "" {
		return nil, bad("no host")
	}
	u.Portal = addr
	path = strings.TrimSuffix(path, "/")
	if path != "" {
		iqn, lun, hasLUN := strings.Cut(path, "/")
		if iqn == "" {
			return nil, bad("empty target name")
		}
		u.TargetIQN = iqn
		if hasLUN {
			n, err := strconv.ParseUint(lun, 10, 14)
			if err != nil {
				return nil, bad(fmt.Sprintf("bad LUN %q", lun))
			}
			u.LUN, u.HasLUN = n, true
		}
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, bad(err.Error())
		}
		for k, v := range q {
			val := v[len(v)-1]
			switch k {
			case "target_user":
				u.CHAP.TargetUser = val
			case "target_password":
				u.CHAP.TargetSecret = val
			case "header_digest", "data_digest":
				var on bool
				switch strings.ToLower(val) {
				case "crc32c":
					on = true
				case "none":
				default:
					return nil, bad(fmt.Sprintf("%s=%q, want crc32c or none", k, val))
				}
				if k == "header_digest" {
					u.HeaderDigest = on
				} else {
					u.DataDigest = on
				}
			default:
				return nil, bad(fmt.Sprintf("unknown option %q", k))
			}
		}
	}
	// A user without a secret is allowed: the caller may take the secret
	// from elsewhere (the CLI reads $AHVFS_ISCSI_SECRET).
	return u, nil
}

// Options returns session options for the URL's portal, target and
// credentials.
func (u *URL) Options() Options {
	return Options{
		Portal:       u.Portal,
		TargetIQN:    u.TargetIQN,
		CHAP:         u.CHAP,
		HeaderDigest: u.HeaderDigest,
		DataDigest:   u.DataDigest,
	}
}

// String formats the URL with the secrets left out.
func (u *URL) String() string {
	var b strings.Builder
	b.WriteString("iscsi://")
	if u.CHAP.User != "" {
		b.WriteString(u.CHAP.User + "@")
	}
	b.WriteString(u.Portal)
	if u.TargetIQN != "" {
		b.WriteString("/" + u.TargetIQN)
		if u.HasLUN {
			b.WriteString("/" + strconv.FormatUint(u.LUN, 10))
		}
	}
	return b.String()
}

// redactURL hides a secret in a URL for error messages.
func redactURL(s string) string {
	rest, ok := strings.CutPrefix(s, "iscsi://")
	if !ok {
		return s
	}
	host, _, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		if j := strings.IndexByte(host[:i], '%'); j >= 0 {
			return "iscsi://" + host[:j] + "%xxx" + rest[i:]
		}
	}
	return s
}
