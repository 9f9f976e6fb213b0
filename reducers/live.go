package reducers

import (
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Live reports whether k is a node that counts at now and has reported load
// within the last LiveIntervals load intervals. A node that stops reporting
// stops being live everywhere at the same moment of HLC time, with no
// failure detector to disagree about it.
func (v *View) Live(k oplog.Key, now oplog.HLC) bool {
	m := v.Members[k]
	if !m.Active(now) || !m.Tier.Node() {
		return false
	}
	l := v.Loads[k]
	return l != nil && now.Wall()-l.HLC.Wall() <= v.Params.LiveIntervals*v.Params.LoadIntervalMillis
}

// LiveNodes returns the live nodes at now, sorted by key.
func (v *View) LiveNodes(now oplog.HLC) []oplog.Key {
	var ks []oplog.Key
	for k := range v.Loads {
		if v.Live(k, now) {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, compareKeys)
	return ks
}

func compareKeys(a, b oplog.Key) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// RTTMicros estimates the round trip between two coordinates: the Euclidean
// distance of their positions plus both heights (Vivaldi with height).
// Integer square root keeps it identical on every architecture.
func RTTMicros(a, b Coord) int64 {
	dx, dy := a.X-b.X, a.Y-b.Y
	return isqrt(dx*dx+dy*dy) + a.H + b.H
}

// RTT estimates the round trip between two nodes from their load reports, in
// microseconds. A node to itself is 0; a node without a report, or that has
// not measured its coordinates yet (all zero), is UnknownRTTMicros away.
func (v *View) RTT(a, b oplog.Key) int64 {
	if a == b {
		return 0
	}
	la, lb := v.Loads[a], v.Loads[b]
	if la == nil || lb == nil || la.Coord == (Coord{}) || lb.Coord == (Coord{}) {
		return UnknownRTTMicros
	}
	return RTTMicros(la.Coord, lb.Coord)
}

// UnknownRTTMicros is the distance assumed to a node with no coordinates.
const UnknownRTTMicros = 100_000

// isqrt is floor(sqrt(n)) for n ≥ 0, by Newton's method on integers.
func isqrt(n int64) int64 {
	if n <= 0 {
		return 0
	}
	x := n
	y := (x + 1) / 2
	for y < x {
		x = y
		y = (x + n/x) / 2
	}
	return x
}
