package netx

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// vivaldiKey is a distinct key per simulated node.
func vivaldiKey(i int) oplog.Key {
	var k oplog.Key
	copy(k[:], fmt.Sprintf("vivaldi node %d", i))
	return k
}

// Nodes that measure the round trips of a synthetic network — points in a
// plane plus an access delay each — place themselves so that the distance
// between their coordinates, as placement computes it from load reports,
// predicts those round trips.
func TestVivaldiConvergesOnASyntheticNetwork(t *testing.T) {
	points := [][2]float64{{0, 0}, {40, 0}, {0, 30}, {40, 30}, {20, 60}} // ms
	access := []float64{1, 2, 1.5, 1, 3}                                 // ms each way of a round trip
	rtt := func(i, j int) float64 {
		return math.Hypot(points[i][0]-points[j][0], points[i][1]-points[j][1]) + access[i] + access[j]
	}
	n := len(points)
	nodes := make([]*vivaldi, n)
	for i := range nodes {
		nodes[i] = newVivaldi()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		i, j := rng.IntN(n), rng.IntN(n)
		if i == j {
			continue
		}
		jitter := 1 + (rng.Float64()-0.5)*0.04 // ±2 % measurement noise
		nodes[i].observe(time.Duration(rtt(i, j)*jitter*float64(time.Millisecond)), nodes[j].coord(), vivaldiKey(j))
	}
	worst := 0.0
	for i := range n {
		for j := i + 1; j < n; j++ {
			predicted := float64(reducers.RTTMicros(nodes[i].coord(), nodes[j].coord())) / 1000
			e := math.Abs(predicted-rtt(i, j)) / rtt(i, j)
			worst = max(worst, e)
			if e > 0.2 {
				t.Errorf("nodes %d and %d: predicted %.1f ms, actual %.1f ms (%.0f%% off)", i, j, predicted, rtt(i, j), 100*e)
			}
		}
	}
	t.Logf("worst prediction error %.1f%%", 100*worst)
	for i, v := range nodes {
		if c := v.coord(); !c.Known() {
			t.Errorf("node %d's coordinate %+v does not count as known after measuring", i, c)
		}
	}
}

// Two nodes that start at the same spot move apart, each in a direction
// derived from the other's key, and a sample of no time moves nothing.
func TestVivaldiSeparatesNodesAtTheSameSpot(t *testing.T) {
	a, b := newVivaldi(), newVivaldi()
	a.observe(0, b.coord(), vivaldiKey(1))
	a.observe(-time.Millisecond, b.coord(), vivaldiKey(1))
	if a.coord() != newVivaldi().coord() {
		t.Fatalf("a sample of no time moved the node to %+v", a.coord())
	}
	a.observe(10*time.Millisecond, b.coord(), vivaldiKey(1))
	c := a.coord()
	if c.X == 0 && c.Y == 0 {
		t.Fatalf("a node 10 ms from a peer at the same spot did not move: %+v", c)
	}
	again := newVivaldi()
	again.observe(10*time.Millisecond, b.coord(), vivaldiKey(1))
	if again.coord() != c {
		t.Errorf("the same sample moved two nodes differently: %+v and %+v", c, again.coord())
	}
	if c.H < int64(vivaldiMinHeight*1000) {
		t.Errorf("height %d µs is below the minimum", c.H)
	}
}

// Peers at the edges of the range a load report may carry drag us toward
// them but never out of that range: our own load reports must stay valid.
func TestVivaldiStaysInTheRangeLoadsCarry(t *testing.T) {
	const edge = 1_000_000_000 // µs, the most a load's coordinate may say
	peers := []reducers.Coord{
		{X: edge, ErrorPM: 1}, {X: -edge, Y: edge, ErrorPM: 1}, {Y: -edge, H: edge, ErrorPM: 1}, {X: 3, Y: 4, H: 0, ErrorPM: 1},
	}
	v := newVivaldi()
	for round := range 200 {
		for i, c := range peers {
			rtt := time.Duration(1+round%50) * time.Millisecond
			v.observe(rtt, c, vivaldiKey(i))
			if err := (&reducers.Load{Coord: v.coord()}).Validate(); err != nil {
				t.Fatalf("round %d, peer %d: our coordinate %+v is not one a load may carry: %v", round, i, v.coord(), err)
			}
		}
	}
}

// A peer that reports an absurd coordinate (the fold refuses such loads, but
// the arithmetic must not depend on it) cannot make ours NaN or infinite.
func TestVivaldiSurvivesWildPeers(t *testing.T) {
	v := newVivaldi()
	wild := []reducers.Coord{
		{X: math.MaxInt64, Y: math.MinInt64, H: math.MaxInt64, ErrorPM: 1},
		{X: -1 << 50, Y: 1 << 50, H: 0, ErrorPM: 0},
		{X: 5, Y: 5, H: -1000, ErrorPM: -5},
	}
	for i, c := range wild {
		v.observe(20*time.Millisecond, c, vivaldiKey(i))
		v.mu.Lock()
		bad := math.IsNaN(v.x) || math.IsNaN(v.y) || math.IsNaN(v.h) || math.IsNaN(v.err) ||
			math.IsInf(v.x, 0) || math.IsInf(v.y, 0) || math.IsInf(v.h, 0)
		state := fmt.Sprintf("x=%g y=%g h=%g err=%g", v.x, v.y, v.h, v.err)
		v.mu.Unlock()
		if bad {
			t.Fatalf("after a sample from a peer at %+v our state is %s", c, state)
		}
	}
}
