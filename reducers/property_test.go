package reducers

import (
	"flag"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// Properties of the fold and of the decisions built on it (DESIGN.md §6-7,
// §12), each checked on many random op sets from gen_test.go:
//
//   - any permutation of a set of ops, with any duplicates, folds to the same
//     view; so does an incremental Folder fed in any order;
//   - two partitions that each saw part of the ops converge once they
//     exchange the rest;
//   - Place, Explain, Route and Audit give the same answers for the same set;
//   - Place and Route never pick a node the rules exclude (oracle_test.go).
//
// A failure prints the case number and its ops; rerun exactly that case with
// -propcase=N.

// raceEnabled reports whether the test binary was built with -race.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	return ok && slices.Contains(bi.Settings, debug.BuildSetting{Key: "-race", Value: "true"})
}()

var propCase = flag.Int("propcase", -1, "run only this property case (see a failure's case number)")

// propCases lists the cases a property runs: n of them, thousands in all.
// With -short they are a fifth as many, and under the race detector a third:
// the properties run in one goroutine each, so the race detector has nothing
// to find in them but slows them tenfold (concurrent reads of a View are
// TestViewIsSafeToShare's business).
func propCases(t *testing.T, n int) []uint64 {
	if *propCase >= 0 {
		return []uint64{uint64(*propCase)}
	}
	if testing.Short() {
		n /= 5
	}
	if raceEnabled {
		n /= 3
	}
	cases := make([]uint64, n)
	for i := range cases {
		cases[i] = uint64(i)
	}
	return cases
}

// canon is everything a user could notice in a view, as text: its digest
// and its full rendering.
func canon(s *scenario, v *View, now oplog.HLC) string { return s.renderView(v, now) }

func TestFoldIgnoresOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1500) {
		g := caseFor(i)
		s := g.scenario()
		want := Fold(g.cl, g.ops, g.now)
		wantText := canon(s, want, g.now)
		r := rand.New(rand.NewPCG(propSeed^1, i))

		for p := range 3 {
			v := Fold(g.cl, g.permute(r), g.now)
			if v.Digest() != want.Digest() || (p == 0 && canon(s, v, g.now) != wantText) {
				t.Fatalf("permutation %d folds to another view\n%s\ngot:\n%s\nwant:\n%s", p, g, canon(s, v, g.now), wantText)
			}
		}

		// A Folder fed one op at a time, in any order, asked for its view
		// now and then along the way.
		f := NewFolder(g.cl)
		for _, op := range g.permute(r) {
			f.Add(op, g.now)
			if r.IntN(8) == 0 {
				f.View(g.now)
			}
		}
		if v := f.View(g.now); v.Digest() != want.Digest() || canon(s, v, g.now) != wantText {
			t.Fatalf("the incremental Folder disagrees with Fold\n%s\ngot:\n%s\nwant:\n%s", g, canon(s, v, g.now), wantText)
		}
		if f.View(g.now) != f.View(g.now) {
			t.Fatal("View rebuilt a view with nothing new")
		}
	}
}

func TestPartitionsConverge(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1000) {
		g := caseFor(i)
		s := g.scenario()
		want := Fold(g.cl, g.ops, g.now)
		r := rand.New(rand.NewPCG(propSeed^2, i))

		// Each op reaches one side of the partition, or both.
		var a, b []*oplog.Op
		for _, op := range g.ops {
			switch r.IntN(3) {
			case 0:
				a = append(a, op)
			case 1:
				b = append(b, op)
			default:
				a, b = append(a, op), append(b, op)
			}
		}
		fa, fb := NewFolder(g.cl), NewFolder(g.cl)
		feed := func(f *Folder, ops []*oplog.Op) {
			ops = slices.Clone(ops)
			r.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
			for _, op := range ops {
				f.Add(op, g.now)
				if r.IntN(8) == 0 {
					f.View(g.now)
				}
			}
		}
		feed(fa, a)
		feed(fb, b)
		// Each side folds on its own, as Fold would.
		if fa.View(g.now).Digest() != Fold(g.cl, a, g.now).Digest() {
			t.Fatalf("side A: Folder and Fold disagree\n%s", g)
		}
		// The partition heals: each side receives what the other had.
		feed(fa, b)
		feed(fb, a)
		va, vb := fa.View(g.now), fb.View(g.now)
		if va.Digest() != want.Digest() || vb.Digest() != want.Digest() {
			t.Fatalf("after healing, the sides do not converge to the fold of all ops\n%s\nA:\n%s\nB:\n%s\nwant:\n%s",
				g, canon(s, va, g.now), canon(s, vb, g.now), canon(s, want, g.now))
		}
		// And folding the union, duplicates and all, is folding all.
		if u := Fold(g.cl, slices.Concat(a, b), g.now); u.Digest() != want.Digest() {
			t.Fatalf("the union of the partitions folds to another view\n%s", g)
		}
	}
}

