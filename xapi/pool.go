package xapi

import (
	"context"
	"fmt"
)

// PoolUUID is the UUID of the pool the client is logged in to (read once,
// then remembered): it names the pool whichever host is its master and
// whatever address reaches it.
func (c *Client) PoolUUID(ctx context.Context) (string, error) {
	c.mu.Lock()
	known := c.pool
	c.mu.Unlock()
	if known != "" {
		return known, nil
	}
	var pools []Ref
	if err := c.Call(ctx, "pool.get_all", &pools); err != nil {
		return "", fmt.Errorf("the pool: %w", err)
	}
	if len(pools) != 1 {
		return "", fmt.Errorf("the pool: the host answers %d pool objects, want 1", len(pools))
	}
	var uuid string
	if err := c.Call(ctx, "pool.get_uuid", &uuid, pools[0]); err != nil {
		return "", fmt.Errorf("the pool's UUID: %w", err)
	}
	if uuid == "" {
		return "", fmt.Errorf("the pool's UUID: empty")
	}
	c.mu.Lock()
	c.pool = uuid
	c.mu.Unlock()
	return uuid, nil
}
