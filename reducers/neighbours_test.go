package reducers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// neighbourCluster folds a cluster of n member nodes, each with a load
// report at t=1s that gives an address, a coordinate at a random spot of a
// 100 ms square (seeded), and — for every relayEvery-th node — relay
// ability. The view is taken at t=2s, when every node is live.
func neighbourCluster(t testing.TB, n, relayEvery int, seed uint64) (*View, []oplog.Key, []*oplog.Op) {
	t.Helper()
	cl, ops := regressCluster(DefaultParams())
	rng := rand.New(rand.NewPCG(seed, seed))
	var keys []oplog.Key
	for i := range n {
		k := pub(fmt.Sprintf("nb%d", i))
		keys = append(keys, k)
		ops = append(ops,
			forgeBody(pub("root"), at(1), &Grant{Subject: k, Tier: TierMember}),
			forgeBody(k, at(1000), &Load{Node: k, Addrs: []string{fmt.Sprintf("10.0.%d.%d:60611", i/256, i%256)},
				Coord:    Coord{X: rng.Int64N(100_000), Y: rng.Int64N(100_000), H: 500, ErrorPM: 100},
				Relay:    relayEvery > 0 && i%relayEvery == 0,
				CPUMilli: 1000}),
		)
	}
	return Fold(cl, ops, at(2000)), keys, ops
}

func TestNeighboursFullMeshBelowTheThreshold(t *testing.T) {
	v, keys, _ := neighbourCluster(t, 10, 0, 1)
	for _, self := range keys {
		got := Neighbours(v, self, at(2000), 16)
		want := slices.DeleteFunc(slices.Clone(keys), func(k oplog.Key) bool { return k == self })
		slices.SortFunc(want, compareKeys)
		if !slices.Equal(got, want) {
			t.Fatalf("%s's neighbours are %d nodes; in a cluster of 10 under the threshold it should link to the other 9", self.Short(), len(got))
		}
	}
	// Exactly at the threshold it is still a full mesh.
	v, keys, _ = neighbourCluster(t, 17, 0, 1)
	if got := Neighbours(v, keys[0], at(2000), 16); len(got) != 16 {
		t.Errorf("with 16 other nodes and a threshold of 16, %d neighbours; want all 16", len(got))
	}
}

// Only nodes that count and can be reached are neighbours: not self, not a
// denied or expired member, not a node that never said where it is.
func TestNeighboursOnlyReachableActiveNodes(t *testing.T) {
	cl, ops := regressCluster(DefaultParams(), "a", "b", "c", "d", "quiet")
	for _, n := range []string{"a", "b", "c", "d"} {
		ops = append(ops, forgeBody(pub(n), at(1000), &Load{Node: pub(n), Addrs: []string{n + ":1"}}))
	}
	ops = append(ops,
		forgeBody(pub("quiet"), at(1000), &Load{Node: pub("quiet")}), // no address
		forgeBody(pub("root"), at(1500), &Deny{Subject: pub("c")}),
		forgeBody(pub("root"), at(2), &Grant{Subject: pub("d"), Tier: TierMember, Expires: at(1800)}),
	)
	v := Fold(cl, ops, at(2000))
	got := Neighbours(v, pub("a"), at(2000), 16)
	if want := []oplog.Key{pub("b")}; !slices.Equal(got, want) {
		var names []string
		for _, k := range got {
			names = append(names, k.Short())
		}
		t.Errorf("a's neighbours are %v; want only b (%s)", names, pub("b").Short())
	}
}

