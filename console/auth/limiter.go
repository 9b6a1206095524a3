package auth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// LimiterOptions tunes the login Limiter. Zero values mean the defaults.
type LimiterOptions struct {
	// FreeFailures is how many failed logins a user name or a client may
	// have before further attempts must wait. Default 5.
	FreeFailures int
	// MinBackoff is the first wait, after FreeFailures failures; each
	// further failure doubles it. Default 1 second.
	MinBackoff time.Duration
	// MaxBackoff caps the wait. Default 15 minutes.
	MaxBackoff time.Duration
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

// Limiter slows down password guessing: it counts failed logins per user
// name and per client address, and once either has had FreeFailures
// failures, refuses attempts until a backoff has passed. The backoff
// starts at MinBackoff after the last free failure and doubles with every
// further failure, up to MaxBackoff. An attempt refused for waiting is
// not a failure (it was never checked). A successful login resets the
// user name's count, not the client's: one good account must not reset
// the count of a client trying others. It is safe for concurrent use.
type Limiter struct {
	opts      LimiterOptions
	mu        sync.Mutex
	m         map[string]*attempts
	lastSweep time.Time
}

// attempts is what the Limiter knows of one name or client.
type attempts struct {
	failures int
	until    time.Time // no attempt before this
	last     time.Time // the last failure
}

// NewLimiter returns a Limiter that knows of no failure.
func NewLimiter(opts LimiterOptions) *Limiter {
	return &Limiter{opts: opts.withDefaults(), m: map[string]*attempts{}}
}

// limiterKeys are the entries an attempt counts against: the name (only a
// valid one: any other string does not name a user, and would only grow
// the table) and the client.
func limiterKeys(user, client string) []string {
	keys := []string{clientKey(client)}
	if ValidateName(user) == nil {
		keys = append(keys, "user "+user)
	}
	return keys
}

// Allow reports whether a login of user from client may be checked now,
// or how long it must wait.
func (l *Limiter) Allow(user, client string) (wait time.Duration, ok bool) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range limiterKeys(user, client) {
		if a := l.m[k]; a != nil && now.Before(a.until) {
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
	for _, k := range limiterKeys(user, client) {
		a := l.m[k]
		if a == nil {
			a = &attempts{}
			l.m[k] = a
		}
		a.failures++
		a.last = now
		if extra := a.failures - l.opts.FreeFailures; extra >= 0 {
			a.until = now.Add(l.backoff(extra))
		}
	}
}

// backoff is the wait after extra failures beyond the free ones.
func (l *Limiter) backoff(extra int) time.Duration {
	d := l.opts.MinBackoff
	for range extra {
		if d >= l.opts.MaxBackoff/2 {
			return l.opts.MaxBackoff
		}
		d *= 2
	}
	return min(d, l.opts.MaxBackoff)
}

// Success forgets the failures of user.
func (l *Limiter) Success(user, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, "user "+user)
}

// Len is the number of names and clients tracked.
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
