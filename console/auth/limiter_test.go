package auth_test

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// TestLimiterBackoff: five failures are free; then each attempt waits a
// backoff that doubles from 1 s to at most 15 min; an attempt while
// waiting is refused without counting.
func TestLimiterBackoff(t *testing.T) {
	clk := newClock()
	l := auth.NewLimiter(auth.LimiterOptions{Now: clk.Now})
	for i := range 5 {
		if wait, ok := l.Allow("alice", "192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused (wait %s)", i+1, wait)
		}
		l.Failure("alice", "192.0.2.1")
	}
	want := time.Second
	for range 14 {
		wait, ok := l.Allow("alice", "192.0.2.1")
		if ok || wait != want {
			t.Fatalf("after the failures: allowed %v, wait %s; want a wait of %s", ok, wait, want)
		}
		clk.Advance(want / 2)
		if wait, ok := l.Allow("alice", "192.0.2.1"); ok || wait != want-want/2 {
			t.Fatalf("half-way: allowed %v, wait %s", ok, wait)
		}
		clk.Advance(want - want/2)
		if _, ok := l.Allow("alice", "192.0.2.1"); !ok {
			t.Fatalf("refused once the wait of %s has passed", want)
		}
		l.Failure("alice", "192.0.2.1")
		want = min(2*want, 15*time.Minute)
	}
	if want != 15*time.Minute {
		t.Fatalf("the backoff grew to %s", want)
	}
}

// TestLimiterKeys: failures count per client, per name and client, and
// per name (more of them, and a shorter cap); a success resets the name,
// not the client; an IPv6 /64 is one client.
func TestLimiterKeys(t *testing.T) {
	clk := newClock()
	l := auth.NewLimiter(auth.LimiterOptions{Now: clk.Now})
	// One client trying five names is stopped, for any name.
	for i := range 5 {
		l.Failure(fmt.Sprintf("user%d", i), "192.0.2.1")
	}
	if _, ok := l.Allow("someone-else", "192.0.2.1"); ok {
		t.Fatal("a client with five failures may try another name at once")
	}
	if _, ok := l.Allow("someone-else", "192.0.2.2"); !ok {
		t.Fatal("another client is held back")
	}
	// One name tried five times from one client is stopped there, not
	// from another: someone failing it on purpose does not keep its user
	// out.
	for range 5 {
		l.Failure("carol", "198.51.100.200")
	}
	if _, ok := l.Allow("carol", "198.51.100.200"); ok {
		t.Fatal("a name with five failures from one client may be tried there at once")
	}
	if _, ok := l.Allow("carol", "198.51.100.201"); !ok {
		t.Fatal("a name failed five times from one client is held back from another")
	}
	// One name tried from twenty clients is stopped, from any client,
	// for a minute at most.
	for i := range 20 {
		l.Failure("bob", fmt.Sprintf("198.51.100.%d", i))
	}
	if _, ok := l.Allow("bob", "203.0.113.9"); ok {
		t.Fatal("a name with twenty failures may be tried from a new client at once")
	}
	for i := 20; i < 40; i++ {
		l.Failure("bob", fmt.Sprintf("198.51.100.%d", i))
	}
	if wait, _ := l.Allow("bob", "203.0.113.9"); wait != time.Minute {
		t.Fatalf("a name failed from many clients waits %v, want the name's cap of 1m", wait)
	}
	clk.Advance(time.Minute)
	l.Success("bob", "203.0.113.9")
	if _, ok := l.Allow("bob", "203.0.113.10"); !ok {
		t.Fatal("a success did not reset the name")
	}
	// Success does not reset the client.
	clk.Advance(time.Second)
	l.Failure("user5", "192.0.2.1") // the client's 6th failure: 2 s
	l.Success("user5", "192.0.2.1")
	if _, ok := l.Allow("user6", "192.0.2.1"); ok {
		t.Fatal("a success reset the client's failures")
	}
	for i := range 5 {
		l.Failure("carol", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if _, ok := l.Allow("dave", "2001:db8:1:2:ffff::1"); ok {
		t.Fatal("addresses of one IPv6 /64 count apart")
	}
	if _, ok := l.Allow("dave", "2001:db8:1:3::1"); !ok {
		t.Fatal("another /64 is held back")
	}
}

// TestLimiterForgets: what is known of names and clients idle for an hour
// is dropped, and the table is bounded.
func TestLimiterForgets(t *testing.T) {
	clk := newClock()
	l := auth.NewLimiter(auth.LimiterOptions{Now: clk.Now, MaxEntries: 100})
	for i := range 30 {
		l.Failure(fmt.Sprintf("user%d", i), fmt.Sprintf("192.0.2.%d", i))
	}
	if l.Len() != 90 { // the client, the name from it, the name
		t.Fatalf("%d entries, want 90", l.Len())
	}
	clk.Advance(time.Hour)
	l.Failure("late", "198.51.100.1")
	if l.Len() != 3 {
		t.Fatalf("%d entries an hour later, want 3", l.Len())
	}
	for i := range 500 {
		clk.Advance(time.Millisecond)
		l.Failure(fmt.Sprintf("user%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if l.Len() > 100 {
		t.Fatalf("%d entries, above MaxEntries 100", l.Len())
	}
}

// TestClientAddrVia: behind trusted proxies, the last address of
// X-Forwarded-For that is not one of them; from any other peer, or with a
// header that does not parse, the peer.
func TestClientAddrVia(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct{ remote, xff, want string }{
		{"127.0.0.1:1234", "203.0.113.5", "203.0.113.5"},
		{"127.0.0.1:1234", "198.51.100.1, 203.0.113.5, 10.0.0.2", "203.0.113.5"}, // the client wrote the first
		{"192.0.2.9:1234", "203.0.113.5", "192.0.2.9"},                           // not a proxy: not believed
		{"127.0.0.1:1234", "", "127.0.0.1"},
		{"127.0.0.1:1234", "not-an-address", "127.0.0.1"},
		{"127.0.0.1:1234", "10.0.0.3, 10.0.0.2", "10.0.0.3"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := auth.ClientAddrVia(r, trusted); got != tc.want {
			t.Errorf("%s with X-Forwarded-For %q: %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// TestClientAddr: the peer address, never a forwarding header.
func TestClientAddr(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.1:5555":         "192.0.2.1",
		"[2001:db8::1]:443":      "2001:db8::1",
		"[::ffff:192.0.2.7]:443": "192.0.2.7",
		"[fe80::1%eth0]:443":     "fe80::1",
		"not an address":         "not an address",
		"192.0.2.1":              "192.0.2.1",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", "203.0.113.66")
		r.Header.Set("X-Real-IP", "203.0.113.66")
		if got := auth.ClientAddr(r); got != want {
			t.Errorf("ClientAddr(%q) = %q, want %q", remote, got, want)
		}
	}
}
