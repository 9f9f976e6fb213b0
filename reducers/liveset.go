package reducers

import (
	"math/bits"
	"slices"
	"sync"

	"github.com/pln-mesh/pln/oplog"
)

// liveSet is the live nodes of a view at one moment, with what placement
// reads of each laid out in slices: computed once per (view, now) and shared
// by every seed's placement, instead of map lookups in the inner loops.
type liveSet struct {
	now    oplog.HLC
	keys   []oplog.Key // sorted
	loads  []*LoadState
	coords []Coord
	known  []bool

	mu      sync.Mutex
	weights map[int][]int64 // by source: nearness of every live node to it
}

// liveAt returns the live set at now, cached for the most recent now.
func (v *View) liveAt(now oplog.HLC) *liveSet {
	v.liveMu.Lock()
	defer v.liveMu.Unlock()
	if v.live != nil && v.live.now == now {
		return v.live
	}
	ls := &liveSet{now: now}
	for k := range v.Loads {
		if v.Live(k, now) {
			ls.keys = append(ls.keys, k)
		}
	}
	slices.SortFunc(ls.keys, compareKeys)
	for _, k := range ls.keys {
		l := v.Loads[k]
		ls.loads = append(ls.loads, l)
		ls.coords = append(ls.coords, l.Coord)
		ls.known = append(ls.known, l.Coord.Known())
	}
	v.live = ls
	return ls
}

// rtt is View.RTT between the i-th and j-th live nodes.
func (ls *liveSet) rtt(i, j int) int64 {
	switch {
	case i == j:
		return 0
	case !ls.known[i] || !ls.known[j]:
		return UnknownRTTMicros
	}
	return RTTMicros(ls.coords[i], ls.coords[j])
}

// Nearness weights are fixed point: weightOne means "at the node itself".
const (
	weightShift = 20
	weightOne   = 1 << weightShift
)

// maxCachedWeights bounds the live set above which nearness is not cached
// (the cache grows with the square of the live set).
const maxCachedWeights = 4096

// nearness returns, for every live node i, how near it is to live node j as
// a weight: weightOne·nearMicros / (nearMicros + RTT). A node with demand
// for several seeds is a source for each; its column is computed once.
func (ls *liveSet) nearness(j int) []int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if w, ok := ls.weights[j]; ok {
		return w
	}
	w := make([]int64, len(ls.keys))
	for i := range w {
		w[i] = weightOne * nearMicros / (nearMicros + ls.rtt(i, j))
	}
	if len(ls.keys) <= maxCachedWeights {
		if ls.weights == nil {
			ls.weights = make(map[int][]int64)
		}
		ls.weights[j] = w
	}
	return w
}

// mulDiv is a×b/c for non-negative a, b and positive c, exact in 128 bits,
// saturating at the int64 maximum.
func mulDiv(a, b, c int64) int64 {
	if a <= 0 || b <= 0 || c <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, uint64(c))
	return int64(min(q, 1<<63-1))
}
