package xapisimtest

import (
	"context"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/xapisim"
)

// Inventory reads the objects of the simulator at r through its admin API
// (GET /sim/inventory), after waiting up to 30 seconds for its Async
// tasks to end.
func Inventory(ctx context.Context, r Remote) (xapisim.Objects, error) {
	return InventoryWait(ctx, r, 30*time.Second)
}

// InventoryWait is Inventory waiting up to wait for the Async tasks.
func InventoryWait(ctx context.Context, r Remote, wait time.Duration) (xapisim.Objects, error) {
	user := r.User
	if user == "" {
		user = "root"
	}
	var o xapisim.Objects
	err := simkit.GetInventory(ctx, simkit.InventoryRequest{URL: r.URL, CAFile: r.CAFile, User: user,
		Password: r.Password, Wait: wait}, &o)
	return o, err
}