func TestDecisionsIgnoreOrder(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1000) {
		g := caseFor(i)
		r := rand.New(rand.NewPCG(propSeed^3, i))
		views := []*View{Fold(g.cl, g.ops, g.now), Fold(g.cl, g.permute(r), g.now)}
		f := NewFolder(g.cl)
		for _, op := range g.permute(r) {
			f.Add(op, g.now)
		}
		views = append(views, f.View(g.now))

		for _, seed := range genSeeds {
			want := Explain(views[0], seed, g.now)
			for j, v := range views[1:] {
				if got := Explain(v, seed, g.now); !reflect.DeepEqual(got, want) {
					t.Fatalf("view %d places %s otherwise:\n%+v\nwant:\n%+v\n%s", j+1, seed, got, want, g)
				}
			}
			for _, from := range genNodes[:3] {
				for _, call := range []string{"", "a", "call-7"} {
					want := Route(views[0], pub(from), seed, []byte(call), g.now)
					for j, v := range views[1:] {
						if got := Route(v, pub(from), seed, []byte(call), g.now); !slices.Equal(got, want) {
							t.Fatalf("view %d routes %s from %s (call %q) otherwise:\n%v\nwant:\n%v\n%s", j+1, seed, from, call, got, want, g)
						}
					}
				}
			}
		}
	}
}

func TestAuditIgnoresOrderAndMatchesTheView(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 500) {
		g := caseFor(i)
		r := rand.New(rand.NewPCG(propSeed^4, i))
		want := Audit(g.cl, g.ops, g.now)
		got := Audit(g.cl, g.permute(r), g.now)
		if !reflect.DeepEqual(got, want) {
			s := g.scenario()
			t.Fatalf("the audit depends on arrival order\n%s\ngot:\n%s\nwant:\n%s", g, s.renderAudit(got), s.renderAudit(want))
		}
		// The audit agrees with the view: every membership op has one event,
		// every op far ahead is held, and nothing the view shows is refused.
		s := g.scenario()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf(format+"\n%s\naudit:\n%s", append(args, g, s.renderAudit(want))...)
		}
		events := map[oplog.ID]Event{}
		for _, e := range want {
			if _, dup := events[e.Op]; dup {
				fail("op %s is in the audit twice", s.label(e.Op))
			}
			events[e.Op] = e
		}
		v := Fold(g.cl, g.ops, g.now)
		for _, op := range g.ops {
			e, ok := events[op.ID()]
			held := op.HLC.Wall()-g.now.Wall() > v.Params.MaxOffsetMillis
			if held != (ok && e.What == EventHeld) {
				fail("%s is %s ahead of now, but its event is %q", s.label(op.ID()), rel(op.HLC-g.now+at(0)), e.What)
			}
			if isMembership(op.Kind) && !ok {
				fail("membership op %s has no audit event", s.label(op.ID()))
			}
		}
		var shown []oplog.ID
		for _, m := range v.Members {
			if !m.Root {
				shown = append(shown, m.Grant)
			}
			if m.Denied {
				shown = append(shown, m.Deny)
			}
		}
		for _, x := range v.Seeds {
			shown = append(shown, x.ID)
		}
		for _, x := range v.Services {
			shown = append(shown, x.ID)
		}
		for _, x := range v.Claims {
			shown = append(shown, x.ID)
		}
		for _, x := range v.Loads {
			shown = append(shown, x.ID)
		}
		for _, id := range shown {
			if id == (oplog.ID{}) {
				continue // a deny with no grant before it
			}
			if e, ok := events[id]; ok && (e.What == EventRefused || e.What == EventHeld) {
				fail("the view shows %s, which the audit says is %s: %s", s.label(id), e.What, e.Reason)
			}
		}
	}
}

