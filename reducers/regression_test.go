package reducers

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// Regressions: bugs found while writing the scenario and property tests,
// each pinned by the smallest case that shows it.

// regressCluster is a tiny cluster for these tests: the root's genesis with
// params p at t=0 and the given nodes admitted as members at t=1.
func regressCluster(p Params, nodes ...string) (oplog.ClusterID, []*oplog.Op) {
	cl := clusterOf("root")
	ops := []*oplog.Op{forgeBody(pub("root"), at(0), &Genesis{Name: "r", Root: pub("root"), Params: p})}
	for _, n := range nodes {
		ops = append(ops, forgeBody(pub("root"), at(1), &Grant{Subject: pub(n), Tier: TierPublisher}))
	}
	return cl, ops
}

// A node that reports a negative coordinate height made the estimated round
// trip to a neighbour -20 ms, and placement divides by 20 ms + RTT: every
// node's Place panicked on one member's load report. Such a load is now
// refused (Load.Validate), and RTTMicros clamps at zero besides.
func TestRegressNegativeHeightDoesNotPanic(t *testing.T) {
	cl, ops := regressCluster(DefaultParams(), "a", "b")
	ops = append(ops,
		forgeBody(pub("root"), at(2), &Seed{Name: "s", Kind: SeedWASM, Digest: digestOf("s"), MinReplicas: 1, MaxReplicas: 1}),
		forgeBody(pub("a"), at(100), &Load{Node: pub("a"), Coord: Coord{H: -10_000}, Seeds: map[string]SeedLoad{"s": {DemandMilliCPS: 1000}}}),
		forgeBody(pub("b"), at(100), &Load{Node: pub("b"), Coord: Coord{H: -10_000}}),
	)
	v := Fold(cl, ops, at(1000))
	if got := v.RTT(pub("a"), pub("b")); got < 0 {
		t.Errorf("RTT between a and b is %d µs; a round trip is never negative", got)
	}
	if got := Place(v, "s", at(1000)); len(got) != 0 {
		t.Errorf("Place chose %d nodes from loads that do not count; want 0", len(got))
	}
	if got := RTTMicros(Coord{H: -10_000}, Coord{H: -10_000}); got < 0 {
		t.Errorf("RTTMicros of negative heights is %d; want ≥ 0", got)
	}
}

// Load.Validate refuses negative figures for the node, but not in its
// per-seed figures nor its coordinate height. A negative per-seed saturation
// buys a replica -50 µs per mille of cost: one member can pull every call to
// itself. Vivaldi heights are never negative.
func TestRegressLoadRefusesNegativeFigures(t *testing.T) {
	for name, l := range map[string]*Load{
		"seed saturation": {Node: pub("a"), Seeds: map[string]SeedLoad{"s": {SaturationPM: -1_000_000}}},
		"seed demand":     {Node: pub("a"), Seeds: map[string]SeedLoad{"s": {DemandMilliCPS: -1}}},
		"seed served":     {Node: pub("a"), Seeds: map[string]SeedLoad{"s": {ServedMilliCPS: -1}}},
		"seed latency":    {Node: pub("a"), Seeds: map[string]SeedLoad{"s": {LatencyMicros: -1}}},
		"height":          {Node: pub("a"), Coord: Coord{X: -5, Y: -5, H: -1}},
	} {
		if err := l.Validate(); err == nil {
			t.Errorf("%s: a negative figure validates", name)
		}
	}
}

