package reducers

import (
	"cmp"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Routing weights.
const (
	// spreadMax is how many of the best replicas share a seed's calls.
	spreadMax = 3
	// spreadSlackMicros and spreadSlackPercent say how much costlier than the
	// best a replica may be and still share the calls: the larger of the two.
	spreadSlackMicros  = 2_000
	spreadSlackPercent = 25
	// penaltyMicrosPerPM turns a replica's saturation (per mille) into
	// equivalent round-trip time: a fully saturated replica costs 50 ms more.
	penaltyMicrosPerPM = 50
	// overloadedPM is the saturation at which a replica goes to the back of
	// the list: it will refuse, and the caller moves on.
	overloadedPM = 1000
)

// Route orders the ready replicas of seed for a call from node from: the
// cheapest first by estimated RTT plus a load penalty, with calls spread over
// the best few by a hash of callID so that one hot caller does not pile onto
// one replica. The caller tries them in order.
func Route(v *View, from oplog.Key, seed string, callID []byte, now oplog.HLC) []oplog.Key {
	s := v.Seeds[seed]
	if s == nil || s.Tombstone {
		return nil
	}
	type cand struct {
		node oplog.Key
		cost int64
		over bool
	}
	var cs []cand
	for _, c := range v.ClaimsFor(seed) {
		if c.State != ClaimReady || c.Digest != s.Digest || !v.Live(c.Node, now) {
			continue
		}
		sat := v.Loads[c.Node].Seeds[seed].SaturationPM
		cs = append(cs, cand{node: c.Node, cost: v.RTT(from, c.Node) + sat*penaltyMicrosPerPM, over: sat >= overloadedPM})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.over != b.over:
			if a.over {
				return 1
			}
			return -1
		case a.cost != b.cost:
			return cmp.Compare(a.cost, b.cost)
		}
		return cmp.Compare(rendezvous(seed, b.node), rendezvous(seed, a.node))
	})
	// The best few within the slack of the best share the calls.
	n := 0
	if len(cs) > 0 && !cs[0].over {
		limit := cs[0].cost + max(spreadSlackMicros, cs[0].cost*spreadSlackPercent/100)
		for n < len(cs) && n < spreadMax && !cs[n].over && cs[n].cost <= limit {
			n++
		}
	}
	key := string(callID)
	slices.SortStableFunc(cs[:n], func(a, b cand) int {
		return cmp.Compare(rendezvous(key, b.node), rendezvous(key, a.node))
	})
	out := make([]oplog.Key, len(cs))
	for i, c := range cs {
		out[i] = c.node
	}
	return out
}
