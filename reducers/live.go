package reducers

import (
	"bytes"
	"math/bits"
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
	return slices.Clone(v.liveAt(now).keys)
}

func compareKeys(a, b oplog.Key) int { return bytes.Compare(a[:], b[:]) }

// RTTMicros estimates the round trip between two coordinates: the Euclidean
// distance of their positions plus both heights (Vivaldi with height).
// Integer square root keeps it identical on every architecture.
func RTTMicros(a, b Coord) int64 {
	dx, dy := a.X-b.X, a.Y-b.Y
	return max(isqrt(dx*dx+dy*dy)+a.H+b.H, 0) // never negative, whatever a node reports
}

// RTT estimates the round trip between two nodes from their load reports, in
// microseconds. A node to itself is 0; a node without a report, or whose
// coordinate is not Known yet, is UnknownRTTMicros away.
func (v *View) RTT(a, b oplog.Key) int64 {
	if a == b {
		return 0
	}
	la, lb := v.Loads[a], v.Loads[b]
	if la == nil || lb == nil || !la.Coord.Known() || !lb.Coord.Known() {
		return UnknownRTTMicros
	}
	return RTTMicros(la.Coord, lb.Coord)
}

// MaxCoordErrorPM is the error a node reports before it has measured
// anything; such a coordinate says nothing about where the node is.
const MaxCoordErrorPM = 1500

// Known reports whether c says anything: it is not all zero, and its node
// has measured at least one round trip.
func (c Coord) Known() bool {
	return (c.X != 0 || c.Y != 0 || c.H != 0) && c.ErrorPM < MaxCoordErrorPM
}

// UnknownRTTMicros is the distance assumed to a node with no coordinates.
const UnknownRTTMicros = 100_000

// isqrt is floor(sqrt(n)) for n ≥ 0, by Newton's method on integers,
// starting from the power of two just above the root so that it takes a few
// steps and never overflows.
func isqrt(n int64) int64 {
	if n <= 0 {
		return 0
	}
	x := int64(1) << ((bits.Len64(uint64(n)) + 1) / 2)
	for {
		y := (x + n/x) / 2
		if y >= x {
			return x
		}
		x = y
	}
}
