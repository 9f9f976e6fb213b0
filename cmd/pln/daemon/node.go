package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pln-mesh/pln/cas"
	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
	"github.com/pln-mesh/pln/reducers"
)

// Config says where a node lives and what it runs on.
type Config struct {
	Dir    string           // data directory
	Now    func() time.Time // physical clock; default time.Now
	Logger *slog.Logger     // default: discard
	// Mesh configures the node's QUIC endpoint ('pln up' only): listen and
	// advertised addresses, intervals. Key and cluster are filled in.
	Mesh netx.Config
	// WasmCache is where compiled seeds are kept; default Dir/wasm-cache.
	// Nodes in one process may share one (the dev cluster's tests do).
	WasmCache string
	// NoSync skips fsync in the store. Tests only: it breaks the promise that
	// an acknowledged op survives a crash.
	NoSync bool
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Meta keys in the store.
const (
	metaCluster = "cluster" // the cluster ID this store belongs to
	metaNode    = "node"    // the node key whose log this is
)

// Node is one member of a cluster: its key, its log and the view folded
// from it. It is safe for concurrent use.
type Node struct {
	cfg     Config
	key     ed25519.PrivateKey
	self    oplog.Key
	cluster oplog.ClusterID
	store   *store.Store
	clock   *oplog.Clock
	log     *slog.Logger

	mu     sync.Mutex // guards folder and seq
	folder *reducers.Folder
	seq    uint64 // ops in the log; the view position claims record

	// ingestMu makes store order and fold order one: the view after the
	// first k ops in arrival order is exactly what the node had, so a claim's
	// recorded position replays to the view it was decided from.
	ingestMu sync.Mutex
	authorMu sync.Mutex // one op authored at a time: check, sign and store in order

	stop     context.CancelFunc        // set by Run: stops the running node
	mesh     atomic.Pointer[netx.Mesh] // set by Run while the mesh runs
	replicas atomic.Pointer[replicas]  // set by Run while seeds run

	casOnce sync.Once
	cas     *cas.Store
	casErr  error
}

// Content returns the node's content store, opening it on first use.
func (n *Node) Content() (*cas.Store, error) {
	n.casOnce.Do(func() { n.cas, n.casErr = cas.Open(n.cfg.Dir) })
	return n.cas, n.casErr
}

func noCluster(dir string) error {
	return failf(ErrNoCluster, "no cluster in %s (create one with 'pln init', or join one with 'pln join TOKEN')", dir)
}

// Open opens the node in cfg.Dir, which must hold a cluster.
func Open(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	path := filepath.Join(cfg.Dir, StoreFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, noCluster(cfg.Dir)
	}
	key, err := loadKey(filepath.Join(cfg.Dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	st, err := openStore(cfg, path)
	if err != nil {
		return nil, err
	}
	n, err := newNode(cfg, key, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	return n, nil
}

func openStore(cfg Config, path string) (*store.Store, error) {
	opts := store.DefaultOptions()
	opts.NoSync = cfg.NoSync
	st, err := store.Open(path, opts)
	if errors.Is(err, store.ErrLocked) {
		return nil, &userError{kind: err, msg: fmt.Sprintf("a node is already running in %s (stop it with 'pln down' or Ctrl-C, or use another --dir)", cfg.Dir)}
	}
	return st, err
}

// newNode folds the store into a view and sets the clock past every op in it.
func newNode(cfg Config, key ed25519.PrivateKey, st *store.Store) (*Node, error) {
	raw, ok, err := st.Meta(metaCluster)
	if err != nil {
		return nil, err
	}
	if !ok || len(raw) != len(oplog.ClusterID{}) {
		return nil, noCluster(cfg.Dir)
	}
	n := &Node{cfg: cfg, key: key, self: oplog.KeyOf(key), store: st, log: cfg.Logger}
	copy(n.cluster[:], raw)
	if owner, ok, _ := st.Meta(metaNode); ok && string(owner) != string(n.self[:]) {
		return nil, fmt.Errorf("%s belongs to node %x but %s holds key %s; restore the matching node.key", st.Path(), owner[:4], NodeKeyFile, n.self.Short())
	}
	n.folder = reducers.NewFolder(n.cluster)
	n.folder.TrackSuperseded()
	now := n.nowHLC()
	var newest oplog.HLC
	err = st.ForEachArrival(1, func(seq uint64, op *oplog.Op) error {
		n.folder.Add(op, now)
		n.seq = seq
		newest = max(newest, op.HLC)
		return nil
	})
	if err != nil {
		return nil, err
	}
	n.folder.TakeSuperseded() // marked when they arrived
	v := n.folder.View(now)
	n.clock = oplog.NewClock(cfg.Now, time.Duration(v.Params.MaxOffsetMillis)*time.Millisecond)
	_ = n.clock.Update(newest) // an op too far ahead stays pending; it does not move our clock
	return n, nil
}

// InitOptions describe a new cluster.
type InitOptions struct {
	Name   string            // cluster name
	Props  map[string]string // this node's properties; "name" defaults to the host name
	Params reducers.Params   // zero fields take defaults
}

// Init creates a cluster in cfg.Dir: the node key (unless 'pln id' made one),
// the root key, the genesis op and the root's admin grant to this node.
func Init(cfg Config, o InitOptions) (*Node, error) {
	cfg = cfg.withDefaults()
	path := filepath.Join(cfg.Dir, StoreFile)
	if err := refuseExisting(cfg.Dir, path); err != nil {
		return nil, err
	}
	key, err := NodeKey(cfg.Dir)
	if err != nil {
		return nil, err
	}
	_, root, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	rootKey := oplog.KeyOf(root)
	cluster := oplog.ClusterOf(rootKey)
	if o.Name == "" {
		o.Name = "pln"
	}
	props := maps.Clone(o.Props)
	if props == nil {
		props = map[string]string{}
	}
	if props["name"] == "" {
		props["name"] = hostName()
	}
	params := o.Params
	if params == (reducers.Params{}) {
		params = reducers.DefaultParams()
	}
	clock := oplog.NewClock(cfg.Now, time.Duration(params.MaxOffsetMillis)*time.Millisecond)
	genesis, err := signBody(cluster, root, clock.Now(), &reducers.Genesis{Name: o.Name, Root: rootKey, Params: params})
	if err != nil {
		return nil, err
	}
	admin, err := signBody(cluster, root, clock.Now(), &reducers.Grant{Subject: oplog.KeyOf(key), Tier: reducers.TierAdmin, Props: props})
	if err != nil {
		return nil, err
	}
	rootPath := filepath.Join(cfg.Dir, RootKeyFile)
	if err := writeKey(rootPath, root); err != nil {
		return nil, fmt.Errorf("write root key: %w", err)
	}
	n, err := create(cfg, key, cluster, path, genesis, admin)
	if err != nil {
		os.Remove(rootPath)
		return nil, err
	}
	return n, nil
}

// create makes the store for a new member of cluster and ingests its first
// ops: the genesis and whatever admits this node. On failure it removes the
// store it made, so the directory is as it was.
func create(cfg Config, key ed25519.PrivateKey, cluster oplog.ClusterID, path string, first ...*oplog.Op) (n *Node, err error) {
	st, err := openStore(cfg, path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	self := oplog.KeyOf(key)
	if err := st.SetMeta(metaNode, self[:]); err == nil {
		err = st.SetMeta(metaCluster, cluster[:])
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	if n, err = newNode(cfg, key, st); err != nil {
		st.Close()
		return nil, err
	}
	if _, err = n.Ingest(first...); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// refuseExisting fails if the directory already has a cluster.
func refuseExisting(dir, path string) error {
	if _, err := os.Stat(path); err == nil {
		return failf(ErrHasCluster, "%s already holds a cluster; use another --dir, or remove the directory to start over", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); err == nil {
		return failf(ErrHasCluster, "%s already holds a root key but no log; move %s away before starting over", dir, RootKeyFile)
	}
	return nil
}

func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	return h
}

func signBody(cluster oplog.ClusterID, priv ed25519.PrivateKey, at oplog.HLC, b reducers.Body) (*oplog.Op, error) {
	body, err := reducers.EncodeBody(b)
	if err != nil {
		return nil, err
	}
	return oplog.Sign(cluster, priv, reducers.KindOf(b), at, body)
}

// Close releases the store.
func (n *Node) Close() error { return n.store.Close() }

// Self returns the node's public key.
func (n *Node) Self() oplog.Key { return n.self }

// Cluster returns the node's cluster ID.
func (n *Node) Cluster() oplog.ClusterID { return n.cluster }

// Dir returns the node's data directory.
func (n *Node) Dir() string { return n.cfg.Dir }

func (n *Node) nowHLC() oplog.HLC { return oplog.HLCAt(n.cfg.Now()) }

// View returns the current view.
func (n *Node) View() *reducers.View {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.folder.View(n.nowHLC())
}

// Position returns the number of ops in the log and the view they fold to:
// what a decision made now is made from.
func (n *Node) Position() (uint64, *reducers.View) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seq, n.folder.View(n.nowHLC())
}

// Ingest is the door: it verifies every op, stores the new ones durably in
// one transaction, and folds them. If any op fails verification nothing is
// stored. It returns, per op, whether it was new. New ops go on to the mesh.
func (n *Node) Ingest(ops ...*oplog.Op) ([]bool, error) { return n.ingestFrom(oplog.Key{}, ops) }

// ingestFrom is Ingest for ops that arrived from a peer, which the mesh does
// not send them back to.
func (n *Node) ingestFrom(from oplog.Key, ops []*oplog.Op) ([]bool, error) {
	// An op reaches a node from each of its peers; check each signature
	// once, not once per copy.
	var unseen []*oplog.Op
	for _, op := range ops {
		if seen, err := n.store.Has(op.ID()); err != nil {
			return nil, err
		} else if !seen {
			unseen = append(unseen, op)
		}
	}
	if err := verifyAll(n.cluster, unseen); err != nil {
		return nil, err
	}
	for _, op := range ops {
		if err := n.clock.Update(op.HLC); err != nil {
			n.log.Warn("op from a clock too far ahead; held out of the view until ours catches up", "op", op.ID().Short(), "hlc", op.HLC, "author", op.Author.Short())
		}
	}
	n.ingestMu.Lock()
	defer n.ingestMu.Unlock()
	added, err := n.store.Append(ops...)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	now := n.nowHLC()
	var fresh []*oplog.Op
	membership := false
	for i, op := range ops {
		if added[i] {
			n.folder.Add(op, now)
			n.seq++
			fresh = append(fresh, op)
			membership = membership || op.Kind == oplog.KindGrant || op.Kind == oplog.KindDeny
		}
	}
	superseded := n.folder.TakeSuperseded()
	n.mu.Unlock()
	if len(superseded) > 0 {
		if err := n.store.MarkSuperseded(now, superseded...); err != nil {
			n.log.Warn("could not mark superseded ops", "err", err)
		}
	}
	if m := n.mesh.Load(); m != nil && len(fresh) > 0 {
		m.Broadcast(from, fresh)
		if membership {
			m.Recheck()
		}
	}
	return added, nil
}

// Author signs body as this node, checks that it would count, and stores it.
// When Author returns, the op is durable.
func (n *Node) Author(b reducers.Body) (*oplog.Op, error) {
	return n.authorAs(n.key, b)
}

func (n *Node) authorAs(priv ed25519.PrivateKey, b reducers.Body) (*oplog.Op, error) {
	n.authorMu.Lock()
	defer n.authorMu.Unlock()
	op, err := signBody(n.cluster, priv, n.clock.Now(), b)
	if err != nil {
		return nil, err
	}
	if why := n.View().Check(op); why != "" {
		return nil, failf(ErrRefused, "refused: %s", why)
	}
	if _, err := n.Ingest(op); err != nil {
		return nil, err
	}
	return op, nil
}

// Compact deletes superseded ops older than the retention window.
func (n *Node) Compact() (int, error) {
	v := n.View()
	before := oplog.HLCAt(n.cfg.Now().Add(-time.Duration(v.Params.RetentionMillis) * time.Millisecond))
	return n.store.Compact(before)
}

// metaBootstrap holds the addresses a node dials to find its cluster when it
// knows no peer's address yet (set by join).
const metaBootstrap = "bootstrap"

// SetBootstrap remembers where to find the cluster.
func (n *Node) SetBootstrap(addrs []string) error {
	b, err := oplog.Marshal(addrs)
	if err != nil {
		return err
	}
	return n.store.SetMeta(metaBootstrap, b)
}

// Bootstrap returns the remembered addresses.
func (n *Node) Bootstrap() []string {
	var addrs []string
	if b, ok, _ := n.store.Meta(metaBootstrap); ok {
		oplog.Unmarshal(b, &addrs)
	}
	return addrs
}

// parallelVerifyMin is the batch size from which signatures are checked on
// every core: verifying is most of the cost of taking in ops.
const parallelVerifyMin = 64

// verifyAll checks every op's signature, returning the first failure.
func verifyAll(cluster oplog.ClusterID, ops []*oplog.Op) error {
	if len(ops) < parallelVerifyMin {
		for _, op := range ops {
			if err := op.Verify(cluster); err != nil {
				return err
			}
		}
		return nil
	}
	for _, err := range verifyEach(cluster, ops) {
		if err != nil {
			return err
		}
	}
	return nil
}

// verifyEach checks every op's signature on every core and returns each
// op's result, nil for a good one.
func verifyEach(cluster oplog.ClusterID, ops []*oplog.Op) []error {
	errs := make([]error, len(ops))
	workers := min(runtime.GOMAXPROCS(0), len(ops)/parallelVerifyMin+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ops); i += workers {
				errs[i] = ops[i].Verify(cluster)
			}
		})
	}
	wg.Wait()
	return errs
}
