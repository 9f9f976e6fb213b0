package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Mesh tests: real nodes in one process on loopback QUIC (DevCluster), with
// the packet filter between them. Intervals are short so that the tests are
// quick, but not so short that a loaded two-core machine under -race cannot
// keep up. Every wait polls a condition with a deadline.

// meshWait bounds every "eventually" in these tests. It is generous: the
// figures the issue promises (a fraction of a second) are logged and
// asserted separately where they matter.
const meshWait = 15 * time.Second

// meshOptions are the cluster settings of these tests.
func meshOptions(t testing.TB) DevOptions {
	return DevOptions{
		Dir:       t.TempDir(),
		NoSync:    true,
		Mesh:      testMeshConfig(),
		Params:    reducers.Params{LoadIntervalMillis: 500},
		WasmCache: sharedWasmCache,
	}
}

// testMeshConfig is the mesh timing of these tests: short intervals, so a
// test waits milliseconds where a deployment would wait seconds.
func testMeshConfig() netx.Config {
	return netx.Config{
		SyncInterval: 300 * time.Millisecond,
		DialInterval: 50 * time.Millisecond,
		BackoffMin:   50 * time.Millisecond,
		BackoffMax:   500 * time.Millisecond,
		DialTimeout:  2 * time.Second,
		IdleTimeout:  5 * time.Second,
	}
}

// quietOptions are meshOptions for tests that compare view digests. Every
// load report changes the view, and under -race on a busy machine a report
// is always in flight somewhere in a cluster reporting every 500 ms, so the
// digests never agree at one instant. Here each node reports once at start
// (which makes it live at once) and then not again within the test.
func quietOptions(t testing.TB) DevOptions {
	o := meshOptions(t)
	o.Params.LoadIntervalMillis = 60_000
	return o
}

// startMesh starts a cluster of n nodes and stops it when the test ends,
// checking that no goroutine outlives it.
func startMesh(t testing.TB, n int, opts DevOptions) *DevCluster {
	t.Helper()
	checkNoLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := StartDev(ctx, n, opts)
	if err != nil {
		cancel()
		t.Fatalf("StartDev(%d): %v", n, err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
		cancel()
	})
	return cl
}

// leakChecked holds the tests that have a leak check already: a test with
// two clusters counts from before the first.
var leakChecked sync.Map

// checkNoLeaks fails the test if, once its cleanups have run, more
// goroutines are left than there were before it began. It registers first,
// so it runs last.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	if _, dup := leakChecked.LoadOrStore(t, true); dup {
		return
	}
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		defer leakChecked.Delete(t)
		var now int
		if WaitFor(10*time.Second, func() bool { now = runtime.NumGoroutine(); return now <= before }) {
			return
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var ours []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "quic-go") || strings.Contains(g, "pln-mesh/pln/") && !strings.Contains(g, "checkNoLeaks") {
				ours = append(ours, g)
			}
		}
		t.Errorf("%d goroutines before the test, %d after it; ours still running:\n%s", before, now, strings.Join(ours, "\n\n"))
	})
}

