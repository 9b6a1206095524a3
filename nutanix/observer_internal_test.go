package nutanix

import (
	"context"
	"errors"
	"testing"
)

// TestTaskObserver: the observer hears every task of the call, its error
// fails the call's wait, and the client's own clean-up (detached) is not
// observed.
func TestTaskObserver(t *testing.T) {
	var seen []string
	refuse := errors.New("journal full")
	ctx := WithTaskObserver(context.Background(), func(id string) error {
		seen = append(seen, id)
		if id == "t2" {
			return refuse
		}
		return nil
	})
	if err := observeTask(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := observeTask(ctx, "t2"); !errors.Is(err, refuse) {
		t.Fatalf("observer's error: %v", err)
	}
	if err := observeTask(detached(ctx), "t3"); err != nil || len(seen) != 2 {
		t.Fatalf("detached clean-up observed: %v %v", seen, err)
	}
	if err := observeTask(context.Background(), "t4"); err != nil {
		t.Fatal(err)
	}
}
