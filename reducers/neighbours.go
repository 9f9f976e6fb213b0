package reducers

import (
	"cmp"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Neighbour selection: which nodes a node keeps links to. Up to fullMesh
// nodes, every node links to every other. Beyond that each keeps a bounded
// set — its nearest nodes by network coordinates (fast paths), a few public
// relays (reachability), and a few long links picked by a hash keyed on both
// ends (so the graph is a small world and stays connected) — and ops still
// reach everyone by push along those links.
const (
	neighboursNear   = 4
	neighboursPublic = 2
	neighboursLong   = 3
)

// Neighbours returns the nodes self should keep links to at now, sorted by
// key. In a small cluster that is every other active node that has reported
// where it can be reached; in a large one, a bounded set of live ones.
func Neighbours(v *View, self oplog.Key, now oplog.HLC, fullMesh int) []oplog.Key {
	var cands []oplog.Key
	for k, l := range v.Loads {
		if k != self && len(l.Addrs) > 0 && v.Active(k, now) && v.Members[k].Tier.Node() {
			cands = append(cands, k)
		}
	}
	slices.SortFunc(cands, compareKeys)
	if len(cands) <= fullMesh {
		return cands
	}
	live := cands[:0:0]
	for _, k := range cands {
		if v.Live(k, now) {
			live = append(live, k)
		}
	}
	// Every ordering breaks ties by a hash keyed on self, so that nodes
	// that see the same candidates (the same relays, or every round trip
	// unknown yet) still spread their choices instead of all picking the
	// lowest keys.
	key := string(self[:])
	byHash := func(a, b oplog.Key) int { return cmp.Compare(rendezvous(key, b), rendezvous(key, a)) }
	pick := make(map[oplog.Key]bool)
	take := func(ks []oplog.Key, n int) {
		for _, k := range ks {
			if n == 0 {
				return
			}
			if !pick[k] {
				pick[k] = true
				n--
			}
		}
	}
	byRTT := slices.Clone(live)
	slices.SortFunc(byRTT, func(a, b oplog.Key) int {
		if c := cmp.Compare(v.RTT(self, a), v.RTT(self, b)); c != 0 {
			return c
		}
		return byHash(a, b)
	})
	take(byRTT, neighboursNear)
	var public []oplog.Key
	for _, k := range live {
		if v.Loads[k].Relay {
			public = append(public, k)
		}
	}
	slices.SortFunc(public, byHash)
	take(public, neighboursPublic)
	long := slices.Clone(live)
	slices.SortFunc(long, byHash)
	take(long, neighboursLong)
	out := make([]oplog.Key, 0, len(pick))
	for k := range pick {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKeys)
	return out
}
