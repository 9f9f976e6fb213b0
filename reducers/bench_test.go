package reducers

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/pln-mesh/pln/crdt"
	"github.com/pln-mesh/pln/oplog"
)

// Benchmarks of the hot paths, each beside its floor: the bare Go doing the
// same work, which the reducers cannot beat. The README's figures come from
//
//	go test ./reducers -run '^$' -bench . -benchtime 3x -count 3   (Fold1M)
//	go test ./reducers -run '^$' -bench 'Folder|Place|Route|Floor' -count 3
//
// The logs are generated once per process: ops built without signatures
// (the fold never checks them) but decoded like ops from the store, so each
// carries its cached ID as in production.

const (
	benchNodes  = 1000
	benchSeeds  = 100
	benchClaims = 50_000
	benchOps    = 1_000_000
)

func benchNode(i int) oplog.Key { return pub(fmt.Sprintf("node%d", i)) }
func benchSeed(i int) string    { return fmt.Sprintf("seed%d", i) }

var benchNodeKeys = sync.OnceValue(func() []oplog.Key {
	ks := make([]oplog.Key, benchNodes)
	for i := range ks {
		ks[i] = benchNode(i)
	}
	return ks
})

// benchLoad is node i's load report, variant v: capacity, use, coordinates,
// demand for three seeds and two cached artifacts, about 300 bytes.
func benchLoad(r *rand.Rand, node oplog.Key) *Load {
	l := &Load{
		Node: node, CPUMilli: 4000, CPUUsedMilli: int64(r.IntN(4000)),
		MemBytes: 8 << 30, MemUsedBytes: int64(r.IntN(6<<10)) << 20, InFlight: int64(r.IntN(50)),
		SaturationPM: int64(r.IntN(900)),
		Coord:        Coord{X: int64(r.IntN(200_000)) - 100_000, Y: int64(r.IntN(200_000)) - 100_000, H: int64(500 + r.IntN(5000))},
		Seeds:        map[string]SeedLoad{},
		Addrs:        []string{"192.0.2.1:7946"},
	}
	for range 3 {
		l.Seeds[benchSeed(r.IntN(benchSeeds))] = SeedLoad{DemandMilliCPS: int64(r.IntN(40_000)), SaturationPM: int64(r.IntN(500))}
	}
	for range 2 {
		l.Cached = append(l.Cached, digestOf(benchSeed(r.IntN(benchSeeds))))
	}
	return l
}

// benchLog1M is a log of a million ops: one genesis, a grant per node, 100
// seeds, 50,000 claims, and load reports from 1,000 nodes every 2 s for
// about half an hour. Generating it takes a few seconds, once.
var benchLog1M = sync.OnceValues(func() ([]*oplog.Op, oplog.HLC) {
	r := rand.New(rand.NewPCG(1, 2))
	nodes := benchNodeKeys()
	ops := make([]*oplog.Op, 0, benchOps)
	ops = append(ops, forgeBody(pub("root"), at(0), &Genesis{Name: "bench", Root: pub("root")}))
	for i, k := range nodes {
		tier := TierMember
		if i%10 == 0 {
			tier = TierPublisher
		}
		ops = append(ops, forgeBody(pub("root"), at(int64(1+i)), &Grant{Subject: k, Tier: tier, Props: map[string]string{"zone": []string{"eu", "us"}[i%2]}}))
	}
	for i := range benchSeeds {
		ops = append(ops, forgeBody(pub("root"), at(int64(2000+i)), &Seed{Name: benchSeed(i), Kind: SeedWASM, Digest: digestOf(benchSeed(i)), MinReplicas: 1, MaxReplicas: 10, MemoryBytes: 64 << 20}))
	}
	// Four load bodies per node, reused at different times: distinct ops.
	bodies := make([][4][]byte, len(nodes))
	for i, k := range nodes {
		for v := range 4 {
			bodies[i][v] = encode(&testing.B{}, benchLoad(r, k))
		}
	}
	claims := 0
	states := []string{ClaimReady, ClaimReady, ClaimReady, ClaimDraining, ClaimReleased}
	for round := 0; len(ops) < benchOps; round++ {
		for i, k := range nodes {
			if len(ops) == benchOps {
				break
			}
			t := int64(10_000 + round*2000 + i)
			if claims < benchClaims && r.IntN(benchOps/benchClaims) == 0 {
				s := r.IntN(benchSeeds)
				ops = append(ops, forgeBody(k, at(t)+1, &Claim{Node: k, Seed: benchSeed(s), Digest: digestOf(benchSeed(s)), State: states[r.IntN(len(states))]}))
				claims++
				continue
			}
			ops = append(ops, forge(oplog.KindLoad, k, at(t), bodies[i][round%4]))
		}
	}
	return ops, ops[len(ops)-1].HLC + at(1000) - at(0)
})

