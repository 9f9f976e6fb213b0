package reducers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/pln-mesh/pln/oplog"
)

// A generator of random op sets for the property tests: a small cluster
// (the root, six node keys, two invite keys and a stranger) doing everything
// the kinds allow, rightly and wrongly — grants of any tier by any author,
// invites and their redemptions, denies with random keep sets, seeds,
// services, claims and load reports with random figures — at coarse random
// times, so that HLC ties between authors are common, with a few ops from
// the far future and a few duplicates. Every case is drawn from a seeded
// PCG, so a failing case number reproduces exactly.

// propSeed seeds every property case; case i draws from PCG(propSeed, i).
const propSeed = 0x706c6e2d72656475 // "pln-redu"

var (
	genNodes   = []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	genInvites = []string{"i0", "i1"}
	genSeeds   = []string{"alpha", "beta", "gamma"}
	genDigests = []string{"d1", "d2", "d3"}
	genNames   = slices.Concat([]string{"root", "stranger"}, genNodes, genInvites)
)

// genCase is one random op set and the moment it is judged at.
type genCase struct {
	num uint64 // the case number: PCG(propSeed, num)
	ops []*oplog.Op
	now oplog.HLC
	cl  oplog.ClusterID

	r       *rand.Rand
	invites map[string]*Grant // newest invite generated per invite key
	by      map[oplog.Key][]*oplog.Op
}

var genCache sync.Map // case number → *genCase

// caseFor returns case i, generating it once for all the property tests;
// cases are read-only once generated.
func caseFor(i uint64) *genCase {
	if g, ok := genCache.Load(i); ok {
		return g.(*genCase)
	}
	g, _ := genCache.LoadOrStore(i, newGenCase(i))
	return g.(*genCase)
}

func newGenCase(i uint64) *genCase {
	g := &genCase{
		num:     i,
		r:       rand.New(rand.NewPCG(propSeed, i)),
		cl:      clusterOf("root"),
		invites: map[string]*Grant{},
		by:      map[oplog.Key][]*oplog.Op{},
	}
	g.now = at(15_000 + int64(g.r.IntN(5_000)))
	g.generate(10 + g.r.IntN(70))
	return g
}

func (g *genCase) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }
func (g *genCase) chance(p float64) bool   { return g.r.Float64() < p }

// hlc is a coarse random time (ties are common), now and then a little or a
// lot in the future.
func (g *genCase) hlc() oplog.HLC {
	switch {
	case g.chance(0.03):
		return g.now + at(int64(3_600_000+g.r.IntN(1000))) - at(0)
	case g.chance(0.05):
		return g.now + at(int64(g.r.IntN(7_000))) - at(0) // some within MaxOffset, some not
	}
	return at(int64(100*g.r.IntN(180))) + oplog.HLC(g.r.IntN(3))
}

// recent is a time in the last few load intervals before now, where load
// reports decide who is live.
func (g *genCase) recent() oplog.HLC {
	if g.chance(0.3) {
		return g.hlc()
	}
	return g.now - at(int64(g.r.IntN(8_000))) + at(0) + oplog.HLC(g.r.IntN(2))
}

// digest is one of a few artifact digests, the first most often, so that
// claims often match their seed.
func (g *genCase) digest() oplog.Digest {
	if g.chance(0.6) {
		return digestOf(genDigests[0])
	}
	return digestOf(g.pick(genDigests))
}

func (g *genCase) emit(author string, h oplog.HLC, b Body) {
	op := forgeBody(pub(author), h, b)
	g.ops = append(g.ops, op)
	g.by[op.Author] = append(g.by[op.Author], op)
}

func (g *genCase) props() map[string]string {
	var p map[string]string
	if g.chance(0.5) {
		p = map[string]string{"zone": g.pick([]string{"eu", "us"})}
	}
	if g.chance(0.3) {
		if p == nil {
			p = map[string]string{}
		}
		p["gpu"] = "yes"
	}
	return p
}

func (g *genCase) nodeTier() Tier { return Tier(1 + g.r.IntN(3)) }

func (g *genCase) expiry() oplog.HLC {
	if g.chance(0.7) {
		return 0
	}
	return at(int64(1000 * g.r.IntN(25)))
}

