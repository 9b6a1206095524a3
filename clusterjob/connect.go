package clusterjob

import (
	"context"
	"sync"

	"github.com/ahvfs/ahvfs/nutanix"
)

// Connector serves Clusters for one Prism endpoint: the job's client for
// its own API family, and, on first need, a client of another family
// made from the same options with the API forced. Close closes the
// clients it made.
type Connector struct {
	opts nutanix.Options
	cl   nutanix.Cluster

	mu     sync.Mutex
	others map[nutanix.APIVersion]*nutanix.Client
}

// NewConnector builds a Connector around cl, whose options are o.
func NewConnector(o nutanix.Options, cl nutanix.Cluster) *Connector {
	return &Connector{opts: o, cl: cl, others: map[nutanix.APIVersion]*nutanix.Client{}}
}

// Clusters is the Clusters function of the connector.
func (c *Connector) Clusters(ctx context.Context, api nutanix.APIVersion) (nutanix.Cluster, error) {
	if api == "" || c.cl.API() == "" || Family(api) == Family(c.cl.API()) {
		return c.cl, nil
	}
	fam := Family(api)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.others[fam]; cl != nil {
		return cl, nil
	}
	o := c.opts
	o.API = fam
	cl, err := nutanix.Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	c.others[fam] = cl
	return cl, nil
}

// Close closes the clients the connector made.
func (c *Connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.others {
		cl.Close()
	}
	clear(c.others)
	return nil
}
