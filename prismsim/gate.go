package prismsim

import (
	"strings"
	"sync"
	"time"
)

// taskGate holds RUNNING tasks of one operation until n of them wait
// together, so a test can tell that a client runs them side by side
// without timing anything.
type taskGate struct {
	op      string
	n       int
	timeout time.Duration

	mu      sync.Mutex
	waiting int
	most    int
	open    chan struct{}
	opened  bool
}

// GateTasks holds each task whose operation contains op, once RUNNING,
// until n such tasks wait together; then it lets them and every later one
// through. A task waits at most timeout (a client that never runs n at
// once is slowed, not hung). done removes the gate and returns the most
// tasks that waited together.
func (s *Sim) GateTasks(op string, n int, timeout time.Duration) (done func() int) {
	g := &taskGate{op: op, n: n, timeout: timeout, open: make(chan struct{})}
	s.gate.Store(g)
	return func() int {
		s.gate.CompareAndSwap(g, nil)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.release()
		return g.most
	}
}

// release opens the gate. Callers hold g.mu.
func (g *taskGate) release() {
	if !g.opened {
		g.opened = true
		close(g.open)
	}
}

// pass waits at the gate, if there is one for op.
func (s *Sim) pass(op string) {
	g := s.gate.Load()
	if g == nil || !strings.Contains(op, g.op) {
		return
	}
	g.mu.Lock()
	g.waiting++
	g.most = max(g.most, g.waiting)
	if g.waiting >= g.n {
		g.release()
	}
	g.mu.Unlock()
	tm := time.NewTimer(g.timeout)
	defer tm.Stop()
	select {
	case <-g.open:
	case <-tm.C:
	case <-s.ctx.Done():
	}
	g.mu.Lock()
	g.waiting--
	g.mu.Unlock()
}