func (g *genCase) generate(n int) {
	switch {
	case g.chance(0.02): // no genesis at all: nothing counts
	case g.chance(0.05): // a genesis not signed by the root
		g.emit("k0", at(0), &Genesis{Name: "fake", Root: pub("k0")})
		g.emit("root", at(0)+1, &Genesis{Name: "gen", Root: pub("root")})
	default:
		g.emit("root", at(0), &Genesis{Name: "gen", Root: pub("root")})
	}
	if g.chance(0.05) { // the root signs a second genesis; the first counts
		g.emit("root", g.hlc(), &Genesis{Name: "second", Root: pub("root")})
	}
	// Most cases start with a few admissions by the root, so that the rest
	// has authors who count.
	for _, k := range genNodes {
		if g.chance(0.85) {
			g.emit("root", at(int64(10*g.r.IntN(100))), &Grant{Subject: pub(k), Tier: g.nodeTier(), Props: g.props(), Expires: g.expiry()})
		}
	}
	for range n {
		switch w := g.r.IntN(100); {
		case w < 12:
			g.grant()
		case w < 17:
			g.invite()
		case w < 22:
			g.redeem()
		case w < 29:
			g.deny()
		case w < 36:
			g.seed()
		case w < 39:
			g.serve()
		case w < 54:
			g.claim()
		case w < 97:
			g.load()
		default: // a body that does not decode
			kind := oplog.Kinds()[g.r.IntN(len(oplog.Kinds()))]
			op := forge(kind, pub(g.pick(genNames)), g.hlc(), []byte{0xa1, 0x63, 'b', 'a', 'd', 0x01})
			g.ops = append(g.ops, op)
		}
	}
}

func (g *genCase) author() string {
	switch w := g.r.IntN(10); {
	case w < 3:
		return "root"
	case w < 9:
		return g.pick(genNodes)
	}
	return g.pick(append(genInvites, "stranger"))
}

func (g *genCase) grant() {
	subject := g.pick(genNodes)
	if g.chance(0.05) {
		subject = g.pick([]string{"root", "i0"})
	}
	g.emit(g.author(), g.hlc(), &Grant{Subject: pub(subject), Tier: g.nodeTier(), Props: g.props(), Expires: g.expiry()})
}

func (g *genCase) invite() {
	key := g.pick(genInvites)
	inv := &Grant{Subject: pub(key), Tier: TierInvite, Confers: g.nodeTier(), Props: g.props(), Expires: at(int64(1000 * (1 + g.r.IntN(20))))}
	if g.chance(0.05) {
		inv.Confers = TierInvite // invalid: an invite conferring an invite
	}
	g.invites[key] = inv
	author := g.author()
	if g.chance(0.5) {
		author = "root"
	}
	g.emit(author, g.hlc(), inv)
}

func (g *genCase) redeem() {
	key := g.pick(genInvites)
	gr := &Grant{Subject: pub(g.pick(genNodes)), Tier: g.nodeTier(), Props: g.props()}
	if inv := g.invites[key]; inv != nil && g.chance(0.8) {
		gr.Tier, gr.Props = inv.Confers, inv.Props
	}
	if g.chance(0.1) {
		gr.Tier, gr.Confers, gr.Expires = TierInvite, TierMember, g.now
	}
	if g.chance(0.1) {
		gr.Expires = g.expiry()
	}
	g.emit(key, g.hlc(), gr)
}

func (g *genCase) deny() {
	subject := g.pick(append(slices.Clone(genNodes), genInvites...))
	if g.chance(0.03) {
		subject = "root"
	}
	d := &Deny{Subject: pub(subject)}
	for _, op := range g.by[pub(subject)] {
		if g.chance(0.5) {
			d.Keep = append(d.Keep, op.ID())
		}
	}
	if len(g.ops) > 0 && g.chance(0.3) {
		d.Keep = append(d.Keep, g.ops[g.r.IntN(len(g.ops))].ID())
	}
	if g.chance(0.3) {
		d.Reason = "r" + fmt.Sprint(g.r.IntN(3))
	}
	author := g.author()
	if g.chance(0.2) {
		author = subject // leaving
	}
	g.emit(author, g.hlc(), d)
}

func (g *genCase) seed() {
	s := &Seed{Name: g.pick(genSeeds)}
	if g.chance(0.1) {
		s.Tombstone = true
	} else {
		s.Kind = SeedWASM
		s.Digest = g.digest()
		s.MinReplicas = int64(1 + g.r.IntN(2))
		s.MaxReplicas = s.MinReplicas + int64(g.r.IntN(3))
		if g.chance(0.5) {
			s.MemoryBytes = int64(64<<20) << g.r.IntN(4)
		}
		switch g.r.IntN(4) {
		case 0:
			s.Policy = map[string]string{"zone": "eu"}
		case 1:
			s.Policy = map[string]string{"gpu": "*"}
		}
	}
	author := g.author()
	if g.chance(0.5) {
		author = "root"
	}
	g.emit(author, g.hlc(), s)
}

