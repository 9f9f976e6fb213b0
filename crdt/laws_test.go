package crdt

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// lawCases is how many random cases each type's laws are checked on. Every
// case is seeded from (lawSeed, case number), so a failure names the case
// and reproduces exactly.
const (
	lawCases = 5000
	lawSeed  = 0x706c6e // "pln"
)

// model describes one CRDT type to checkLaws: how to build, update, merge,
// copy and canonically print a state S, and how to draw a random universe of
// updates U. Each universe respects the package's one precondition: no two
// distinct updates share a stamp.
type model[S, U any] struct {
	empty func() S
	apply func(S, U)
	merge func(dst, src S)
	clone func(S) S
	dump  func(S) string
	gen   func(r *rand.Rand) []U
}

// checkLaws proves, case by case, that Merge is commutative, associative and
// idempotent, that it leaves its argument alone, that Clone is independent,
// and that any permutation, duplication or partition of one set of updates
// converges to the state of applying them all once in order.
func checkLaws[S, U any](t *testing.T, m model[S, U]) {
	t.Helper()
	for i := range lawCases {
		r := rand.New(rand.NewPCG(lawSeed, uint64(i)))
		us := m.gen(r)
		fail := func(law, got, want string) {
			t.Helper()
			t.Fatalf("case %d (seed %#x): %s\nupdates: %v\ngot:\n%s\nwant:\n%s", i, lawSeed, law, us, got, want)
		}
		of := func(sub []U) S {
			s := m.empty()
			for _, u := range sub {
				m.apply(s, u)
			}
			return s
		}
		join := func(a, b S) S {
			c := m.clone(a)
			m.merge(c, b)
			return c
		}

		want := m.dump(of(us))

		// Three replicas, each seeing a random subset; every update reaches
		// at least one of them, some reach several.
		var parts [3][]U
		for _, u := range us {
			mask := 1 + r.IntN(7)
			for p := range parts {
				if mask&(1<<p) != 0 {
					parts[p] = append(parts[p], u)
				}
			}
		}
		a, b, c := of(parts[0]), of(parts[1]), of(parts[2])
		da, db := m.dump(a), m.dump(b)

		if got, w := m.dump(join(a, b)), m.dump(join(b, a)); got != w {
			fail("commutative", got, w)
		}
		if got, w := m.dump(join(join(a, b), c)), m.dump(join(a, join(b, c))); got != w {
			fail("associative", got, w)
		}
		if got := m.dump(join(a, a)); got != da {
			fail("idempotent", got, da)
		}
		ab := join(a, b)
		if got, w := m.dump(join(ab, b)), m.dump(ab); got != w {
			fail("idempotent on re-merge", got, w)
		}
		if m.dump(a) != da || m.dump(b) != db {
			fail("merge left its inputs alone", m.dump(a)+m.dump(b), da+db)
		}
		if got := m.dump(join(join(c, a), b)); got != want {
			fail("partitions converge", got, want)
		}

		// Any order, with duplicates, gives the same state.
		shuffled := slices.Clone(us)
		for range r.IntN(len(us) + 1) {
			shuffled = append(shuffled, us[r.IntN(len(us))])
		}
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := m.dump(of(shuffled)); got != want {
			fail("permutation", got, want)
		}

		// A clone is independent of its original.
		cl := m.clone(a)
		for _, u := range us {
			m.apply(cl, u)
		}
		if m.dump(a) != da {
			fail("clone independent", m.dump(a), da)
		}
	}
}

// genStamps draws n distinct stamps from a small space, so that equal HLCs
// with different IDs are common and ID tie-breaking is exercised.
func genStamps(r *rand.Rand, n int) []Stamp {
	const hlcs, ids = 12, 12
	out := make([]Stamp, 0, n)
	for _, x := range r.Perm(hlcs * ids)[:n] {
		var s Stamp
		s.HLC = uint64(x / ids)
		s.ID[0], s.ID[31] = byte(x%ids), byte(x)
		out = append(out, s)
	}
	return out
}

var keySpace = []string{"a", "b", "c", "d"}

type setUpdate struct {
	k string
	v int
	s Stamp
}

func (u setUpdate) String() string { return fmt.Sprintf("set %s=%d@%v", u.k, u.v, u.s) }

func genSets(r *rand.Rand) []setUpdate {
	stamps := genStamps(r, 1+r.IntN(16))
	us := make([]setUpdate, len(stamps))
	for i, s := range stamps {
		us[i] = setUpdate{k: keySpace[r.IntN(len(keySpace))], v: r.IntN(100), s: s}
	}
	return us
}

func dumpTable(t *table[string, int]) string {
	var b strings.Builder
	for _, k := range t.Keys(strings.Compare) {
		v, s, _ := t.Get(k)
		fmt.Fprintf(&b, "%s=%d@%v\n", k, v, s)
	}
	return b.String()
}

func TestLawsLWWMap(t *testing.T) {
	checkLaws(t, model[*LWWMap[string, int], setUpdate]{
		empty: func() *LWWMap[string, int] { return new(LWWMap[string, int]) },
		apply: func(m *LWWMap[string, int], u setUpdate) { m.Set(u.k, u.v, u.s) },
		merge: func(d, s *LWWMap[string, int]) { d.Merge(s) },
		clone: func(m *LWWMap[string, int]) *LWWMap[string, int] { return m.Clone() },
		dump:  func(m *LWWMap[string, int]) string { return dumpTable(&m.table) },
		gen:   genSets,
	})
}

