package xapisim

import (
	"context"
	"sync"
)

// Gate holds every call of one method (see Fault.Method for the names)
// before it does anything, until Release: a test can then kill the
// client while the call is in flight, or look at the state meanwhile.
// A synchronous call's HTTP request stays open; an Async call's task
// stays pending. A held call carries on when released even if its
// client has gone, as xapi's would.
type Gate struct {
	method   string
	arrived  chan struct{}
	released chan struct{}

	mu       sync.Mutex
	waiting  int
	arrOnce  sync.Once
	relOnce  sync.Once
	detachFn func()
}

// Arrived is closed when the first call reaches the gate.
func (g *Gate) Arrived() <-chan struct{} { return g.arrived }

// Wait waits until a call reaches the gate or ctx ends.
func (g *Gate) Wait(ctx context.Context) error {
	select {
	case <-g.arrived:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Waiting is the number of calls held now.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// Release lets every held call (and every later one) through and removes
// the gate.
func (g *Gate) Release() {
	g.relOnce.Do(func() {
		close(g.released)
		g.detachFn()
	})
}

type gateState struct {
	mu    sync.Mutex
	gates map[string]*Gate
}

func (gs *gateState) init() { gs.gates = map[string]*Gate{} }

// Hold installs a gate for method, replacing (and releasing) an earlier
// one.
func (s *Sim) Hold(method string) *Gate {
	g := &Gate{method: method, arrived: make(chan struct{}), released: make(chan struct{})}
	g.detachFn = func() {
		s.gates.mu.Lock()
		if s.gates.gates[method] == g {
			delete(s.gates.gates, method)
		}
		s.gates.mu.Unlock()
	}
	s.gates.mu.Lock()
	old := s.gates.gates[method]
	s.gates.gates[method] = g
	s.gates.mu.Unlock()
	if old != nil {
		old.Release()
	}
	return g
}

// Gates lists the methods held and how many calls wait at each.
func (s *Sim) Gates() map[string]int {
	s.gates.mu.Lock()
	gs := make([]*Gate, 0, len(s.gates.gates))
	for _, g := range s.gates.gates {
		gs = append(gs, g)
	}
	s.gates.mu.Unlock()
	out := map[string]int{}
	for _, g := range gs {
		out[g.method] = g.Waiting()
	}
	return out
}

// Release releases the gate of method, if there is one.
func (s *Sim) Release(method string) {
	s.gates.mu.Lock()
	g := s.gates.gates[method]
	s.gates.mu.Unlock()
	if g != nil {
		g.Release()
	}
}

func (gs *gateState) releaseAll() {
	gs.mu.Lock()
	var all []*Gate
	for _, g := range gs.gates {
		all = append(all, g)
	}
	gs.mu.Unlock()
	for _, g := range all {
		g.Release()
	}
}

// pass holds the caller at method's gate, if any. It fails only when the
// simulator stops meanwhile.
func (gs *gateState) pass(ctx context.Context, method string) error {
	gs.mu.Lock()
	g := gs.gates[method]
	gs.mu.Unlock()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	g.arrOnce.Do(func() { close(g.arrived) })
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case <-g.released:
		return nil
	case <-ctx.Done():
		return xerr("INTERNAL_ERROR", "xapisim is stopping")
	}
}