func (g *genCase) serve() {
	author := g.author()
	node := author
	if g.chance(0.1) {
		node = g.pick(genNodes)
	}
	g.emit(author, g.hlc(), &Serve{Node: pub(node), Name: g.pick([]string{"web", "db"}), Port: int64(1 + g.r.IntN(65535)), Proto: g.pick([]string{"tcp", "udp"}), Tombstone: g.chance(0.1)})
}

func (g *genCase) claim() {
	author := g.pick(genNodes)
	node := author
	if g.chance(0.05) {
		node = g.pick(genNodes)
	}
	g.emit(author, g.recent(), &Claim{Node: pub(node), Seed: g.pick(genSeeds), Digest: g.digest(), State: g.pick([]string{ClaimReady, ClaimReady, ClaimDraining, ClaimReleased})})
}

func (g *genCase) load() {
	author := g.pick(genNodes)
	if g.chance(0.03) {
		author = g.author()
	}
	node := author
	if g.chance(0.03) {
		node = g.pick(genNodes)
	}
	l := &Load{Node: pub(node)}
	if g.chance(0.9) {
		l.MemBytes = int64(1+g.r.IntN(8)) << 30
		l.MemUsedBytes = g.r.Int64N(l.MemBytes + 1)
	}
	if g.chance(0.9) {
		l.CPUMilli = int64(1000 * (1 + g.r.IntN(8)))
		l.CPUUsedMilli = g.r.Int64N(l.CPUMilli + 1)
	}
	l.SaturationPM = int64(g.r.IntN(1000))
	if g.chance(0.15) {
		l.SaturationPM = int64(950 + g.r.IntN(100))
	}
	if g.chance(0.9) {
		l.Coord = Coord{X: int64(g.r.IntN(50_000)) - 25_000, Y: int64(g.r.IntN(50_000)) - 25_000, H: int64(g.r.IntN(1000))}
	}
	for _, s := range genSeeds {
		if g.chance(0.4) {
			if l.Seeds == nil {
				l.Seeds = map[string]SeedLoad{}
			}
			sl := SeedLoad{DemandMilliCPS: int64(g.r.IntN(120_000))}
			if g.chance(0.3) {
				sl.SaturationPM = int64(g.r.IntN(1100))
			}
			l.Seeds[s] = sl
		}
	}
	for _, d := range genDigests {
		if g.chance(0.2) {
			l.Cached = append(l.Cached, digestOf(d))
		}
	}
	if g.chance(0.03) { // a hostile or broken node: figures Validate lets through
		l.Coord = Coord{X: g.r.Int64() - math.MaxInt64/2, Y: g.r.Int64(), H: -g.r.Int64N(1 << 40)}
		l.Seeds = map[string]SeedLoad{g.pick(genSeeds): {DemandMilliCPS: g.r.Int64(), SaturationPM: -g.r.Int64N(1 << 40)}}
	}
	g.emit(author, g.recent(), l)
}

// permute returns the ops in a random order, with random duplicates: some
// the same pointer, some re-decoded copies of the same bytes.
func (g *genCase) permute(r *rand.Rand) []*oplog.Op {
	ops := slices.Clone(g.ops)
	for range r.IntN(len(g.ops)/3 + 1) {
		op := g.ops[r.IntN(len(g.ops))]
		if r.IntN(2) == 0 {
			cp, err := oplog.Decode(op.Bytes())
			if err != nil {
				panic(err)
			}
			op = cp
		}
		ops = append(ops, op)
	}
	r.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

// scenario is a scenario that knows the generator's key and digest names,
// for rendering views in failure messages and comparisons.
func (g *genCase) scenario() *scenario {
	s := newScenario()
	s.cluster = g.cl
	for _, n := range genNames {
		s.names[pub(n)] = n
	}
	for _, d := range genDigests {
		s.digests[digestOf(d)] = d
	}
	for i, op := range g.ops {
		s.labels[op.ID()] = fmt.Sprintf("op%d", i)
	}
	return s
}

// String lists the case's ops, one a line, for failure messages.
func (g *genCase) String() string {
	s := g.scenario()
	var b strings.Builder
	fmt.Fprintf(&b, "case %d (PCG seed %#x, %d), now %s, %d ops:\n", g.num, uint64(propSeed), g.num, rel(g.now), len(g.ops))
	for i, op := range g.ops {
		body, err := DecodeBody(op)
		desc := fmt.Sprintf("%+v", body)
		if err != nil {
			desc = "undecodable: " + err.Error()
		}
		for k, n := range s.names {
			desc = strings.ReplaceAll(desc, fmt.Sprint(k[:]), n)
		}
		fmt.Fprintf(&b, "  op%d %s %s by %s: %s\n", i, rel(op.HLC), op.Kind, s.name(op.Author), desc)
	}
	return b.String()
}
