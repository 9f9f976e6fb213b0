package netx

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Meshes on loopback with a fake Host: an op log in memory, folded on
// demand. These tests pin the mesh's own rules (who is let in, what is
// pushed, what anti-entropy brings, what a deny closes) without the daemon;
// cmd/pln/daemon's mesh tests run the same rules on real nodes.

// testCluster is a root key and the cluster it makes.
type testCluster struct {
	root    ed25519.PrivateKey
	id      oplog.ClusterID
	genesis *oplog.Op
	clock   *oplog.Clock // so that the genesis orders before what follows it
}

func newTestCluster(t testing.TB) *testCluster {
	t.Helper()
	root := newKey(t)
	c := &testCluster{root: root, id: oplog.ClusterOf(oplog.KeyOf(root)), clock: oplog.NewClock(time.Now, 5*time.Second)}
	c.genesis = c.sign(t, root, &reducers.Genesis{Name: "netx", Root: oplog.KeyOf(root), Params: reducers.DefaultParams()})
	return c
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign signs a body as priv, at the cluster clock's next time.
func (c *testCluster) sign(t testing.TB, priv ed25519.PrivateKey, b reducers.Body) *oplog.Op {
	t.Helper()
	body, err := reducers.EncodeBody(b)
	if err != nil {
		t.Fatal(err)
	}
	op, err := oplog.Sign(c.id, priv, reducers.KindOf(b), c.clock.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// fakeHost is a netx.Host over an in-memory log.
type fakeHost struct {
	cluster oplog.ClusterID
	mesh    atomic.Pointer[Mesh]
	calls   CallHandler // serves calls, if set
	echo    bool        // serves streamEcho (benchmarks)

	mu  sync.Mutex
	ops map[oplog.ID]*oplog.Op
}

func newFakeHost(c oplog.ClusterID, ops ...*oplog.Op) *fakeHost {
	h := &fakeHost{cluster: c, ops: make(map[oplog.ID]*oplog.Op)}
	for _, op := range ops {
		h.ops[op.ID()] = op
	}
	return h
}

func (h *fakeHost) all() []*oplog.Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*oplog.Op, 0, len(h.ops))
	for _, op := range h.ops {
		out = append(out, op)
	}
	return out
}

func (h *fakeHost) has(id oplog.ID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ops[id] != nil
}

func (h *fakeHost) View() *reducers.View {
	return reducers.Fold(h.cluster, h.all(), oplog.HLCAt(time.Now()))
}

func (h *fakeHost) Ingest(from oplog.Key, ops []*oplog.Op) ([]bool, error) {
	for _, op := range ops {
		if err := op.Verify(h.cluster); err != nil {
			return nil, err
		}
	}
	added := make([]bool, len(ops))
	var fresh []*oplog.Op
	membership := false
	h.mu.Lock()
	for i, op := range ops {
		if h.ops[op.ID()] == nil {
			h.ops[op.ID()] = op
			added[i] = true
			fresh = append(fresh, op)
			membership = membership || op.Kind == oplog.KindDeny || op.Kind == oplog.KindGrant
		}
	}
	h.mu.Unlock()
	if m := h.mesh.Load(); m != nil {
		m.Broadcast(from, fresh)
		if membership {
			m.Recheck()
		}
	}
	return added, nil
}

func (h *fakeHost) Ops(ids []oplog.ID) []*oplog.Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*oplog.Op
	for _, id := range ids {
		if op := h.ops[id]; op != nil {
			out = append(out, op)
		}
	}
	return out
}

func (h *fakeHost) SyncSet() SyncSet { return newListSet(h.all()) }

func (h *fakeHost) AcceptJoin(oplog.Key, []*oplog.Op) error {
	return errors.New("this fake host admits no one")
}

func (h *fakeHost) Chain(oplog.Key) []*oplog.Op { return nil }

// listSet is a SyncSet over a sorted slice, summed the slow way.
type listSet struct{ items []listItem }

type listItem struct {
	hlc oplog.HLC
	id  oplog.ID
}

func cmpListItem(a, b listItem) int {
	return cmp.Or(cmp.Compare(a.hlc, b.hlc), bytes.Compare(a.id[:], b.id[:]))
}

func newListSet(ops []*oplog.Op) *listSet {
	s := &listSet{}
	for _, op := range ops {
		s.items = append(s.items, listItem{op.HLC, op.ID()})
	}
	slices.SortFunc(s.items, cmpListItem)
	return s
}

func (s *listSet) Len() int { return len(s.items) }

func (s *listSet) Rank(hlc oplog.HLC, id oplog.ID) int {
	i, _ := slices.BinarySearchFunc(s.items, listItem{hlc, id}, cmpListItem)
	return i
}

func (s *listSet) At(i int) (oplog.HLC, oplog.ID) {
	it := s.items[min(i, len(s.items)-1)]
	return it.hlc, it.id
}