func TestLawsFWWMap(t *testing.T) {
	checkLaws(t, model[*FWWMap[string, int], setUpdate]{
		empty: func() *FWWMap[string, int] { return new(FWWMap[string, int]) },
		apply: func(m *FWWMap[string, int], u setUpdate) { m.Set(u.k, u.v, u.s) },
		merge: func(d, s *FWWMap[string, int]) { d.Merge(s) },
		clone: func(m *FWWMap[string, int]) *FWWMap[string, int] { return m.Clone() },
		dump:  func(m *FWWMap[string, int]) string { return dumpTable(&m.table) },
		gen:   genSets,
	})
}

func TestLawsLWWRegister(t *testing.T) {
	checkLaws(t, model[*LWWRegister[int], setUpdate]{
		empty: func() *LWWRegister[int] { return new(LWWRegister[int]) },
		apply: func(r *LWWRegister[int], u setUpdate) { r.Set(u.v, u.s) },
		merge: func(d, s *LWWRegister[int]) { d.Merge(*s) },
		clone: func(r *LWWRegister[int]) *LWWRegister[int] { c := *r; return &c },
		dump: func(r *LWWRegister[int]) string {
			v, s, ok := r.Get()
			return fmt.Sprintf("%d@%v %v", v, s, ok)
		},
		gen: genSets,
	})
}

func TestLawsMaxRegister(t *testing.T) {
	checkLaws(t, model[*MaxRegister, uint64]{
		empty: func() *MaxRegister { return new(MaxRegister) },
		apply: func(r *MaxRegister, v uint64) { r.Set(v) },
		merge: func(d, s *MaxRegister) { d.Merge(*s) },
		clone: func(r *MaxRegister) *MaxRegister { c := *r; return &c },
		dump:  func(r *MaxRegister) string { return fmt.Sprint(r.Value()) },
		gen: func(r *rand.Rand) []uint64 {
			us := make([]uint64, 1+r.IntN(16))
			for i := range us {
				us[i] = r.Uint64N(20)
			}
			return us
		},
	})
}

// awUpdate is an Add (tags has one element, the new tag) or a Remove (tags
// are the observed ones).
type awUpdate struct {
	add  bool
	e    string
	tags []Stamp
}

func (u awUpdate) String() string {
	if u.add {
		return fmt.Sprintf("add %s@%v", u.e, u.tags[0])
	}
	return fmt.Sprintf("remove %s%v", u.e, u.tags)
}

func genAW(r *rand.Rand) []awUpdate {
	elems := keySpace[:3]
	stamps := genStamps(r, 1+r.IntN(16))
	var us []awUpdate
	added := map[string][]Stamp{}
	for _, s := range stamps {
		e := elems[r.IntN(len(elems))]
		us = append(us, awUpdate{add: true, e: e, tags: []Stamp{s}})
		added[e] = append(added[e], s)
	}
	// Removes observe arbitrary subsets of an element's adds: causality is
	// the caller's business, the laws must hold regardless.
	for range r.IntN(len(stamps) + 1) {
		e := elems[r.IntN(len(elems))]
		var obs []Stamp
		for _, s := range added[e] {
			if r.IntN(2) == 0 {
				obs = append(obs, s)
			}
		}
		us = append(us, awUpdate{e: e, tags: obs})
	}
	r.Shuffle(len(us), func(i, j int) { us[i], us[j] = us[j], us[i] })
	return us
}

// dumpAW prints live and removed tags: two states are equal only if they
// agree on tombstones too, not merely on membership.
func dumpAW(s *AWSet[string]) string {
	var b strings.Builder
	for _, e := range keySpace {
		fmt.Fprintf(&b, "%s live=%v removed=%v\n", e, s.Tags(e), sortedTags(s.removed[e]))
	}
	fmt.Fprintf(&b, "elements=%v len=%d", s.Elements(strings.Compare), s.Len())
	return b.String()
}

func TestLawsAWSet(t *testing.T) {
	checkLaws(t, model[*AWSet[string], awUpdate]{
		empty: func() *AWSet[string] { return new(AWSet[string]) },
		apply: func(s *AWSet[string], u awUpdate) {
			if u.add {
				s.Add(u.e, u.tags[0])
			} else {
				s.Remove(u.e, u.tags)
			}
		},
		merge: func(d, s *AWSet[string]) { d.Merge(s) },
		clone: func(s *AWSet[string]) *AWSet[string] { return s.Clone() },
		dump:  dumpAW,
		gen:   genAW,
	})
}

// TestStampOrderIsTotal checks Compare against a straightforward reference
// on random stamps: antisymmetric, consistent with equality and with Less.
func TestStampOrderIsTotal(t *testing.T) {
	r := rand.New(rand.NewPCG(lawSeed, 1))
	ref := func(a, b Stamp) int {
		if c := cmp.Compare(a.HLC, b.HLC); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	}
	for range 20000 {
		ab := genStamps(r, 2)
		a, b := ab[0], ab[1]
		if r.IntN(4) == 0 {
			b = a
		}
		if got, want := Compare(a, b), ref(a, b); got != want {
			t.Fatalf("Compare(%v, %v) = %d, want %d", a, b, got, want)
		}
		if Compare(a, b) != -Compare(b, a) || (Compare(a, b) == 0) != (a == b) || a.Less(b) != (Compare(a, b) < 0) {
			t.Fatalf("order inconsistent for %v, %v", a, b)
		}
	}
}
