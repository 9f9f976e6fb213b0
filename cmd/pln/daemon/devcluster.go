package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// DevCluster is several real nodes in one process, on loopback, each with
// its own data directory and control socket, with a packet filter between
// them that can cut, delay and heal links. Tests and benchmarks build on
// it, and 'pln dev' starts one for a newcomer to try.
type DevCluster struct {
	opts   DevOptions
	Filter *netx.Filter

	mu    sync.Mutex
	nodes []*DevNode
}

// DevOptions configure a DevCluster.
type DevOptions struct {
	Dir    string          // where the nodes' data directories go (n0, n1, …)
	Params reducers.Params // cluster parameters; zero fields take defaults
	Mesh   netx.Config     // intervals for every node's mesh (addresses are set per node)
	Logger *slog.Logger    // default: discard
	Seed   uint64          // seeds the filter's packet loss
	NoSync bool            // skip fsync (tests only)
	// WasmCache, if set, is one compilation cache for every node: each seed
	// is compiled once for the whole cluster.
	WasmCache string
	// NoFilter runs the nodes on bare sockets, as in production: the filter
	// wraps each socket, which costs quic-go its fast paths (benchmarks).
	NoFilter bool
}

// DevNode is one node of a DevCluster.
type DevNode struct {
	Name string
	Dir  string
	Addr string // UDP address, kept across restarts

	mu     sync.Mutex
	node   *Node
	cancel context.CancelFunc
	done   chan error
}

// Node returns the running node, or nil while it is stopped.
func (d *DevNode) Node() *Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.node
}

// StartDev starts a cluster of n nodes: the first creates it, the others
// join it by invite, each through the mesh.
func StartDev(ctx context.Context, n int, opts DevOptions) (*DevCluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &DevCluster{opts: opts, Filter: netx.NewFilter(opts.Seed)}
	for range n {
		if _, err := c.Add(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Nodes returns the cluster's nodes, in the order they were added.
func (c *DevCluster) Nodes() []*DevNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*DevNode(nil), c.nodes...)
}

func (c *DevCluster) config(d *DevNode) Config {
	mc := c.opts.Mesh
	mc.Listen = d.Addr
	if mc.Listen == "" {
		mc.Listen = "127.0.0.1:0"
	}
	if !c.opts.NoFilter {
		mc.Wrap = c.Filter.Wrap
	}
	return Config{Dir: d.Dir, Logger: c.opts.Logger.With("node", d.Name), NoSync: c.opts.NoSync, Mesh: mc, WasmCache: c.opts.WasmCache}
}

// Add starts one more node: the cluster's first creates it, every other
// joins with an invite from the first running node.
func (c *DevCluster) Add(ctx context.Context) (*DevNode, error) {
	c.mu.Lock()
	d := &DevNode{Name: fmt.Sprintf("n%d", len(c.nodes))}
	d.Dir = filepath.Join(c.opts.Dir, d.Name)
	first := len(c.nodes) == 0
	var inviter *Node
	for _, o := range c.nodes {
		if inviter = o.Node(); inviter != nil {
			break
		}
	}
	c.mu.Unlock()
	cfg := c.config(d)
	if first {
		n, err := Init(cfg, InitOptions{Name: "dev", Props: map[string]string{"name": d.Name}, Params: c.opts.Params})
		if err != nil {
			return nil, err
		}
		n.Close()
	} else {
		if inviter == nil {
			return nil, errors.New("no running node to invite from")
		}
		inv, err := invite(ctx, inviter, InviteRequest{Tier: "member", TTL: time.Hour})
		if err != nil {
			return nil, err
		}
		t, err := ParseToken(inv.Token)
		if err != nil {
			return nil, err
		}
		plan, err := PlanJoin(cfg, t, d.Name)
		if err != nil {
			return nil, err
		}
		w, err := netx.Join(ctx, netx.Config{Key: plan.Key(), Cluster: t.Cluster, Wrap: cfg.Mesh.Wrap}, t.Addrs, plan.Ops)
		if err != nil {
			return nil, err
		}
		plan.Welcome(w)
		n, err := plan.Enroll(t.Addrs)
		if err != nil {
			return nil, err
		}
		n.Close()
	}
	if err := c.start(ctx, d, cfg); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, d)
	c.mu.Unlock()
	return d, nil
}

// start runs d's node until Stop or the cluster closes.
func (c *DevCluster) start(ctx context.Context, d *DevNode, cfg Config) error {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan *Node, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, func(n *Node) { ready <- n }) }()
	select {
	case n := <-ready:
		d.mu.Lock()
		d.node, d.cancel, d.done = n, cancel, done
		d.Addr = n.mesh.Load().Addr().String()
		d.mu.Unlock()
		return nil
	case err := <-done:
		cancel()
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
}

// Stop stops a node as Ctrl-C would; its data directory stays.
func (c *DevCluster) Stop(d *DevNode) error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.node, d.cancel = nil, nil
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	return <-done
}

// Restart starts a stopped node again from its data directory, on the same
// address: no token, it finds its peers from its log.
func (c *DevCluster) Restart(ctx context.Context, d *DevNode) error {
	return c.start(ctx, d, c.config(d))
}

// Close stops every node.
func (c *DevCluster) Close() error {
	var errs []error
	for _, d := range c.Nodes() {
		errs = append(errs, c.Stop(d))
	}
	return errors.Join(errs...)
}

// Digests returns each running node's view digest.
func (c *DevCluster) Digests() map[string]oplog.Digest {
	out := make(map[string]oplog.Digest)
	for _, d := range c.Nodes() {
		if n := d.Node(); n != nil {
			out[d.Name] = n.View().Digest()
		}
	}
	return out
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Converged reports whether every running node has the same view digest.
func (c *DevCluster) Converged() bool {
	var first *oplog.Digest
	for _, d := range c.Digests() {
		if first == nil {
			first = &d
		} else if d != *first {
			return false
		}
	}
	return true
}

// Partition cuts every link between the groups of nodes.
func (c *DevCluster) Partition(groups ...[]*DevNode) {
	var addrs [][]string
	for _, g := range groups {
		var a []string
		for _, d := range g {
			a = append(a, d.Addr)
		}
		addrs = append(addrs, a)
	}
	c.Filter.Partition(addrs...)
}
