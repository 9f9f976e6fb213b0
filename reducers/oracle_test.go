package reducers

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// The oracle restates, from DESIGN.md §6-7 and independently of live.go,
// place.go and route.go, which nodes may hold or serve a replica. The
// property tests hold Place and Route to it, and the scenario scripts use it
// to say why a node was passed over.

// whyNotLive says why k is not live at now, or "" if it is: a live node is a
// granted, undenied, unexpired node (not an invite key) whose newest load
// report is at most LiveIntervals load intervals old.
func whyNotLive(v *View, k oplog.Key, now oplog.HLC) string {
	m := v.Members[k]
	switch {
	case m == nil:
		return "not a member"
	case m.Denied:
		return "denied"
	case m.Tier == TierInvite:
		return "an invite key, not a node"
	case m.Tier < TierMember || m.Tier > TierAdmin:
		return fmt.Sprintf("tier %s", m.Tier)
	case m.Expires != 0 && now > m.Expires:
		return "grant expired"
	}
	l := v.Loads[k]
	if l == nil {
		return "no load report"
	}
	window := v.Params.LiveIntervals * v.Params.LoadIntervalMillis
	if age := now.Wall() - l.HLC.Wall(); age > window {
		return fmt.Sprintf("last load %d ms ago (dead after %d ms)", age, window)
	}
	return ""
}

// holdsReady reports whether k has a ready claim on the seed's current digest.
func holdsReady(v *View, s *SeedState, k oplog.Key) bool {
	c := v.Claims[ClaimKey{k, s.Name}]
	return c != nil && c.State == ClaimReady && c.Digest == s.Digest
}

// whyIneligible says why live node k may not take a replica of s, or "" if it
// may: it lacks a property the seed's policy requires, or it is saturated or
// short of free memory and does not already hold a ready replica.
func whyIneligible(v *View, s *SeedState, k oplog.Key) string {
	props := v.Members[k].Props
	for _, pk := range slices.Sorted(maps.Keys(s.Policy)) {
		want := s.Policy[pk]
		have, ok := props[pk]
		if !ok || (want != "*" && have != want) {
			return fmt.Sprintf("policy wants %s=%s", pk, want)
		}
	}
	if holdsReady(v, s, k) {
		return ""
	}
	l := v.Loads[k]
	if l.SaturationPM >= 950 {
		return fmt.Sprintf("saturated (%d‰)", l.SaturationPM)
	}
	if l.MemBytes > 0 && l.MemBytes-l.MemUsedBytes < s.MemoryBytes {
		return fmt.Sprintf("free memory %s < %s", fmtBytes(l.MemBytes-l.MemUsedBytes), fmtBytes(s.MemoryBytes))
	}
	return ""
}

// eligible lists the live nodes that may take a replica of s at now, sorted.
func eligible(v *View, s *SeedState, now oplog.HLC) []oplog.Key {
	var ks []oplog.Key
	for _, k := range v.MemberKeys() {
		if whyNotLive(v, k, now) == "" && whyIneligible(v, s, k) == "" {
			ks = append(ks, k)
		}
	}
	return ks
}

// wantReplicas is how many replicas s wants at now: one per ReplicaMilliCPS
// of demand reported by live nodes, rounded up, within the seed's bounds.
func wantReplicas(v *View, s *SeedState, now oplog.HLC) (want int, demand int64) {
	for k, l := range v.Loads {
		if whyNotLive(v, k, now) == "" {
			if d := l.Seeds[s.Name].DemandMilliCPS; d > 0 {
				demand += d
			}
		}
	}
	n := (demand + v.Params.ReplicaMilliCPS - 1) / v.Params.ReplicaMilliCPS
	return int(min(max(n, s.MinReplicas), s.MaxReplicas)), demand
}

// whyNoRoute says why k's claim on seed is not a route at now, or "" if it
// is: only a ready claim on the seed's current digest, by a live node.
func whyNoRoute(v *View, s *SeedState, c *ClaimState, now oplog.HLC) string {
	switch {
	case c.State != ClaimReady:
		return c.State
	case c.Digest != s.Digest:
		return "claims an old digest"
	}
	if why := whyNotLive(v, c.Node, now); why != "" {
		return "not live: " + why
	}
	return ""
}
