package xapi

import (
	"cmp"
	"context"
	"errors"
)

// SR returns one SR record.
func (c *Client) SR(ctx context.Context, ref Ref) (SR, error) {
	return getRecord(ctx, c, "SR", ref, decodeSR)
}

// SRs returns every SR of the pool, sorted by name and UUID.
func (c *Client) SRs(ctx context.Context) ([]SR, error) {
	return getAll(ctx, c, "SR", decodeSR, func(s SR) string { return s.NameLabel + "\x00" + s.UUID })
}

// Network returns one network record.
func (c *Client) Network(ctx context.Context, ref Ref) (Network, error) {
	return getRecord(ctx, c, "network", ref, decodeNetwork)
}

// Networks returns every network of the pool, sorted by name and UUID.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	return getAll(ctx, c, "network", decodeNetwork, func(n Network) string { return n.NameLabel + "\x00" + n.UUID })
}

// VIF returns one VIF record.
func (c *Client) VIF(ctx context.Context, ref Ref) (VIF, error) {
	return getRecord(ctx, c, "VIF", ref, decodeVIF)
}

// Hosts returns every host of the pool, sorted by name and UUID.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	return getAll(ctx, c, "host", decodeHost, func(h Host) string { return h.NameLabel + "\x00" + h.UUID })
}

// VIFSpec describes a network interface for CreateVIF.
type VIFSpec struct {
	VM, Network Ref
	Device      string // "0", "1", …; required
	MAC         string // empty: XAPI generates one
	MTU         int64  // default 1500
}

// CreateVIF connects a VM to a network (VIF.create).
func (c *Client) CreateVIF(ctx context.Context, s VIFSpec) (Ref, error) {
	if s.VM.IsNull() || s.Network.IsNull() || s.Device == "" {
		return "", errors.New("CreateVIF: a VM, a network and a device are required")
	}
	rec := map[string]any{
		"device": s.Device, "network": s.Network, "VM": s.VM, "MAC": s.MAC, "MTU": cmp.Or(s.MTU, 1500),
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
	}
	var ref Ref
	if err := c.Call(ctx, "VIF.create", &ref, rec); err != nil {
		return "", err
	}
	return ref, nil
}