// Fold adds membership ops in the order given, judging each against the
// default MaxOffset until it meets the genesis. With a genesis MaxOffset
// below the default, a grant 3 s ahead of now counts if it comes before the
// genesis in the slice and is held if it comes after: two nodes with the
// same ops disagree. The Folder has the same fault for every kind, and takes
// its offset from the root genesis that arrives last rather than the one
// that counts.
func TestRegressFoldTakesMaxOffsetFromTheGenesis(t *testing.T) {
	p := DefaultParams()
	p.MaxOffsetMillis = 1000
	cl, ops := regressCluster(p)
	now := at(10_000)
	ahead := forgeBody(pub("root"), now+at(3000)-at(0), &Grant{Subject: pub("a"), Tier: TierMember})

	first := Fold(cl, []*oplog.Op{ahead, ops[0]}, now)
	last := Fold(cl, []*oplog.Op{ops[0], ahead}, now)
	if first.Digest() != last.Digest() || first.Pending != last.Pending {
		t.Errorf("Fold depends on order: grant before genesis → %d pending, after → %d pending", first.Pending, last.Pending)
	}

	// A second genesis by the root does not count, but its MaxOffset did.
	p2 := DefaultParams()
	p2.MaxOffsetMillis = 60_000
	second := forgeBody(pub("root"), at(5), &Genesis{Name: "again", Root: pub("root"), Params: p2})
	seed := forgeBody(pub("root"), now+at(30_000)-at(0), &Seed{Name: "s", Kind: SeedWASM, Digest: digestOf("s"), MinReplicas: 1, MaxReplicas: 1})
	a := Fold(cl, []*oplog.Op{ops[0], second, seed}, now)
	b := Fold(cl, []*oplog.Op{second, ops[0], seed}, now)
	if a.Digest() != b.Digest() || a.Pending != b.Pending {
		t.Errorf("Fold depends on the arrival order of two root geneses: %d pending vs %d", a.Pending, b.Pending)
	}
}

// An invite key may author one grant, for a subject of the joiner's
// choosing — including a key that already has standing. Whoever holds a
// member invite can so demote an admin to member (the newest grant wins),
// which no admin may do; judgeGrant checks that only for admin authors.
func TestRegressInviteCannotRegrantAKeyWithStanding(t *testing.T) {
	cl, ops := regressCluster(DefaultParams())
	ops = append(ops,
		forgeBody(pub("root"), at(10), &Grant{Subject: pub("ada"), Tier: TierAdmin}),
		forgeBody(pub("root"), at(20), &Grant{Subject: pub("inv"), Tier: TierInvite, Confers: TierMember, Expires: at(60_000)}),
		forgeBody(pub("inv"), at(30), &Grant{Subject: pub("ada"), Tier: TierMember}),
	)
	v := Fold(cl, ops, at(100))
	if got := v.Member(pub("ada")).Tier; got != TierAdmin {
		t.Errorf("after an invite was redeemed for ada's key, ada is %s; want admin", got)
	}
}

// isqrt is floor(√n): x² ≤ n < (x+1)², checked on random values of every
// magnitude.
func TestIsqrt(t *testing.T) {
	r := rand.New(rand.NewPCG(propSeed, 0))
	check := func(n int64) {
		t.Helper()
		x := isqrt(n)
		// 3037000499 is ⌊√MaxInt64⌋: past it (x+1)² overflows.
		if x < 0 || x > 3037000499 || x*x > n || (x < 3037000499 && (x+1)*(x+1) <= n) {
			t.Fatalf("isqrt(%d) = %d", n, x)
		}
	}
	for _, n := range []int64{0, 1, 2, 3, 4, 8, 9, 15, 16, 17, 1 << 62, math.MaxInt64 - 1} {
		check(n)
	}
	for range 100_000 {
		check(r.Int64N(1 << (1 + r.IntN(62))))
	}
	if isqrt(-5) != 0 {
		t.Fatal("isqrt of a negative number is not 0")
	}
}

// isqrt(MaxInt64) overflows in its first step, (n+1)/2, and returns
// -4611686018427387904. Coordinates whose squared distance wraps to
// MaxInt64 would get a negative RTT (now clamped at zero by RTTMicros).
// Seeding Newton's method with 1<<((bits.Len64(n)+1)/2) fixes it and is six
// times faster (see the report on BenchmarkPlace1000x100).
func TestRegressIsqrtOfMaxInt64(t *testing.T) {
	if got := isqrt(math.MaxInt64); got != 3037000499 {
		t.Fatalf("isqrt(MaxInt64) = %d; want 3037000499", got)
	}
}