func (s *listSet) Sum(i, j int) [32]byte {
	var acc [4]uint64
	for _, it := range s.items[min(i, len(s.items)):min(j, len(s.items))] {
		var carry uint64
		for k := range 4 {
			l := binary.LittleEndian.Uint64(it.id[8*k:])
			s1 := acc[k] + l
			c1 := b2u(s1 < acc[k])
			s2 := s1 + carry
			c2 := b2u(s2 < s1)
			acc[k], carry = s2, c1+c2
		}
	}
	var out [32]byte
	for k, l := range acc {
		binary.LittleEndian.PutUint64(out[8*k:], l)
	}
	return out
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// testNode is a running Mesh and its host.
type testNode struct {
	key  ed25519.PrivateKey
	host *fakeHost
	mesh *Mesh
	logs *logCounter
	stop func() // stops the node before the test ends; harmless twice
}

// startNode runs a mesh as key over host until the test ends.
func startNode(t testing.TB, key ed25519.PrivateKey, host *fakeHost, bootstrap ...string) *testNode {
	t.Helper()
	logs := &logCounter{counts: map[string]int{}}
	m, err := New(Config{
		Key: key, Cluster: host.cluster, Listen: "127.0.0.1:0",
		SyncInterval: 200 * time.Millisecond, DialInterval: 50 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, IdleTimeout: 5 * time.Second,
		Logger: slog.New(logs),
	}, host)
	if err != nil {
		t.Fatal(err)
	}
	host.mesh.Store(m)
	if host.calls != nil {
		m.HandleCalls(host.calls)
	}
	if host.echo {
		m.Handle(streamEcho, func(_ context.Context, _ oplog.Key, s *quic.Stream) {
			io.Copy(s, s)
			s.Close()
		})
	}
	m.AddBootstrap(bootstrap...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testNode{key: key, host: host, mesh: m, logs: logs, stop: stop}
}

func (n *testNode) self() oplog.Key { return oplog.KeyOf(n.key) }
func (n *testNode) addr() string    { return n.mesh.Addr().String() }

// logCounter counts log records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.counts[r.Message]++
	l.mu.Unlock()
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[msg]
}

// eventually fails the test unless cond holds within a few seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noLeaks fails the test if goroutines started during it outlive it. It
// must be called first, so that its check runs after every other cleanup.
func noLeaks(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				var ours []string
				for _, g := range strings.Split(string(buf), "\n\n") {
					if strings.Contains(g, "quic-go") || strings.Contains(g, "pln/netx.") && !strings.Contains(g, "noLeaks") {
						ours = append(ours, g)
					}
				}
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), strings.Join(ours, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// twoMembers is a cluster with members a and b, each knowing the other's
// grant, and b dialling a. a serves calls with calls, if given, and
// echoes streamEcho streams.
func twoMembers(t testing.TB, calls ...CallHandler) (*testCluster, *testNode, *testNode) {
	t.Helper()
	c := newTestCluster(t)
	ka, kb := newKey(t), newKey(t)
	ops := []*oplog.Op{
		c.genesis,
		c.sign(t, c.root, &reducers.Grant{Subject: oplog.KeyOf(ka), Tier: reducers.TierAdmin}),
		c.sign(t, c.root, &reducers.Grant{Subject: oplog.KeyOf(kb), Tier: reducers.TierMember}),
	}
	ha := newFakeHost(c.id, ops...)
	if len(calls) > 0 {
		ha.calls = calls[0]
	}
	ha.echo = true
	a := startNode(t, ka, ha)
	b := startNode(t, kb, newFakeHost(c.id, ops...), a.addr())
	eventually(t, "a and b did not link", func() bool { return a.mesh.Connected(b.self()) && b.mesh.Connected(a.self()) })
	return c, a, b
}

func TestMeshPushesAndSyncs(t *testing.T) {
	noLeaks(t)
	c, a, b := twoMembers(t)

	// Pushed: an op a accepts goes to b at once.
	seed := c.sign(t, a.key, &reducers.Seed{Name: "pushed", Kind: reducers.SeedWASM, Digest: oplog.Digest{1}, MinReplicas: 1, MaxReplicas: 1})
	if _, err := a.host.Ingest(oplog.Key{}, []*oplog.Op{seed}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pushed op did not reach b", func() bool { return b.host.has(seed.ID()) })

	// Synced: ops a holds that were never pushed (stored behind the mesh's
	// back) reach b by anti-entropy, and b's reach a.
	onlyA := c.sign(t, a.key, &reducers.Seed{Name: "only-a", Kind: reducers.SeedWASM, Digest: oplog.Digest{2}, MinReplicas: 1, MaxReplicas: 1})
	onlyB := c.sign(t, b.key, &reducers.Load{Node: b.self()})
	a.host.mu.Lock()
	a.host.ops[onlyA.ID()] = onlyA
	a.host.mu.Unlock()
	b.host.mu.Lock()
	b.host.ops[onlyB.ID()] = onlyB
	b.host.mu.Unlock()
	eventually(t, "anti-entropy did not exchange the ops", func() bool { return b.host.has(onlyA.ID()) && a.host.has(onlyB.ID()) })
	if len(a.host.all()) != len(b.host.all()) {
		t.Errorf("a holds %d ops, b %d", len(a.host.all()), len(b.host.all()))
	}
}

func TestMeshRefusesANonMember(t *testing.T) {
	noLeaks(t)
	c, a, _ := twoMembers(t)
	// A stranger whose own view says it is a member — a genuine grant by
	// the root that a has never seen — dials a: a judges by its own view,
	// refuses the handshake, and never lists it.
	ks := newKey(t)
	believer := []*oplog.Op{c.genesis,
		c.sign(t, c.root, &reducers.Grant{Subject: a.self(), Tier: reducers.TierAdmin}),
		c.sign(t, c.root, &reducers.Grant{Subject: oplog.KeyOf(ks), Tier: reducers.TierMember})}
	stranger := startNode(t, ks, newFakeHost(c.id, believer...), a.addr())
	eventually(t, "the stranger never tried to link", func() bool {
		return stranger.logs.count("peer disconnected")+stranger.logs.count("dial failed") >= 2
	})
	if a.mesh.Connected(stranger.self()) {
		t.Fatal("a linked to a key that is not a member")
	}
	// A node whose view does not admit even itself does not dial at all.
	empty := startNode(t, newKey(t), newFakeHost(c.id), a.addr())
	eventually(t, "the empty node closed nothing", func() bool { return len(empty.mesh.Peers()) == 0 })
	if a.mesh.Connected(empty.self()) {
		t.Fatal("a linked to a key that is not a member")
	}
}

func TestMeshDenyClosesTheLink(t *testing.T) {
	noLeaks(t)
	c, a, b := twoMembers(t)
	d := c.sign(t, a.key, &reducers.Deny{Subject: b.self(), Reason: "test"})
	if _, err := a.host.Ingest(oplog.Key{}, []*oplog.Op{d}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the link to the denied node did not close", func() bool {
		return !a.mesh.Connected(b.self()) && !b.mesh.Connected(a.self())
	})
	for i := range 20 { // and it stays closed, for many dial intervals
		if a.mesh.Connected(b.self()) {
			t.Fatalf("the denied node linked again (check %d)", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Both ends dialling each other at once end with one link, the same on
// both sides, that stays up.
func TestMeshOneLinkPerPair(t *testing.T) {
	noLeaks(t)
	c := newTestCluster(t)
	ka, kb := newKey(t), newKey(t)
	ops := []*oplog.Op{
		c.genesis,
		c.sign(t, c.root, &reducers.Grant{Subject: oplog.KeyOf(ka), Tier: reducers.TierMember}),
		c.sign(t, c.root, &reducers.Grant{Subject: oplog.KeyOf(kb), Tier: reducers.TierMember}),
	}
	ha, hb := newFakeHost(c.id, ops...), newFakeHost(c.id, ops...)
	a := startNode(t, ka, ha)
	b := startNode(t, kb, hb, a.addr())
	a.mesh.AddBootstrap(b.addr()) // a may dial b while b dials a
	oneLink := func() bool {
		pa, pb := a.mesh.Peers(), b.mesh.Peers()
		return len(pa) == 1 && len(pb) == 1 && pa[0].Outbound != pb[0].Outbound
	}
	// Both dials may land; the loser's close reaches each end in its own
	// time. Wait for one link to hold for a while, then watch it.
	var since time.Time
	eventually(t, "a and b did not settle on one link", func() bool {
		if !oneLink() {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) > 100*time.Millisecond
	})
	first := a.mesh.Peers()[0]
	for i := range 20 {
		if !oneLink() {
			t.Fatalf("check %d: a has links %+v, b %+v; want one link, dialled by one end", i, a.mesh.Peers(), b.mesh.Peers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if now := a.mesh.Peers()[0]; !now.Since.Equal(first.Since) {
		t.Errorf("the link was replaced: up since %s, then since %s", first.Since, now.Since)
	}
}

// A sync session must free its stream: quic-go releases a stream only when
// both directions are done, and a link allows 1,024 at once. Sessions that
// leaked theirs jammed anti-entropy on a link after about 85 minutes.
func TestMeshSyncSessionsFreeTheirStreams(t *testing.T) {
	noLeaks(t)
	_, a, b := twoMembers(t)
	b.mesh.mu.Lock()
	p := b.mesh.peers[a.self()]
	b.mesh.mu.Unlock()
	if p == nil || !p.outbound {
		t.Fatal("b has no outbound link to a")
	}
	for i := range 1100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := p.conn.OpenStreamSync(ctx)
		if err != nil {
			cancel()
			t.Fatalf("session %d: no stream: %v", i, err)
		}
		_, err = b.mesh.runSync(ctx, a.self(), s, true)
		cancel()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
}

// streamEcho is a stream type only tests serve: it echoes what it reads.
const streamEcho byte = 0xEE
