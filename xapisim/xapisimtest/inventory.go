package xapisimtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

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
	var o xapisim.Objects
	fail := func(err error) (xapisim.Objects, error) { return o, fmt.Errorf("inventory of %s: %w", r.URL, err) }
	c, err := httpClient(r.CAFile)
	if err != nil {
		return fail(err)
	}
	defer c.CloseIdleConnections()
	c.Timeout = wait + time.Minute
	pw, err := r.Password()
	if err != nil {
		return fail(err)
	}
	u := strings.TrimSuffix(r.URL, "/") + "/sim/inventory?wait=" + url.QueryEscape(wait.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	user := r.User
	if user == "" {
		user = "root"
	}
	req.SetBasicAuth(user, pw)
	res, err := c.Do(req)
	if err != nil {
		return fail(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return fail(err)
	}
	if res.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(body))))
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return fail(fmt.Errorf("decode: %w", err))
	}
	return o, nil
}
