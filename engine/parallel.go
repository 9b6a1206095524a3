package engine

import (
	"context"
	"errors"
	"sync"
)

// backendWidth is how many backend calls eachParallel overlaps: a local
// disk's fsyncs join one journal commit, a remote store's round trips
// overlap.
const backendWidth = 8

// eachParallel calls fn for every item, width at a time. After the first
// error (or ctx ending) it starts no more calls; it returns every error
// the started calls gave, joined.
func eachParallel[T any](ctx context.Context, width int, items []T, fn func(T) error) error {
	work := make(chan T)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range min(width, len(items)) {
		wg.Go(func() {
			for it := range work {
				if err := fn(it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