func TestPlaceKeepsTheRules(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1500) {
		g := caseFor(i)
		v := Fold(g.cl, g.ops, g.now)
		s := g.scenario()
		for _, name := range genSeeds {
			p := Explain(v, name, g.now)
			if !slices.Equal(Place(v, name, g.now), p.Nodes) {
				t.Fatalf("Place and Explain disagree on %s\n%s", name, g)
			}
			sd := v.Seeds[name]
			if sd == nil || sd.Tombstone {
				if len(p.Nodes) != 0 || len(p.Ranked) != 0 {
					t.Fatalf("%s is not published, yet placed on %v\n%s", name, p.Nodes, g)
				}
				continue
			}
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("place %s: "+format+"\n%s\nview:\n%s\nplacement:\n%s", append(append([]any{name}, args...), g, s.renderView(v, g.now), s.renderPlace(v, name, g.now))...)
			}
			want, _ := wantReplicas(v, sd, g.now)
			if p.Want != want || int64(want) < sd.MinReplicas || int64(want) > sd.MaxReplicas {
				fail("wants %d replicas; the oracle %d within %d:%d", p.Want, want, sd.MinReplicas, sd.MaxReplicas)
			}
			ok := eligible(v, sd, g.now)
			if len(p.Nodes) != min(p.Want, len(ok)) {
				fail("chose %d nodes; want min(%d, %d eligible)", len(p.Nodes), p.Want, len(ok))
			}
			var ranked []oplog.Key
			for j, c := range p.Ranked {
				ranked = append(ranked, c.Node)
				if j > 0 && c.Score > p.Ranked[j-1].Score {
					fail("ranked out of order at %d", j)
				}
				if c.Sticky != holdsReady(v, sd, c.Node) {
					fail("%s sticky=%v", s.name(c.Node), c.Sticky)
				}
			}
			slices.SortFunc(ranked, compareKeys)
			if !slices.Equal(ranked, ok) {
				fail("ranks %v; the oracle says %v may take a replica", ranked, ok)
			}
			chosen := map[oplog.Key]bool{}
			for _, k := range p.Nodes {
				if chosen[k] {
					fail("chose %s twice", s.name(k))
				}
				chosen[k] = true
				if why := whyNotLive(v, k, g.now); why != "" {
					fail("chose %s, which is not live: %s", s.name(k), why)
				}
				if why := whyIneligible(v, sd, k); why != "" {
					fail("chose %s, which may not take it: %s", s.name(k), why)
				}
				if !hasOwnRecentLoad(g, k, v.Params) {
					fail("chose %s, which has no load report of its own in the live window", s.name(k))
				}
			}
		}
	}
}

// hasOwnRecentLoad checks liveness against the ops themselves rather than the
// view: some load op authored by k, about k, within the live window of now
// and not held out for being too far ahead.
func hasOwnRecentLoad(g *genCase, k oplog.Key, p Params) bool {
	for _, op := range g.ops {
		if op.Kind != oplog.KindLoad || op.Author != k {
			continue
		}
		b, err := DecodeBody(op)
		if err != nil || b.(*Load).Node != k {
			continue
		}
		age := g.now.Wall() - op.HLC.Wall()
		if age <= p.LiveIntervals*p.LoadIntervalMillis && -age <= p.MaxOffsetMillis {
			return true
		}
	}
	return false
}

func TestRouteKeepsTheRules(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1500) {
		g := caseFor(i)
		v := Fold(g.cl, g.ops, g.now)
		s := g.scenario()
		for _, name := range genSeeds {
			sd := v.Seeds[name]
			want := map[oplog.Key]bool{}
			if sd != nil && !sd.Tombstone {
				for _, c := range v.ClaimsFor(name) {
					if whyNoRoute(v, sd, c, g.now) == "" {
						want[c.Node] = true
					}
				}
			}
			for _, from := range slices.Concat(genNodes, []string{"stranger"}) {
				for _, call := range []string{"x", "y"} {
					got := Route(v, pub(from), name, []byte(call), g.now)
					fail := func(format string, args ...any) {
						t.Helper()
						t.Fatalf("route %s from %s: "+format+"\n%s\nview:\n%s", append(append([]any{name, from}, args...), g, s.renderView(v, g.now))...)
					}
					if len(got) != len(want) {
						fail("offers %d replicas; %d are ready, current and live", len(got), len(want))
					}
					seen := map[oplog.Key]bool{}
					over := false
					for _, k := range got {
						if !want[k] || seen[k] {
							fail("offers %s, which is no route or offered twice", s.name(k))
						}
						seen[k] = true
						sat := v.Loads[k].Seeds[name].SaturationPM
						if over && sat < 1000 {
							fail("offers %s after an overloaded replica", s.name(k))
						}
						over = over || sat >= 1000
					}
				}
			}
		}
	}
}

