package reducers

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Placement weights, in points. A node's score is the sum of what applies to
// it; the highest scores win. The scale is chosen so that a node with all of
// a seed's demand beats a sticky replica elsewhere (replicas follow demand),
// while a small shift in demand does not (no flapping). Demand at the node
// itself counts on top of demand near it: on a LAN every node is near every
// other, and without it stickiness would never let a replica follow its
// callers.
const (
	pointsDemand  = 3000 // × the share of the seed's demand at or near the node
	pointsLocal   = 2000 // × the share of the seed's demand at the node itself
	pointsSticky  = 1000 // the node already holds a ready replica of this digest
	pointsCached  = 300  // the node already has the artifact
	pointsFreeMem = 500  // × the node's free memory fraction
	pointsFreeCPU = 250  // × the node's free CPU fraction

	// nearMicros is the round trip at which demand counts half: demand at the
	// node counts fully, demand nearMicros away half, farther away less
	// (see liveSet.nearness).
	nearMicros = 20_000

	// saturatedPM is the saturation (per mille) at or above which a node takes
	// no new replicas.
	saturatedPM = 950
)

// Candidate is one eligible node and why it scored what it did.
type Candidate struct {
	Node   oplog.Key `json:"node"`
	Score  int64     `json:"score"`
	Demand int64     `json:"demand_points"`
	Sticky bool      `json:"sticky,omitempty"`
	Cached bool      `json:"cached,omitempty"`
	Chosen bool      `json:"chosen"`
}

// Placement is the full answer of Place: how many replicas the seed wants
// now, which nodes hold them (best first), and every eligible node ranked.
type Placement struct {
	Seed           string      `json:"seed"`
	Want           int         `json:"want"`
	DemandMilliCPS int64       `json:"demand_milli_cps"`
	Nodes          []oplog.Key `json:"nodes"`
	Ranked         []Candidate `json:"ranked"`
}

// Place returns the nodes that should hold replicas of seed at now, best
// first. Every node computes it from its own view; nodes with the same view
// agree.
func Place(v *View, seed string, now oplog.HLC) []oplog.Key {
	return Explain(v, seed, now).Nodes
}

// Chosen reports whether node is among Place's answer.
func (p Placement) Chosen(node oplog.Key) bool { return slices.Contains(p.Nodes, node) }

// Explain is Place with its workings.
func Explain(v *View, seed string, now oplog.HLC) Placement {
	p := Placement{Seed: seed}
	s := v.Seeds[seed]
	if s == nil || s.Tombstone {
		return p
	}
	ls := v.liveAt(now)

	// Demand: calls per second for this seed originating at each live node.
	var sources []demandSource
	for i, l := range ls.loads {
		if d := l.Seeds[seed].DemandMilliCPS; d > 0 {
			sources = append(sources, demandSource{i: i, d: d})
			p.DemandMilliCPS += d
		}
	}
	p.Want = int(min(max(ceilDiv(p.DemandMilliCPS, v.Params.ReplicaMilliCPS), s.MinReplicas), s.MaxReplicas))

	local := make([]int64, len(ls.keys)) // demand at each live node
	for n, src := range sources {
		sources[n].near = ls.nearness(src.i)
		local[src.i] = src.d
	}
	for i := range ls.keys {
		if c, ok := score(v, s, ls, i, sources, local, p.DemandMilliCPS); ok {
			p.Ranked = append(p.Ranked, c)
		}
	}
	slices.SortFunc(p.Ranked, func(a, b Candidate) int {
		if a.Score != b.Score {
			return cmp.Compare(b.Score, a.Score)
		}
		return cmp.Compare(rendezvous(seed, b.Node), rendezvous(seed, a.Node))
	})
	for i := range p.Ranked {
		if i < p.Want {
			p.Ranked[i].Chosen = true
			p.Nodes = append(p.Nodes, p.Ranked[i].Node)
		}
	}
	return p
}

// demandSource is a live node (by index in the live set) with demand, and
// how near every live node is to it.
type demandSource struct {
	i    int
	d    int64
	near []int64
}

// score rates the i-th live node for seed s, or reports it ineligible:
// outside the seed's policy, saturated, or without the memory the seed needs.
func score(v *View, s *SeedState, ls *liveSet, i int, sources []demandSource, local []int64, total int64) (Candidate, bool) {
	k := ls.keys[i]
	c := Candidate{Node: k}
	for pk, pv := range s.Policy {
		if have, ok := v.Members[k].Props[pk]; !ok || (pv != "*" && have != pv) {
			return c, false
		}
	}
	l := &ls.loads[i].Load
	claim := v.Claims[ClaimKey{k, s.Name}]
	c.Sticky = claim != nil && claim.State == ClaimReady && claim.Digest == s.Digest
	c.Cached = c.Sticky || hasDigest(l.Cached, s.Digest) || (claim != nil && claim.Digest == s.Digest && claim.State != ClaimReleased)
	if l.SaturationPM >= saturatedPM && !c.Sticky {
		return c, false
	}
	free := l.MemBytes - l.MemUsedBytes
	if !c.Sticky && l.MemBytes > 0 && free < s.MemoryBytes {
		return c, false
	}
	if total > 0 {
		// Demand at or near the node: each source's demand weighted by how
		// near it is (demand ≤ 2^40, weight ≤ 2^20: no overflow).
		var near int64
		for _, src := range sources {
			near += src.d * src.near[i] >> weightShift
		}
		c.Demand = mulDiv(near, pointsDemand, total) + mulDiv(local[i], pointsLocal, total)
		c.Score += c.Demand
	}
	if c.Sticky {
		c.Score += pointsSticky
	}
	if c.Cached {
		c.Score += pointsCached
	}
	if l.MemBytes > 0 {
		c.Score += mulDiv(max(free, 0), pointsFreeMem, l.MemBytes)
	}
	if l.CPUMilli > 0 {
		c.Score += mulDiv(max(l.CPUMilli-l.CPUUsedMilli, 0), pointsFreeCPU, l.CPUMilli)
	}
	return c, true
}

func hasDigest(ds []oplog.Digest, d oplog.Digest) bool { return slices.Contains(ds, d) }

// rendezvous is the highest-random-weight hash of (name, node): the tie-break
// that every node computes alike and that moves few keys when nodes come and
// go.
func rendezvous(name string, node oplog.Key) uint64 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(node[:])
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
