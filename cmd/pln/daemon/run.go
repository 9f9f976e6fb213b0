package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pln-mesh/pln/cas"
	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/reducers"
	"github.com/pln-mesh/pln/wasm"
)

// CompactInterval is how often a running node deletes superseded ops that
// have outlived the retention window.
const CompactInterval = time.Minute

// Run runs the node in cfg.Dir until ctx is done: it creates a cluster if the
// directory has none, serves the control socket, and reports its load. ready,
// if not nil, is called once the socket answers.
func Run(ctx context.Context, cfg Config, ready func(*Node)) error {
	cfg = cfg.withDefaults()
	n, err := Open(cfg)
	if errors.Is(err, ErrNoCluster) {
		if n, err = Init(cfg, InitOptions{}); err == nil {
			cfg.Logger.Info("created a new cluster", "dir", cfg.Dir, "cluster", n.cluster.Short(), "node", n.self.Short())
		}
	}
	if err != nil {
		return err
	}
	defer n.Close()
	defer paceGC()()

	// We hold the store's lock, so no other node runs here and a socket
	// file left behind by a crash is safe to replace.
	sock := filepath.Join(cfg.Dir, SocketFile)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	srv := &http.Server{Handler: serveControl(n), ReadHeaderTimeout: 10 * time.Second}

	mc := cfg.Mesh
	mc.Key, mc.Cluster, mc.Logger = n.key, n.cluster, cfg.Logger
	mesh, err := netx.New(mc, meshHost{n})
	if err != nil {
		ln.Close()
		return err
	}
	mesh.AddBootstrap(n.Bootstrap()...)
	store, err := n.Content()
	if err != nil {
		ln.Close()
		return err
	}
	reps := newReplicas(n, nil, store)
	cacheDir := cfg.WasmCache
	if cacheDir == "" {
		cacheDir = filepath.Join(cfg.Dir, WasmCacheDir)
	}
	host, err := wasm.New(ctx, wasm.Config{CacheDir: cacheDir, Logger: cfg.Logger}, route{reps})
	if err != nil {
		ln.Close()
		return err
	}
	defer host.Close(context.Background())
	reps.host = host
	mesh.Handle(netx.StreamBlob, cas.Serve(store))
	mesh.HandleCalls(reps.serveCall)
	n.mesh.Store(mesh)
	defer n.mesh.Store(nil)
	n.replicas.Store(reps)
	defer n.replicas.Store(nil)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.stop = cancel
	var wg sync.WaitGroup
	wg.Go(func() { mesh.Run(ctx) })
	wg.Go(func() { reps.run(ctx) })
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("control socket stopped", "err", err)
			cancel()
		}
	})
	wg.Go(func() { n.reportLoad(ctx) })
	wg.Go(func() { n.compactLoop(ctx) })

	cfg.Logger.Info("node up", "dir", cfg.Dir, "node", n.self.Short(), "cluster", n.cluster.Short(), "addr", mesh.Addr().String())
	if ready != nil {
		ready(n)
	}
	<-ctx.Done()
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	srv.Shutdown(shutdownCtx)
	wg.Wait()
	cfg.Logger.Info("node down", "node", n.self.Short())
	return nil
}

func init() { register("down", down) }

// down stops a running node; it answers before the node is gone.
func down(_ context.Context, n *Node, _ struct{}) (struct{}, error) {
	if n.stop == nil {
		return struct{}{}, fmt.Errorf("no node is running in %s", n.cfg.Dir)
	}
	n.stop()
	return struct{}{}, nil
}

// reportLoad appends a load op when the node's figures change materially,
// and at least once per load interval: it is the node's heartbeat as well as
// its figures.
func (n *Node) reportLoad(ctx context.Context) {
	var last *reducers.Load
	var lastAt time.Time
	for {
		v := n.View()
		interval := time.Duration(v.Params.LoadIntervalMillis) * time.Millisecond
		if m := v.Member(n.self); m.Active(n.nowHLC()) && m.Tier.Node() {
			l := n.sampleLoad()
			if last == nil || time.Since(lastAt) >= interval || materially(last, l) {
				if err := n.report(l); err != nil {
					n.log.Warn("load report", "err", err)
				} else {
					last, lastAt = l, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval / loadChecksPerInterval):
		}
	}
}

// loadChecksPerInterval is how often per load interval the node looks for a
// material change worth reporting early.
const loadChecksPerInterval = 4

// sampleLoad measures this node now, all but the per-seed figures (see
// report).
func (n *Node) sampleLoad() *reducers.Load {
	h := sampleHost()
	l := &reducers.Load{Node: n.self, CPUMilli: h.cpuMilli, CPUUsedMilli: h.cpuUsedMilli,
		MemBytes: h.memBytes, MemUsedBytes: h.memUsedBytes, Addrs: n.Addrs()}
	// A node reachable from anywhere offers to relay and to bootstrap joiners.
	l.Relay = slices.ContainsFunc(l.Addrs, netx.Public)
	if m := n.mesh.Load(); m != nil {
		l.Coord = m.Coord()
	}
	if r := n.replicas.Load(); r != nil {
		l.Cached = r.cached()
		l.InFlight = r.inFlight()
	}
	return l
}

// reportLoadNow appends a load report at once, if this node is running and
// may report: 'pln seed' does, so that the cluster knows this node holds the
// artifact before the seed op names it, and placement's first decision
// counts the copy here.
func (n *Node) reportLoadNow() {
	if n.replicas.Load() == nil {
		return
	}
	if m := n.View().Member(n.self); !m.Active(n.nowHLC()) || !m.Tier.Node() {
		return
	}
	if err := n.report(n.sampleLoad()); err != nil {
		n.log.Warn("load report", "err", err)
	}
}

// report adds to l the per-seed figures since the last report, and
// appends it. The figures are taken only here, so each report covers the
// whole time since the one before: a burst of calls between reports
// counts, whenever it came.
func (n *Node) report(l *reducers.Load) error {
	if r := n.replicas.Load(); r != nil {
		l.Seeds = r.meters.sample(time.Now(), r.saturation)
	}
	_, err := n.Author(l)
	return err
}

// materially reports whether b differs from a enough to tell the cluster
// before the next interval: a tenth of CPU or memory, reachable addresses,
// the artifacts held, or a millisecond of network position.
func materially(a, b *reducers.Load) bool {
	far := func(x, y, scale int64) bool { return scale > 0 && abs(x-y)*10 > scale }
	return far(a.CPUUsedMilli, b.CPUUsedMilli, a.CPUMilli) || far(a.MemUsedBytes, b.MemUsedBytes, a.MemBytes) ||
		!slices.Equal(a.Addrs, b.Addrs) || !slices.Equal(a.Cached, b.Cached) || a.InFlight != b.InFlight ||
		abs(a.Coord.X-b.Coord.X)+abs(a.Coord.Y-b.Coord.Y)+abs(a.Coord.H-b.Coord.H) > 1000
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func (n *Node) compactLoop(ctx context.Context) {
	t := time.NewTicker(CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if removed, err := n.Compact(); err != nil {
				n.log.Warn("compaction", "err", err)
			} else if removed > 0 {
				n.log.Info("compacted superseded ops", "removed", removed)
			}
		}
	}
}