func BenchmarkFold1M(b *testing.B) {
	ops, now := benchLog1M()
	var v *View
	for b.Loop() {
		v = Fold(clusterOf("root"), ops, now)
	}
	if len(v.Loads) != benchNodes || len(v.Seeds) != benchSeeds {
		b.Fatalf("the fold lost something: %v", v)
	}
	b.ReportMetric(float64(len(ops))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkFloorMapLWW1M is the floor under Fold1M: a bare map doing the
// last-writer-wins compare-and-set, by author, of every op in the same log.
func BenchmarkFloorMapLWW1M(b *testing.B) {
	ops, _ := benchLog1M()
	for b.Loop() {
		m := make(map[oplog.Key]crdt.Stamp, benchNodes)
		for _, op := range ops {
			s := crdt.Stamp{HLC: uint64(op.HLC), ID: op.ID()}
			if cur, ok := m[op.Author]; !ok || crdt.Compare(s, cur) > 0 {
				m[op.Author] = s
			}
		}
	}
	b.ReportMetric(float64(len(ops))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// benchFolder is a running node's folder: the whole 1M log folded in.
func benchFolder(b *testing.B) (*Folder, oplog.HLC) {
	ops, now := benchLog1M()
	f := NewFolder(clusterOf("root"))
	for _, op := range ops {
		f.Add(op, now)
	}
	f.View(now)
	return f, now
}

// benchNewLoads are fresh load reports, newer than the 1M log, from every
// node in turn.
var benchNewLoads = sync.OnceValue(func() []*oplog.Op {
	_, now := benchLog1M()
	r := rand.New(rand.NewPCG(3, 4))
	nodes := benchNodeKeys()
	ops := make([]*oplog.Op, 1<<16)
	for i := range ops {
		k := nodes[i%len(nodes)]
		ops[i] = forgeBody(k, now+oplog.HLC(i), benchLoad(r, k))
	}
	return ops
})

// BenchmarkFolderAddLoad adds one new load report to a folder that holds
// the cluster's membership and a load per node. The cost of an Add does not
// grow with the log (it is one LWW map update), so the folder is rebuilt,
// off the clock, whenever the pool of fresh reports runs out, so that every
// Add timed is a new report that wins its key.
func BenchmarkFolderAddLoad(b *testing.B) {
	ops, now := benchLog1M()
	loads := benchNewLoads()
	var f *Folder
	reset := func() {
		f = NewFolder(clusterOf("root"))
		for _, op := range ops[:1+benchNodes+benchSeeds+2*benchNodes] {
			f.Add(op, now)
		}
		f.View(now)
	}
	reset()
	i := 0
	for b.Loop() {
		if i == len(loads) {
			b.StopTimer()
			reset()
			i = 0
			b.StartTimer()
		}
		f.Add(loads[i], now)
		i++
	}
}

// BenchmarkFolderAddLoadView is what a node pays to keep its view current:
// one more load report, then the view.
func BenchmarkFolderAddLoadView(b *testing.B) {
	f, now := benchFolder(b)
	loads := benchNewLoads()
	i := 0
	for b.Loop() {
		f.Add(loads[i%len(loads)], now)
		f.View(now)
		i++
	}
}

// benchView is a cluster of 1,000 live nodes, each with coordinates and
// demand for three of 100 seeds; every seed has 10 ready replicas.
var benchView = sync.OnceValues(func() (*View, oplog.HLC) {
	r := rand.New(rand.NewPCG(5, 6))
	nodes := benchNodeKeys()
	ops := []*oplog.Op{forgeBody(pub("root"), at(0), &Genesis{Name: "bench", Root: pub("root")})}
	for i, k := range nodes {
		ops = append(ops, forgeBody(pub("root"), at(1), &Grant{Subject: k, Tier: TierMember, Props: map[string]string{"zone": []string{"eu", "us"}[i%2]}}))
	}
	for i := range benchSeeds {
		sd := &Seed{Name: benchSeed(i), Kind: SeedWASM, Digest: digestOf(benchSeed(i)), MinReplicas: 1, MaxReplicas: 10, MemoryBytes: 64 << 20}
		if i%4 == 0 {
			sd.Policy = map[string]string{"zone": "eu"}
		}
		ops = append(ops, forgeBody(pub("root"), at(2), sd))
		for j := range 10 {
			k := nodes[(i*10+j*7)%len(nodes)]
			ops = append(ops, forgeBody(k, at(3), &Claim{Node: k, Seed: sd.Name, Digest: sd.Digest, State: ClaimReady}))
		}
	}
	for _, k := range nodes {
		ops = append(ops, forgeBody(k, at(5000), benchLoad(r, k)))
	}
	now := at(6000)
	v := Fold(clusterOf("root"), ops, now)
	if len(v.LiveNodes(now)) != benchNodes {
		panic("bench view: not every node is live")
	}
	return v, now
})

// BenchmarkPlace1000x100 places all 100 seeds over 1,000 live nodes; one op
// is the whole round, what each node computes after its view changes.
func BenchmarkPlace1000x100(b *testing.B) {
	v, now := benchView()
	for b.Loop() {
		for i := range benchSeeds {
			Explain(v, benchSeed(i), now)
		}
	}
}

// BenchmarkFloorSort1000x100 is the floor under Place: sorting 1,000 scored
// candidates, 100 times.
func BenchmarkFloorSort1000x100(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	cands := make([]Candidate, benchNodes)
	work := make([]Candidate, benchNodes)
	for i := range cands {
		cands[i] = Candidate{Node: benchNode(i % 10), Score: int64(r.IntN(5000))}
	}
	for b.Loop() {
		for range benchSeeds {
			copy(work, cands)
			slices.SortFunc(work, func(x, y Candidate) int { return cmp.Compare(y.Score, x.Score) })
		}
	}
}

// BenchmarkFloorPlaceArrays1000x100 is the floor under Place's arithmetic:
// the same demand-proximity sums (every candidate against every node with
// demand for the seed, by integer RTT) and the same sort, over plain slices
// instead of the view's maps.
func BenchmarkFloorPlaceArrays1000x100(b *testing.B) {
	v, now := benchView()
	live := v.LiveNodes(now)
	coords := make([]Coord, len(live))
	for i, k := range live {
		coords[i] = v.Loads[k].Coord
	}
	type source struct {
		at Coord
		d  int64
	}
	sources := make([][]source, benchSeeds)
	for s := range benchSeeds {
		for i, k := range live {
			if d := v.Loads[k].Seeds[benchSeed(s)].DemandMilliCPS; d > 0 {
				sources[s] = append(sources[s], source{coords[i], d})
			}
		}
	}
	scores := make([]Candidate, len(live))
	for b.Loop() {
		for s := range benchSeeds {
			for i := range live {
				var near int64
				for _, src := range sources[s] {
					near += src.d * nearMicros / (nearMicros + RTTMicros(coords[i], src.at))
				}
				scores[i] = Candidate{Node: live[i], Score: near}
			}
			slices.SortFunc(scores, func(x, y Candidate) int { return cmp.Compare(y.Score, x.Score) })
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	v, now := benchView()
	from := benchNode(500)
	call := []byte("call-0001")
	var got []oplog.Key
	for b.Loop() {
		got = Route(v, from, benchSeed(42), call, now)
	}
	if len(got) != 10 {
		b.Fatalf("routed to %d replicas; want 10", len(got))
	}
}

// BenchmarkFloorRoute is the floor under Route: finding a seed's 10 claims
// among the view's 1,000 and sorting them by a cost.
func BenchmarkFloorRoute(b *testing.B) {
	v, _ := benchView()
	type cand struct {
		node oplog.Key
		cost int64
	}
	for b.Loop() {
		var cs []cand
		for k, c := range v.Claims {
			if k.Seed == "seed42" && c.State == ClaimReady {
				cs = append(cs, cand{k.Node, int64(k.Node[0])})
			}
		}
		slices.SortFunc(cs, func(x, y cand) int { return cmp.Compare(x.cost, y.cost) })
	}
}