// nodes returns the cluster's running nodes, in order.
func nodes(cl *DevCluster) []*Node {
	var out []*Node
	for _, d := range cl.Nodes() {
		if n := d.Node(); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitFor fails the test with what if cond does not hold within timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitFor(timeout, cond) {
		t.Fatalf("after %s: %s", timeout, what)
	}
}

// seesLive reports whether a's status shows b as a live peer it is linked to
// directly.
func seesLive(a, b *Node) bool {
	st, err := status(context.Background(), a, struct{}{})
	if err != nil {
		return false
	}
	for _, p := range st.Peers {
		if p.Key == b.Self() {
			return p.Live && p.Direct
		}
	}
	return false
}

// linkedTo lists the keys n's mesh has links to.
func linkedTo(n *Node) []oplog.Key {
	m := n.mesh.Load()
	if m == nil {
		return nil
	}
	var out []oplog.Key
	for _, p := range m.Peers() {
		out = append(out, p.Key)
	}
	return out
}

// digestsOf renders the cluster's digests for a failure message.
func digestsOf(cl *DevCluster) string {
	var lines []string
	for name, d := range cl.Digests() {
		lines = append(lines, name+" "+d.Short())
	}
	slices.Sort(lines)
	return strings.Join(lines, ", ")
}

// waitConverged waits until every running node has the same view digest.
// Load reports keep coming, so it waits for a moment when none is in flight.
func waitConverged(t testing.TB, cl *DevCluster, timeout time.Duration) {
	t.Helper()
	if !WaitFor(timeout, cl.Converged) {
		t.Fatalf("after %s the views still differ: %s", timeout, digestsOf(cl))
	}
}

// seedBody is a small valid seed called name.
func seedBody(name string) *reducers.Seed {
	return &reducers.Seed{Name: name, Kind: reducers.SeedWASM, Digest: digestOf(name), MinReplicas: 1, MaxReplicas: 1}
}

// hasSeed reports whether n's view holds the seed called name.
func hasSeed(n *Node, name string) bool { return n.View().Seeds[name] != nil }

// everyone reports whether cond holds for each of ns.
func everyone(ns []*Node, cond func(*Node) bool) bool {
	for _, n := range ns {
		if !cond(n) {
			return false
		}
	}
	return true
}

func TestMeshTwoNodesJoinAndSeeEachOther(t *testing.T) {
	cl := startMesh(t, 1, meshOptions(t))
	ctx := context.Background()
	start := time.Now()
	d1, err := cl.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Since(start)
	n0, n1 := cl.Nodes()[0].Node(), d1.Node()
	waitFor(t, meshWait, "the two nodes do not show each other as live, direct peers", func() bool {
		return seesLive(n0, n1) && seesLive(n1, n0)
	})
	visible := time.Since(start)
	t.Logf("join took %s; both show each other as live direct peers %s after the invite", joined.Round(time.Millisecond), visible.Round(time.Millisecond))
	if visible > 2*time.Second {
		t.Errorf("the nodes took %s to see each other; want under 2s", visible.Round(time.Millisecond))
	}

	// An op on n0 reaches n1: n0 (an admin) makes n1 a publisher.
	if _, err := grant(ctx, n0, GrantRequest{Subject: n1.Self().String(), Tier: "publisher"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "n0's grant did not reach n1", func() bool {
		m := n1.View().Member(n1.Self())
		return m != nil && m.Tier == reducers.TierPublisher
	})
	// And one on n1 reaches n0.
	author(t, n1, seedBody("hello"))
	waitFor(t, meshWait, "n1's seed did not reach n0", func() bool { return hasSeed(n0, "hello") })
}

func TestMeshTenNodesConverge(t *testing.T) {
	start := time.Now()
	cl := startMesh(t, 10, quietOptions(t))
	t.Logf("ten nodes started in %s", time.Since(start).Round(time.Millisecond))
	ns := nodes(cl)
	author(t, ns[0], seedBody("ten"))
	waitFor(t, meshWait, "the seed did not reach every node", func() bool {
		return everyone(ns, func(n *Node) bool { return hasSeed(n, "ten") })
	})
	waitFor(t, meshWait, "not every node is linked to every other", func() bool {
		return everyone(ns, func(n *Node) bool { return len(linkedTo(n)) == len(ns)-1 })
	})
	waitConverged(t, cl, meshWait)
	t.Logf("converged %s after start", time.Since(start).Round(time.Millisecond))
}

// freshKey is a new key pair that belongs to no one yet.
func freshKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// isMember reports whether n's view admits k and does not deny it.
func isMember(n *Node, k oplog.Key) bool {
	m := n.View().Member(k)
	return m != nil && !m.Denied
}

func TestMeshPartitionKeepsBothSidesWorkingAndHeals(t *testing.T) {
	opts := quietOptions(t)
	opts.Mesh.IdleTimeout = 1500 * time.Millisecond // so that links across the cut go, and must come back
	cl := startMesh(t, 5, opts)
	ctx := context.Background()
	ds := cl.Nodes()
	ns := nodes(cl)
	waitMesh(t, cl)
	// n2 leads the right side: make it an admin so it can publish and admit.
	if _, err := grant(ctx, ns[0], GrantRequest{Subject: ns[2].Self().String(), Tier: "admin"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "n2's admin grant did not reach n2", func() bool {
		m := ns[2].View().Member(ns[2].Self())
		return m != nil && m.Tier == reducers.TierAdmin
	})
	left, right := ns[:2], ns[2:]
	cl.Partition(ds[:2], ds[2:])
	across := func() bool {
		for _, a := range left {
			for _, b := range right {
				if slices.Contains(linkedTo(a), b.Self()) || slices.Contains(linkedTo(b), a.Self()) {
					return true
				}
			}
		}
		return false
	}
	waitFor(t, meshWait, "links across the partition did not close", func() bool { return !across() })

	lk, rk := oplog.KeyOf(freshKey(t)), oplog.KeyOf(freshKey(t))
	author(t, ns[0], seedBody("left"))
	author(t, ns[0], &reducers.Grant{Subject: lk, Tier: reducers.TierMember})
	author(t, ns[2], seedBody("right"))
	author(t, ns[2], &reducers.Grant{Subject: rk, Tier: reducers.TierMember})
	waitFor(t, meshWait, "each side's ops did not reach the whole side", func() bool {
		return everyone(left, func(n *Node) bool { return hasSeed(n, "left") && isMember(n, lk) }) &&
			everyone(right, func(n *Node) bool { return hasSeed(n, "right") && isMember(n, rk) })
	})
	for _, n := range ns {
		if hasSeed(n, "left") && hasSeed(n, "right") {
			t.Fatalf("node %s has both sides' seeds while partitioned", n.Self().Short())
		}
	}
	if ns[0].View().Digest() == ns[2].View().Digest() {
		t.Fatal("the two sides of the partition have the same view")
	}

	cl.Filter.HealAll()
	healed := time.Now()
	waitFor(t, meshWait, "after healing, not every node has both sides' ops", func() bool {
		return everyone(ns, func(n *Node) bool {
			return hasSeed(n, "left") && hasSeed(n, "right") && isMember(n, lk) && isMember(n, rk)
		})
	})
	waitConverged(t, cl, meshWait)
	t.Logf("all five converged %s after the heal", time.Since(healed).Round(time.Millisecond))
}

func TestMeshDenyCutsANodeOffEverywhere(t *testing.T) {
	opts := meshOptions(t)
	cl := startMesh(t, 5, opts)
	ctx := context.Background()
	ns := nodes(cl)
	n3 := ns[3]
	others := slices.Concat(ns[:3], ns[4:])
	waitMesh(t, cl)

	start := time.Now()
	if _, err := deny(ctx, ns[0], DenyRequest{Subject: n3.Self().String(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	denied := func(n *Node) bool { m := n.View().Member(n3.Self()); return m != nil && m.Denied }
	waitFor(t, meshWait, "the deny did not reach every other node", func() bool { return everyone(others, denied) })
	t.Logf("every other node saw the deny after %s", time.Since(start).Round(time.Millisecond))
	notLinked := func() bool {
		return len(linkedTo(n3)) == 0 && everyone(others, func(n *Node) bool { return !slices.Contains(linkedTo(n), n3.Self()) })
	}
	waitFor(t, meshWait, "links to n3 did not close", notLinked)
	t.Logf("n3's view shows it denied: %v", denied(n3))

	// n3 keeps dialling (its own view may not know it is out); for many dial
	// intervals, no node lets it back in.
	until := time.Now().Add(time.Second)
	for time.Now().Before(until) {
		for _, n := range others {
			if slices.Contains(linkedTo(n), n3.Self()) {
				t.Fatalf("node %s linked to n3 again after the deny", n.Self().Short())
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMeshAClockAheadCannotDragTheMeshForward(t *testing.T) {
	cl := startMesh(t, 3, meshOptions(t))
	ns := nodes(cl)
	waitMesh(t, cl)
	maxOffset := time.Duration(ns[0].View().Params.MaxOffsetMillis) * time.Millisecond

	// n2's key signs a load report from an hour ahead; n1 receives it.
	key, err := loadKey(filepath.Join(ns[2].Dir(), NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ahead := oplog.HLCAt(time.Now().Add(time.Hour))
	op, err := signBody(ns[2].Cluster(), key, ahead, &reducers.Load{Node: ns[2].Self(), Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].Ingest(op); err != nil {
		t.Fatalf("the node refused a well-signed op from the future: %v", err)
	}
	waitFor(t, meshWait, "the op from the future is not stored and held on every node", func() bool {
		return everyone(ns, func(n *Node) bool {
			_, _, err := n.store.Get(op.ID())
			return err == nil && n.View().Pending >= 1
		})
	})
	for i, n := range ns {
		if l := n.View().Loads[ns[2].Self()]; l != nil && l.HLC == ahead {
			t.Errorf("n%d folded the load from an hour ahead", i)
		}
		next, err := n.Author(n.sampleLoad())
		if err != nil {
			t.Fatal(err)
		}
		if skew := next.HLC.Time().Sub(time.Now()); skew > maxOffset {
			t.Errorf("n%d's next op is %s ahead of real time; the max offset is %s", i, skew.Round(time.Millisecond), maxOffset)
		}
	}
}

func TestMeshRestartFromDiskCatchesUp(t *testing.T) {
	cl := startMesh(t, 3, quietOptions(t))
	ctx := context.Background()
	ds := cl.Nodes()
	ns := nodes(cl)
	waitMesh(t, cl)
	addr := ds[2].Addr
	if err := cl.Stop(ds[2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "the others still list the stopped node as a peer", func() bool {
		return !slices.Contains(linkedTo(ns[0]), ns[2].Self()) && !slices.Contains(linkedTo(ns[1]), ns[2].Self())
	})
	author(t, ns[0], seedBody("while-away"))
	newcomer := oplog.KeyOf(freshKey(t))
	if _, err := grant(ctx, ns[0], GrantRequest{Subject: newcomer.String(), Tier: "member"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "n1 did not get n0's ops", func() bool { return hasSeed(ns[1], "while-away") })

	if err := cl.Restart(ctx, ds[2]); err != nil {
		t.Fatal(err)
	}
	if ds[2].Addr != addr {
		t.Errorf("the node came back on %s, not %s", ds[2].Addr, addr)
	}
	n2 := ds[2].Node()
	waitFor(t, meshWait, "the restarted node did not catch up", func() bool {
		return hasSeed(n2, "while-away") && isMember(n2, newcomer)
	})
	waitFor(t, meshWait, "the restarted node is not linked to both others", func() bool { return len(linkedTo(n2)) == 2 })
	waitConverged(t, cl, meshWait)
}

// waitMesh waits until every running node is linked to every other (the
// cluster is below the full-mesh size).
func waitMesh(t testing.TB, cl *DevCluster) {
	t.Helper()
	ns := nodes(cl)
	waitFor(t, meshWait, "the nodes are not all linked to each other", func() bool {
		return everyone(ns, func(n *Node) bool { return len(linkedTo(n)) == len(ns)-1 })
	})
}

// ALPN protocols of the mesh (netx keeps its own constants unexported).
const (
	alpnMesh = "pln/1"
	alpnJoin = "pln-join/1"
)

// rawCert is a self-signed certificate for key, as a node makes.
func rawCert(t testing.TB, key ed25519.PrivateKey) tls.Certificate {
	t.Helper()
	c, err := certFor(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certFor(key ed25519.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// rawDial connects to addr as key with bare quic-go, speaking alpn: a
// client that does only what the test tells it.
func rawDial(t testing.TB, addr string, key ed25519.PrivateKey, alpn string) (*quic.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert(t, key)},
		InsecureSkipVerify: true, NextProtos: []string{alpn},
	}, &quic.Config{MaxIdleTimeout: 5 * time.Second, KeepAlivePeriod: time.Second, HandshakeIdleTimeout: 3 * time.Second})
	if err == nil {
		t.Cleanup(func() { conn.CloseWithError(0, "") })
	}
	return conn, err
}

// closedBy waits for conn to close and returns why.
func closedBy(t testing.TB, conn *quic.Conn, within time.Duration) error {
	t.Helper()
	select {
	case <-conn.Context().Done():
		return context.Cause(conn.Context())
	case <-time.After(within):
		t.Fatalf("the node did not close the connection within %s", within)
		return nil
	}
}

// refused asserts that a handshake as key to addr fails: the dial errs, or
// the node closes the connection at once with a TLS error.
func refused(t testing.TB, addr string, key ed25519.PrivateKey) {
	t.Helper()
	conn, err := rawDial(t, addr, key, alpnMesh)
	if err == nil {
		err = closedBy(t, conn, 3*time.Second)
	}
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.Remote || !te.ErrorCode.IsCryptoError() {
		t.Fatalf("the handshake of %s failed with %v; want a TLS alert from the node", oplog.KeyOf(key).Short(), err)
	}
}

// appClose asserts that err is the node closing the connection with code.
func appClose(t testing.TB, err error, code quic.ApplicationErrorCode, what string) {
	t.Helper()
	var ae *quic.ApplicationError
	if !errors.As(err, &ae) || !ae.Remote || ae.ErrorCode != code {
		t.Fatalf("%s: the connection ended with %v; want the node to close it with code %d", what, err, code)
	}
}

// nobodyLinks asserts that no node lists k as a peer.
func nobodyLinks(t testing.TB, cl *DevCluster, k oplog.Key) {
	t.Helper()
	for _, n := range nodes(cl) {
		if slices.Contains(linkedTo(n), k) {
			t.Fatalf("node %s lists %s as a peer", n.Self().Short(), k.Short())
		}
	}
}

func TestMeshRefusesStrangersAndDeniedKeys(t *testing.T) {
	cl := startMesh(t, 2, meshOptions(t))
	ctx := context.Background()
	n0 := cl.Nodes()[0]
	waitMesh(t, cl)

	stranger := freshKey(t)
	refused(t, n0.Addr, stranger)
	nobodyLinks(t, cl, oplog.KeyOf(stranger))

	// A member is let in; once denied, its link closes and it is refused.
	member := freshKey(t)
	mk := oplog.KeyOf(member)
	if _, err := grant(ctx, n0.Node(), GrantRequest{Subject: mk.String(), Tier: "member"}); err != nil {
		t.Fatal(err)
	}
	conn, err := rawDial(t, n0.Addr, member, alpnMesh)
	if err != nil {
		t.Fatalf("a member's handshake failed: %v", err)
	}
	waitFor(t, meshWait, "n0 does not list the member as a peer", func() bool { return slices.Contains(linkedTo(n0.Node()), mk) })
	if _, err := deny(ctx, n0.Node(), DenyRequest{Subject: mk.String()}); err != nil {
		t.Fatal(err)
	}
	appClose(t, closedBy(t, conn, 3*time.Second), 1, "the denied member's link")
	refused(t, n0.Addr, member)
	n1 := cl.Nodes()[1]
	waitFor(t, meshWait, "the deny did not reach n1", func() bool { return !isMember(n1.Node(), mk) })
	refused(t, n1.Addr, member)
	waitFor(t, meshWait, "a node still lists the denied key", func() bool {
		return everyone(nodes(cl), func(n *Node) bool { return !slices.Contains(linkedTo(n), mk) })
	})
}

// rawFrame is one length-prefixed frame, as netx writes them.
func rawFrame(payload []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(payload))), payload...)
}

func TestMeshSurvivesGarbageOnEveryStream(t *testing.T) {
	cl := startMesh(t, 2, meshOptions(t))
	ctx := context.Background()
	n0, n1 := cl.Nodes()[0].Node(), cl.Nodes()[1].Node()
	addr := cl.Nodes()[0].Addr
	waitMesh(t, cl)
	member := freshKey(t)
	mk := oplog.KeyOf(member)
	if _, err := grant(ctx, n0, GrantRequest{Subject: mk.String(), Tier: "publisher"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "n1 did not learn of the member", func() bool { return isMember(n1, mk) })

	// Ops the member signs that must never be stored: one for another
	// cluster (its signature does not verify here) and one altered after
	// signing.
	var otherCluster oplog.ClusterID
	otherCluster[0] = 1
	foreign, err := signBody(otherCluster, member, oplog.HLCAt(time.Now()), seedBody("foreign"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := signBody(n0.Cluster(), member, oplog.HLCAt(time.Now()), seedBody("altered"))
	if err != nil {
		t.Fatal(err)
	}
	altered := slices.Clone(good.Bytes())
	altered[len(altered)-1] ^= 1
	mustNotStore := []oplog.ID{foreign.ID(), good.ID()}

	syncStream := func(frames ...[]byte) []byte { // the type byte, then frames
		b := []byte{netx.StreamSync}
		for _, f := range frames {
			b = append(b, rawFrame(f)...)
		}
		return b
	}
	pushStream := func(frames ...[]byte) []byte {
		b := []byte{netx.StreamPush}
		for _, f := range frames {
			b = append(b, rawFrame(f)...)
		}
		return b
	}
	huge := binary.AppendUvarint(nil, 1<<40)
	cases := []struct {
		name string
		uni  bool
		send []byte
	}{
		{"unknown bidirectional stream type", false, []byte{0x7f, 1, 2, 3}},
		{"unknown unidirectional stream type", true, []byte{0x7f, 1, 2, 3}},
		{"sync: garbage reconciliation message", false, syncStream(append([]byte{'R'}, bytes.Repeat([]byte{0xff}, 40)...))},
		{"sync: unknown frame kind", false, syncStream([]byte("Zzz"))},
		{"sync: empty frame", false, syncStream(nil)},
		{"sync: need list that is not CBOR", false, syncStream([]byte{'N', 0xff, 0xff})},
		{"sync: an op while reconciling", false, syncStream(append([]byte{'O'}, good.Bytes()...))},
		{"sync: an op for another cluster after the need list", false, syncStream([]byte{'N', 0x80}, append([]byte{'O'}, foreign.Bytes()...), []byte{'E'})},
		{"sync: an altered op after the need list", false, syncStream([]byte{'N', 0x80}, append([]byte{'O'}, altered...), []byte{'E'})},
		{"sync: oversized frame", false, append([]byte{netx.StreamSync}, huge...)},
		{"push: a frame that is not an op", true, pushStream([]byte("not an op"))},
		{"push: an op for another cluster", true, pushStream(foreign.Bytes())},
		{"push: an altered op", true, pushStream(altered)},
		{"push: oversized frame", true, append([]byte{netx.StreamPush}, huge...)},
		{"push: frame length that never ends", true, append([]byte{netx.StreamPush}, bytes.Repeat([]byte{0xff}, 11)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := rawDial(t, addr, member, alpnMesh)
			if err != nil {
				t.Fatalf("the member's handshake failed: %v", err)
			}
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if tc.uni {
				s, err := conn.OpenUniStreamSync(sctx)
				if err != nil {
					t.Fatal(err)
				}
				s.Write(tc.send)
			} else {
				s, err := conn.OpenStreamSync(sctx)
				if err != nil {
					t.Fatal(err)
				}
				s.Write(tc.send)
			}
			appClose(t, closedBy(t, conn, 5*time.Second), 2, tc.name)
		})
	}

	// Nothing the member sent was stored anywhere, and the mesh still works.
	for _, n := range []*Node{n0, n1} {
		for _, id := range mustNotStore {
			if _, _, err := n.store.Get(id); err == nil {
				t.Errorf("node %s stored op %s from a peer that sent garbage", n.Self().Short(), id.Short())
			}
		}
		if hasSeed(n, "foreign") || hasSeed(n, "altered") {
			t.Errorf("node %s folded a seed from garbage", n.Self().Short())
		}
	}
	if !slices.Contains(linkedTo(n0), n1.Self()) {
		t.Error("n0 lost its link to n1")
	}
	author(t, n0, seedBody("after-garbage"))
	waitFor(t, meshWait, "n0's op did not reach n1 after the garbage", func() bool { return hasSeed(n1, "after-garbage") })
	nobodyLinks(t, cl, mk)

	// The join protocol: anyone may speak it, so garbage on it must be
	// answered with a refusal and admit no one.
	joinCases := []struct {
		name string
		send []byte
	}{
		{"not a join stream", []byte{0x7f, 1, 2, 3}},
		{"a request that is not CBOR", append([]byte{3}, rawFrame([]byte{0xff, 0xfe})...)},
		{"an empty request", append([]byte{3}, rawFrame([]byte{0xa0})...)},
		{"an op that does not decode", append([]byte{3}, rawFrame(mustMarshal(t, map[int][][]byte{1: {{1, 2, 3}}}))...)},
		{"an oversized frame", append([]byte{3}, huge...)},
	}
	for _, tc := range joinCases {
		t.Run("join: "+tc.name, func(t *testing.T) {
			stranger := freshKey(t)
			conn, err := rawDial(t, addr, stranger, alpnJoin)
			if err != nil {
				t.Fatalf("a join handshake failed: %v", err)
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			s, err := conn.OpenStreamSync(sctx)
			if err != nil {
				t.Fatal(err)
			}
			s.SetDeadline(time.Now().Add(5 * time.Second))
			s.Write(tc.send)
			s.Close()
			reply, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("no answer to a garbage join: %v", err)
			}
			var r struct {
				Error string   `cbor:"1,keyasint,omitempty"`
				Addrs []string `cbor:"2,keyasint,omitempty"`
			}
			n, k := binary.Uvarint(reply)
			if k <= 0 || int(n) != len(reply)-k || oplog.Unmarshal(reply[k:], &r) != nil || r.Error == "" || len(r.Addrs) > 0 {
				t.Fatalf("the answer to a garbage join is %q; want a refusal", reply)
			}
			t.Logf("refused: %s", r.Error)
			conn.CloseWithError(0, "")
			if isMember(n0, oplog.KeyOf(stranger)) {
				t.Fatal("a garbage join admitted its key")
			}
		})
	}
	author(t, n0, seedBody("after-join-garbage"))
	waitFor(t, meshWait, "n0's op did not reach n1 after the join garbage", func() bool { return hasSeed(n1, "after-join-garbage") })
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := oplog.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMeshJoinErrorsSayWhich(t *testing.T) {
	a := startMesh(t, 1, meshOptions(t))
	b := startMesh(t, 1, meshOptions(t))
	ctx := context.Background()
	na, addrA, addrB := a.Nodes()[0].Node(), a.Nodes()[0].Addr, b.Nodes()[0].Addr

	// plan makes an invite on na and works out a join for a fresh directory.
	plan := func(t *testing.T, ttl time.Duration) (*Token, *JoinPlan) {
		t.Helper()
		res, err := invite(ctx, na, InviteRequest{Tier: "member", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ParseToken(res.Token)
		if err != nil {
			t.Fatal(err)
		}
		p, err := PlanJoin(Config{Dir: filepath.Join(t.TempDir(), "joiner"), NoSync: true}, tok, "joiner")
		if err != nil {
			t.Fatal(err)
		}
		return tok, p
	}
	join := func(p *JoinPlan, addrs ...string) error {
		_, err := netx.Join(ctx, netx.Config{Key: p.Key(), Cluster: p.Token.Cluster, DialTimeout: time.Second}, addrs, p.Ops)
		return err
	}
	oneLine := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("the join succeeded")
		}
		msg := err.Error()
		t.Logf("error: %s", msg)
		if strings.Contains(msg, "\n") {
			t.Errorf("the error is more than one line: %q", msg)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("the error %q does not say %q", msg, w)
			}
		}
	}

	t.Run("token for another cluster", func(t *testing.T) {
		_, p := plan(t, time.Hour)
		err := join(p, addrB)
		if !errors.Is(err, netx.ErrJoinRefused) {
			t.Errorf("error %v is not a refusal", err)
		}
		oneLine(t, err, "join refused", "cluster")
	})
	t.Run("expired token", func(t *testing.T) {
		tok, p := plan(t, 300*time.Millisecond)
		expires := tok.Grant().Expires.Time()
		waitFor(t, 5*time.Second, "the clock did not pass the invite's expiry", func() bool { return time.Now().After(expires.Add(10 * time.Millisecond)) })
		_, err := PlanJoin(Config{Dir: filepath.Join(t.TempDir(), "late")}, tok, "late")
		if !errors.Is(err, ErrToken) {
			t.Errorf("PlanJoin of an expired token: %v; want a token error", err)
		}
		oneLine(t, err, "expired")
		// Presented anyway (a plan made before it lapsed), the cluster refuses it.
		err = join(p, addrA)
		if !errors.Is(err, netx.ErrJoinRefused) {
			t.Errorf("error %v is not a refusal", err)
		}
		oneLine(t, err, "join refused", "expired")
		// Nor can a joiner backdate a redemption to before the expiry: the
		// invite key is in the token, and the joiner chooses the HLC.
		joiner := freshKey(t)
		redeem, err := signBody(tok.Cluster, tok.InviteKey, tok.Chain[len(tok.Chain)-1].HLC+1,
			&reducers.Grant{Subject: oplog.KeyOf(joiner), Tier: reducers.TierMember, Props: map[string]string{"name": "late"}})
		if err != nil {
			t.Fatal(err)
		}
		ops := slices.Concat([]*oplog.Op{tok.Genesis}, tok.Chain, []*oplog.Op{redeem})
		_, err = netx.Join(ctx, netx.Config{Key: joiner, Cluster: tok.Cluster, DialTimeout: time.Second}, []string{addrA}, ops)
		oneLine(t, err, "join refused", "expired")
		if isMember(na, oplog.KeyOf(joiner)) {
			t.Error("a backdated redemption of an expired invite admitted its key")
		}
	})
	t.Run("used invite", func(t *testing.T) {
		tok, p := plan(t, time.Hour)
		if err := join(p, addrA); err != nil {
			t.Fatalf("the first redemption failed: %v", err)
		}
		again, err := PlanJoin(Config{Dir: filepath.Join(t.TempDir(), "second")}, tok, "second")
		if err != nil {
			t.Fatal(err)
		}
		err = join(again, addrA)
		if !errors.Is(err, netx.ErrJoinRefused) {
			t.Errorf("error %v is not a refusal", err)
		}
		oneLine(t, err, "join refused", "already")
	})
	t.Run("unreachable address", func(t *testing.T) {
		_, p := plan(t, time.Hour)
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := pc.LocalAddr().String()
		pc.Close()
		err = join(p, dead)
		if errors.Is(err, netx.ErrJoinRefused) {
			t.Errorf("an unreachable address reads as a refusal: %v", err)
		}
		oneLine(t, err, "could not reach", dead)
	})
}

func TestMeshJoinerReachesMembersItWasToldOf(t *testing.T) {
	cl := startMesh(t, 3, meshOptions(t))
	ctx := context.Background()
	waitMesh(t, cl)
	n0 := cl.Nodes()[0]

	// Join through n0, as 'pln join' does, then lose n0 before starting.
	res, err := invite(ctx, n0.Node(), InviteRequest{Tier: "member", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(res.Token)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: filepath.Join(t.TempDir(), "late"), NoSync: true,
		Mesh: meshOptions(t).Mesh}
	cfg.Mesh.Listen = "127.0.0.1:0"
	p, err := PlanJoin(cfg, tok, "late")
	if err != nil {
		t.Fatal(err)
	}
	w, err := netx.Join(ctx, netx.Config{Key: p.Key(), Cluster: tok.Cluster}, tok.Addrs, p.Ops)
	if err != nil {
		t.Fatal(err)
	}
	p.Welcome(w)
	n, err := p.Enroll(tok.Addrs)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if err := cl.Stop(n0); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	ready := make(chan *Node, 1)
	done := make(chan error, 1)
	go func() { done <- Run(rctx, cfg, func(n *Node) { ready <- n }) }()
	defer func() { cancel(); <-done }()
	late := <-ready
	waitFor(t, 5*time.Second, "the joiner never linked to n1 or n2, whose addresses the join gave it", func() bool {
		return len(linkedTo(late)) > 0
	})
}

func TestMeshDenyReachesItsSubject(t *testing.T) {
	cl := startMesh(t, 3, meshOptions(t))
	waitMesh(t, cl)
	ns := nodes(cl)
	if _, err := deny(context.Background(), ns[0], DenyRequest{Subject: ns[2].Self().String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the denied node never learnt of its deny", func() bool {
		m := ns[2].View().Member(ns[2].Self())
		return m != nil && m.Denied
	})
}

func TestMeshDeniedNodeBacksOff(t *testing.T) {
	opts := meshOptions(t)
	counter := &countingHandler{msg: "peer connected", node: "n2", count: new(atomic.Int64)}
	opts.Logger = slog.New(counter)
	cl := startMesh(t, 3, opts)
	waitMesh(t, cl)
	ns := nodes(cl)
	if _, err := deny(context.Background(), ns[0], DenyRequest{Subject: ns[2].Self().String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, meshWait, "the deny did not reach n1", func() bool { m := ns[1].View().Member(ns[2].Self()); return m.Denied })
	// Count n2's handshakes over a fixed window.
	before := counter.count.Load()
	const window = 2 * time.Second
	for end := time.Now().Add(window); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	// Backing off from 50 ms to 500 ms, two peers cost about 2×6 handshakes
	// in two seconds; redialling every 50 ms costs 80.
	if got := counter.count.Load() - before; got > 20 {
		t.Errorf("the denied node made %d handshakes to 2 peers in %s; it should back off", got, window)
	}
}

// countingHandler counts log records with message msg from node.
type countingHandler struct {
	msg, node string
	attrs     []slog.Attr
	count     *atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	for _, a := range h.attrs {
		if a.Key == "node" && a.Value.String() == h.node {
			h.count.Add(1)
		}
	}
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clip(h.attrs), as...)
	return &c
}

func (h *countingHandler) WithGroup(string) slog.Handler { return h }

// A session whose replies the peer refuses (STOP_SENDING) ends at once, and
// the goroutine reading the peer's ops ends with it: the node stops reading
// the stream. That goroutine used to run on after the session returned,
// ingesting and updating the finished session's stats (a race -race saw).
func TestMeshSyncSessionWaitsForItsReader(t *testing.T) {
	cl := startMesh(t, 1, meshOptions(t))
	n0, addr := cl.Nodes()[0].Node(), cl.Nodes()[0].Addr
	member := freshKey(t)
	if _, err := grant(context.Background(), n0, GrantRequest{Subject: oplog.KeyOf(member).String(), Tier: "member"}); err != nil {
		t.Fatal(err)
	}
	conn, err := rawDial(t, addr, member, alpnMesh)
	if err != nil {
		t.Fatal(err)
	}
	s, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Refuse the node's half of the session, then ask for nothing: its
	// reply fails, and the session must stop reading ours.
	s.CancelRead(0)
	s.Write(append([]byte{netx.StreamSync}, rawFrame([]byte{'N', 0x80})...))
	select {
	case <-s.Context().Done(): // the node cancelled its read side
	case <-time.After(3 * time.Second):
		t.Fatal("the node still reads a session that has ended")
	}
	select {
	case <-conn.Context().Done():
		t.Fatalf("a refused reply cost the link: %v", context.Cause(conn.Context()))
	default:
	}
}