func TestNeighboursBoundedAboveTheThreshold(t *testing.T) {
	const n, fullMesh = 200, 16
	v, keys, ops := neighbourCluster(t, n, 10, 2)
	now := at(2000)
	picks := make(map[oplog.Key][]oplog.Key, n)
	for _, self := range keys {
		got := Neighbours(v, self, now, fullMesh)
		if len(got) == 0 || len(got) > neighboursNear+neighboursPublic+neighboursLong {
			t.Fatalf("%s keeps %d neighbours; want 1 to %d", self.Short(), len(got), neighboursNear+neighboursPublic+neighboursLong)
		}
		if slices.Contains(got, self) {
			t.Fatalf("%s is its own neighbour", self.Short())
		}
		if !slices.IsSortedFunc(got, compareKeys) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%s's neighbours are not sorted and distinct", self.Short())
		}
		picks[self] = got
	}

	// Deterministic: the same ops in another order give the same choices.
	rng := rand.New(rand.NewPCG(3, 3))
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	again := Fold(v.Cluster, ops, now)
	for _, self := range keys {
		if got := Neighbours(again, self, now, fullMesh); !slices.Equal(got, picks[self]) {
			t.Fatalf("%s picks differently from the same ops in another order", self.Short())
		}
	}

	// Connected: every node reaches every other over the links the picks
	// make (a link serves both ways).
	adj := make(map[oplog.Key][]oplog.Key)
	for a, bs := range picks {
		for _, b := range bs {
			adj[a] = append(adj[a], b)
			adj[b] = append(adj[b], a)
		}
	}
	seen := map[oplog.Key]bool{keys[0]: true}
	queue := []oplog.Key{keys[0]}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		for _, o := range adj[k] {
			if !seen[o] {
				seen[o] = true
				queue = append(queue, o)
			}
		}
	}
	if len(seen) != n {
		t.Errorf("the links reach %d of %d nodes from %s; the graph must be connected", len(seen), n, keys[0].Short())
	}
}

// A node that is not live is not worth a link in a large cluster.
func TestNeighboursSkipsSilentNodesInALargeCluster(t *testing.T) {
	v, keys, ops := neighbourCluster(t, 40, 5, 4)
	silent := keys[7]
	var kept []*oplog.Op
	for _, op := range ops { // drop the silent node's load, give it an old one
		if !(op.Kind == oplog.KindLoad && op.Author == silent) {
			kept = append(kept, op)
		}
	}
	kept = append(kept, forgeBody(silent, at(-60_000), &Load{Node: silent, Addrs: []string{"10.9.9.9:1"}, Relay: true}))
	v = Fold(v.Cluster, kept, at(2000))
	if v.Live(silent, at(2000)) {
		t.Fatal("the silent node is live")
	}
	for _, self := range keys {
		if slices.Contains(Neighbours(v, self, at(2000), 16), silent) {
			t.Fatalf("%s picked a node that is not live", self.Short())
		}
	}
}

// Links are bounded per node both ways: no node should be picked by a large
// share of the cluster, or it carries that many links.
func TestNeighboursSpreadTheLoadOfLinks(t *testing.T) {
	const n = 200
	for _, known := range []bool{true, false} {
		v, keys, ops := neighbourCluster(t, n, 10, 5)
		if !known { // a young cluster: no one has measured a round trip yet
			var fresh []*oplog.Op
			for _, op := range ops {
				if op.Kind == oplog.KindLoad {
					b, _ := DecodeBody(op)
					l := b.(*Load)
					l.Coord = Coord{}
					op = forgeBody(op.Author, op.HLC, l)
				}
				fresh = append(fresh, op)
			}
			v = Fold(v.Cluster, fresh, at(2000))
		}
		in := map[oplog.Key]int{}
		for _, self := range keys {
			for _, k := range Neighbours(v, self, at(2000), 16) {
				in[k]++
			}
		}
		worst, who := 0, oplog.Key{}
		for k, c := range in {
			if c > worst {
				worst, who = c, k
			}
		}
		// Each node picks 2 of the n/10 relays, so a relay expects 20 picks
		// from those slots alone, plus near and long picks; twice that
		// means a hot spot (before the fix one node had 199).
		if worst > 40 {
			t.Errorf("coordinates known %v: %s is picked by %d of %d nodes", known, who.Short(), worst, n)
		}
	}
}