func TestKeepersKeepTheRules(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 1500) {
		g := caseFor(i)
		v := Fold(g.cl, g.ops, g.now)
		s := g.scenario()
		var live []oplog.Key
		for k := range v.Loads {
			if whyNotLive(v, k, g.now) == "" {
				live = append(live, k)
			}
		}
		for _, name := range genSeeds {
			got := Keepers(v, name, g.now)
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("keepers of %s: "+format+"\n%s\nview:\n%s", append(append([]any{name}, args...), g, s.renderView(v, g.now))...)
			}
			sd := v.Seeds[name]
			if sd == nil || sd.Tombstone {
				if len(got) != 0 {
					fail("%d keepers of a seed that is not published", len(got))
				}
				continue
			}
			if len(got) != min(ArtifactCopies, len(live)) {
				fail("%d keepers of %d live nodes; want %d", len(got), len(live), min(ArtifactCopies, len(live)))
			}
			// The oracle: every keeper is live, and no live non-keeper
			// outranks one.
			for j, k := range got {
				if !slices.Contains(live, k) || slices.Index(got, k) != j {
					fail("%s keeps it: not live, or listed twice", s.name(k))
				}
				for _, o := range live {
					if !slices.Contains(got, o) && rendezvous(sd.Digest.String(), o) > rendezvous(sd.Digest.String(), k) {
						fail("%s keeps it, yet %s ranks higher", s.name(k), s.name(o))
					}
				}
			}
		}
	}
}

// The digest stands for the whole view: two views of different op sets with
// the same digest must show a user the same thing. Dropping one op from a
// set either leaves every part of the view alone or changes the digest.
func TestDigestCoversTheView(t *testing.T) {
	t.Parallel()
	for _, i := range propCases(t, 500) {
		g := caseFor(i)
		s := g.scenario()
		v := Fold(g.cl, g.ops, g.now)
		body := func(v *View) string { // the rendering without its header
			r := s.renderView(v, g.now)
			return r[strings.Index(r, "\n"):]
		}
		r := rand.New(rand.NewPCG(propSeed^5, i))
		for range 5 {
			drop := r.IntN(len(g.ops))
			w := Fold(g.cl, slices.Delete(slices.Clone(g.ops), drop, drop+1), g.now)
			if w.Digest() == v.Digest() && body(w) != body(v) {
				t.Fatalf("dropping op%d changes the view but not its digest\n%s\nwith:\n%s\nwithout:\n%s", drop, g, body(v), body(w))
			}
		}
	}
}

// TestViewIsSafeToShare reads one View from many goroutines at once, as the
// daemon's mesh, placement loop and control API do. Run it with -race.
func TestViewIsSafeToShare(t *testing.T) {
	t.Parallel()
	for _, i := range []uint64{1, 2, 3, 4} {
		g := caseFor(i)
		f := NewFolder(g.cl)
		for _, op := range g.ops {
			f.Add(op, g.now)
		}
		v := f.View(g.now)
		want := v.Digest()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if v.Digest() != want {
					t.Errorf("case %d: digest changed under concurrent reads", i)
				}
				for _, name := range genSeeds {
					Explain(v, name, g.now)
					Route(v, pub(genNodes[w%len(genNodes)]), name, []byte{byte(w)}, g.now)
				}
				v.LiveNodes(g.now)
				_ = v.String()
				_ = v.Pending
			}()
		}
		// Meanwhile the folder's owner carries on.
		for _, op := range g.ops {
			f.Add(op, g.now)
		}
		f.View(g.now)
		f.View(g.now + 1)
		wg.Wait()
	}
}
