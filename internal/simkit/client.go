package simkit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// HTTPClient returns an http.Client, with the given timeout, that trusts
// the CA certificates in the PEM file caFile.
func HTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}, nil
}

// InventoryRequest names a simulator, perhaps another process's, whose
// objects GetInventory reads.
type InventoryRequest struct {
	URL    string // the simulator's base URL
	CAFile string // the CA certificate file it prints
	User   string // its admin user
	// Password returns the admin's password (read from the password file
	// the simulator prints); it is called once the CA is read.
	Password func() (string, error)
	// Wait is how long the simulator waits for its running tasks to end
	// before it answers.
	Wait time.Duration
}

// GetInventory asks the simulator r names for its objects (GET
// /sim/inventory?wait=…, with the admin's basic auth) and decodes the JSON
// answer into v. Its errors start "inventory of URL:".
func GetInventory(ctx context.Context, r InventoryRequest, v any) error {
	fail := func(err error) error { return fmt.Errorf("inventory of %s: %w", r.URL, err) }
	c, err := HTTPClient(r.CAFile, r.Wait+time.Minute)
	if err != nil {
		return fail(err)
	}
	defer c.CloseIdleConnections()
	pw, err := r.Password()
	if err != nil {
		return fail(err)
	}
	u := strings.TrimSuffix(r.URL, "/") + "/sim/inventory?wait=" + url.QueryEscape(r.Wait.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	req.SetBasicAuth(r.User, pw)
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
	if err := json.Unmarshal(body, v); err != nil {
		return fail(fmt.Errorf("decode: %w", err))
	}
	return nil
}
