package daemon

import (
	"context"
	"flag"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Test fixtures: a clock the test moves by hand, and real nodes in temporary
// directories that share it.

var update = flag.Bool("update", false, "rewrite the token fuzz corpus in "+tokenCorpus+" and the crafted logs in "+logsDir)

// Checked-in test data, relative to this package.
const (
	tokenCorpus = "../../../testdata/fuzz/token"
	logsDir     = "../../../testdata/logs"
)

// testEpoch is when every test cluster starts: fixed, so nothing depends on
// the day the tests run.
var testEpoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a physical clock that only moves when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: testEpoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// testConfig is a node in a fresh directory on clk, without fsync.
func testConfig(t testing.TB, clk *fakeClock, name string) Config {
	return Config{Dir: filepath.Join(t.TempDir(), name), Now: clk.Now, NoSync: true}
}

// initNode founds a cluster whose first node is called name.
func initNode(t testing.TB, clk *fakeClock, name string) *Node {
	t.Helper()
	n, err := Init(testConfig(t, clk, name), InitOptions{Name: "test", Props: map[string]string{"name": name}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// inviteToken has admin make an invite and returns it parsed.
func inviteToken(t testing.TB, admin *Node, r InviteRequest) (*Token, string) {
	t.Helper()
	res, err := invite(context.Background(), admin, r)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(res.Token)
	if err != nil {
		t.Fatalf("ParseToken of a fresh invite: %v", err)
	}
	return tok, res.Token
}

// joinNode enrols a new node called name with an invite of tier from admin,
// and gives admin the joiner's ops, as the mesh would.
func joinNode(t testing.TB, clk *fakeClock, admin *Node, name string, tier reducers.Tier) *Node {
	t.Helper()
	tok, _ := inviteToken(t, admin, InviteRequest{Tier: tier.String()})
	n, res, err := Enroll(testConfig(t, clk, name), tok, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if res.Tier != tier {
		t.Fatalf("%s joined as %s, want %s", name, res.Tier, tier)
	}
	share(t, n, admin)
	return n
}

// share ingests every op from's log holds into to.
func share(t testing.TB, from, to *Node) {
	t.Helper()
	if _, err := to.Ingest(logOf(t, from)...); err != nil {
		t.Fatal(err)
	}
}

// logOf returns a node's log in arrival order.
func logOf(t testing.TB, n *Node) []*oplog.Op {
	t.Helper()
	var ops []*oplog.Op
	if err := n.store.ForEachArrival(1, func(_ uint64, op *oplog.Op) error {
		ops = append(ops, op)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ops
}

// author has n author b, failing the test if it cannot.
func author(t testing.TB, n *Node, b reducers.Body) *oplog.Op {
	t.Helper()
	op, err := n.Author(b)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// reportLoadOnce authors one load report, as 'pln up' does every interval.
func reportLoadOnce(t testing.TB, n *Node) *oplog.Op {
	t.Helper()
	return author(t, n, &reducers.Load{Node: n.Self(), CPUMilli: 4000, CPUUsedMilli: 500, MemBytes: 8 << 30, MemUsedBytes: 1 << 30})
}

// storedCount is how many ops n's store holds.
func storedCount(t testing.TB, n *Node) int {
	t.Helper()
	c, err := n.store.Count()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
