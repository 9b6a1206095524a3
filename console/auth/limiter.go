package auth

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// LimiterOptions tunes the login Limiter. Zero values mean the defaults.
type LimiterOptions struct {
	// FreeFailures is how many failed logins a client, or a user name
	// from one client, may have before further attempts must wait.
	// Default 5.
	FreeFailures int
	// MinBackoff is the first wait, after the free failures; each
	// further failure doubles it. Default 1 second.
	MinBackoff time.Duration
	// MaxBackoff caps the wait. Default 15 minutes.
	MaxBackoff time.Duration
	// NameFreeFailures is how many failed logins a user name may have
	// from all clients together before its attempts must wait (default
	// 4 × FreeFailures), and NameMaxBackoff caps that wait (default 1
	// minute): guessing one name from many clients goes at about one try
	// a minute, while failing a name on purpose keeps its user out for a
	// minute at most.
	NameFreeFailures int
	NameMaxBackoff   time.Duration
	// Forget drops what is known of a name or client that made no attempt
	// for this long. Default 1 hour.
	Forget time.Duration
	// MaxEntries bounds the names and clients tracked; beyond it, those
	// not waiting are forgotten early. Default 100000.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o LimiterOptions) withDefaults() LimiterOptions {
	if o.FreeFailures <= 0 {
		o.FreeFailures = 5
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 15 * time.Minute
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.NameFreeFailures <= 0 {
		o.NameFreeFailures = 4 * o.FreeFailures
	}
	if o.NameMaxBackoff <= 0 {
		o.NameMaxBackoff = min(time.Minute, o.MaxBackoff)
	}
	o.NameMaxBackoff = max(o.NameMaxBackoff, o.MinBackoff)
	if o.Forget <= 0 {
		o.Forget = time.Hour
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Limiter slows down password guessing: it counts failed logins per
// client address, per user name and client, and per user name. Once one
// of them has had its free failures, attempts it counts wait for a
// backoff that starts at MinBackoff and doubles with every further
// failure, up to its cap (MaxBackoff; NameMaxBackoff for a name alone).
// An attempt refused for waiting is not a failure (it was never checked).
// A successful login resets the user name's counts, not the client's: one
// good account must not reset the count of a client trying others. It is
// safe for concurrent use.
type Limiter struct {
	opts      LimiterOptions
	mu        sync.Mutex
	m         map[string]*attempts
	lastSweep time.Time
}

// attempts is what the Limiter knows of one client, name and client, or
// name.
type attempts struct {
	failures int
	until    time.Time // no attempt before this
	last     time.Time // the last failure
}

// NewLimiter returns a Limiter that knows of no failure.
func NewLimiter(opts LimiterOptions) *Limiter {
	return &Limiter{opts: opts.withDefaults(), m: map[string]*attempts{}}
}

// limiterKey is one count an attempt goes against, with its rule.
type limiterKey struct {
	key  string
	free int
	max  time.Duration
}

// keys are the counts an attempt goes against: the client's, and for a
// valid name (any other string names no user, and would only grow the
// table) the name's from that client and the name's from all.
func (l *Limiter) keys(user, client string) []limiterKey {
	o := l.opts
	c := clientKey(client)
	keys := []limiterKey{{c, o.FreeFailures, o.MaxBackoff}}
	if ValidateName(user) == nil {
		keys = append(keys, limiterKey{"pair " + user + " " + c, o.FreeFailures, o.MaxBackoff},
			limiterKey{"user " + user, o.NameFreeFailures, o.NameMaxBackoff})
	}
	return keys
}

// Allow reports whether a login of user from client may be checked now,
// or how long it must wait.
func (l *Limiter) Allow(user, client string) (wait time.Duration, ok bool) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.keys(user, client) {
		if a := l.m[k.key]; a != nil && now.Before(a.until) {
			wait = max(wait, a.until.Sub(now))
		}
	}
	return wait, wait == 0
}

// Failure counts a failed login of user from client.
func (l *Limiter) Failure(user, client string) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	for _, k := range l.keys(user, client) {
		a := l.m[k.key]
		if a == nil {
			a = &attempts{}
			l.m[k.key] = a
		}
		a.failures++
		a.last = now
		if extra := a.failures - k.free; extra >= 0 {
			a.until = now.Add(l.backoff(extra, k.max))
		}
	}
}

// backoff is the wait after extra failures beyond the free ones, at most
// most.
func (l *Limiter) backoff(extra int, most time.Duration) time.Duration {
	d := l.opts.MinBackoff
	for range extra {
		if d >= most/2 {
			return most
		}
		d *= 2
	}
	return min(d, most)
}

// Success forgets the failures of user: from all clients, and from this
// one.
func (l *Limiter) Success(user, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, "user "+user)
	delete(l.m, "pair "+user+" "+clientKey(client))
}

// Len is the number of counts tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// sweepLocked forgets entries idle for Forget (at most once a minute),
// and, when the table is full, entries not waiting.
func (l *Limiter) sweepLocked(now time.Time) {
	full := len(l.m) >= l.opts.MaxEntries
	if !full && now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for k, a := range l.m {
		if now.Sub(a.last) >= l.opts.Forget && !now.Before(a.until) {
			delete(l.m, k)
		}
	}
	for k, a := range l.m {
		if len(l.m) < l.opts.MaxEntries*9/10 {
			break
		}
		if !now.Before(a.until) {
			delete(l.m, k)
		}
	}
}

// ClientAddr is the address a request comes from, as the audit log and
// the Limiter name it: the peer's IP address from r.RemoteAddr. Headers
// such as X-Forwarded-For are not trusted: anyone can write them.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return ip.Unmap().WithZone("").String()
}

// ClientAddrVia is ClientAddr, except for a request from a trusted proxy:
// it comes from the last address of its X-Forwarded-For that is not a
// trusted proxy (the earlier ones are what the client itself wrote). A
// header that does not parse is not believed: the peer's address then.
func ClientAddrVia(r *http.Request, trusted []netip.Prefix) string {
	peer := ClientAddr(r)
	if !isTrusted(peer, trusted) {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		client = ip.Unmap().WithZone("").String()
		if !isTrusted(client, trusted) {
			return client
		}
	}
	return client
}

func isTrusted(addr string, trusted []netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	return err == nil && slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// clientKey is the entry a client address counts against: the address,
// or for IPv6 its /64, which one attacker easily holds whole.
func clientKey(client string) string {
	ip, err := netip.ParseAddr(client)
	if err != nil || !ip.Is6() || ip.Is4In6() {
		return "client " + client
	}
	p, _ := ip.WithZone("").Prefix(64)
	return "client " + p.String()
}
