package daemon

import (
	"context"
	"sync"

	"github.com/ahvfs/ahvfs/engine"
)

// repoPool shares one writable open of the repository among the jobs
// that run at once, and closes it when the last one ends, so that the
// writer lock is held only while jobs run (a person's `ahvfs prune` or
// `gc` can run between them).
type repoPool struct {
	open func(ctx context.Context, writable bool) (*engine.Repository, error)

	mu   sync.Mutex
	r    *engine.Repository
	refs int
}

// acquire returns the writable repository; call release when done.
func (p *repoPool) acquire(ctx context.Context) (*engine.Repository, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.r == nil {
		r, err := p.open(ctx, true)
		if err != nil {
			return nil, nil, err
		}
		p.r = r
	}
	p.refs++
	r := p.r
	var once sync.Once
	return r, func() { once.Do(p.release) }, nil
}

func (p *repoPool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refs--
	p.closeIdleLocked()
}

// closeIdle closes the repository if no job holds it.
func (p *repoPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeIdleLocked()
}

func (p *repoPool) closeIdleLocked() {
	if p.refs == 0 && p.r != nil {
		p.r.Close()
		p.r = nil
	}
}
