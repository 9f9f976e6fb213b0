package crdt

import (
	"slices"
	"strings"
	"testing"
)

// st builds a stamp from an HLC and a one-byte ID, enough to order by both.
func st(hlc uint64, id byte) Stamp {
	var s Stamp
	s.HLC, s.ID[0] = hlc, id
	return s
}

func TestStampOrdersByHLCThenID(t *testing.T) {
	cases := []struct {
		a, b Stamp
		want int
	}{
		{st(1, 9), st(2, 0), -1}, // HLC dominates the ID
		{st(2, 0), st(1, 9), 1},
		{st(5, 1), st(5, 2), -1}, // same HLC: ID breaks the tie
		{st(5, 2), st(5, 2), 0},
		{Stamp{}, st(0, 1), -1}, // the zero stamp is first
	}
	for _, c := range cases {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%v, %v) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := c.a.Less(c.b); got != (c.want < 0) {
			t.Errorf("%v.Less(%v) = %v", c.a, c.b, got)
		}
	}
	if !(Stamp{}).IsZero() || st(0, 1).IsZero() {
		t.Error("IsZero")
	}
}

func TestLWWMapLaterWriteWins(t *testing.T) {
	var m LWWMap[string, string] // the zero value is ready to use
	if !m.Set("web", "v1", st(10, 1)) {
		t.Fatal("first Set did not apply")
	}
	if m.Set("web", "old", st(9, 9)) {
		t.Error("an older write applied")
	}
	if m.Set("web", "dup", st(10, 1)) {
		t.Error("re-applying the same stamp reported a change")
	}
	if !m.Set("web", "v2", st(10, 2)) {
		t.Error("a later write with the same HLC and a greater ID did not apply")
	}
	v, s, ok := m.Get("web")
	if v != "v2" || s != st(10, 2) || !ok {
		t.Errorf("Get = %q %v %v, want v2 at 10/02", v, s, ok)
	}
	if _, _, ok := m.Get("api"); ok {
		t.Error("Get of an unset key reported ok")
	}
}

// A deletion is a tombstone value; an older write arriving after it must not
// bring the key back.
func TestLWWMapTombstoneBeatsLateOlderWrite(t *testing.T) {
	type seed struct {
		digest string
		gone   bool
	}
	var m LWWMap[string, seed]
	m.Set("web", seed{gone: true}, st(20, 0))
	m.Set("web", seed{digest: "abc"}, st(15, 0))
	if v, _, _ := m.Get("web"); !v.gone {
		t.Errorf("older write resurrected a deleted key: %+v", v)
	}
	if m.Len() != 1 {
		t.Errorf("Len = %d; a tombstone still counts as a key", m.Len())
	}
}

func TestLWWMapKeysRangeClone(t *testing.T) {
	var m LWWMap[string, int]
	for i, k := range []string{"c", "a", "d", "b"} {
		m.Set(k, i, st(uint64(i), 0))
	}
	if got := m.Keys(strings.Compare); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Keys = %v, want sorted", got)
	}
	sum, calls := 0, 0
	m.Range(func(_ string, v int, _ Stamp) bool { sum += v; return true })
	m.Range(func(string, int, Stamp) bool { calls++; return false })
	if sum != 0+1+2+3 || calls != 1 {
		t.Errorf("Range: sum %d (want 6), calls after stop %d (want 1)", sum, calls)
	}
	c := m.Clone()
	c.Set("a", 99, st(100, 0))
	c.Set("e", 5, st(100, 0))
	if v, _, _ := m.Get("a"); v != 1 || m.Len() != 4 {
		t.Error("changing a clone changed the original")
	}
	var empty LWWMap[string, int]
	if e := empty.Clone(); e.Len() != 0 || len(e.Keys(strings.Compare)) != 0 {
		t.Error("clone of the zero map is not empty")
	}
}

func TestLWWMapMergeKeepsLaterPerKey(t *testing.T) {
	var a, b LWWMap[string, string]
	a.Set("x", "a-new", st(5, 0))
	a.Set("y", "a-old", st(1, 0))
	b.Set("x", "b-old", st(4, 0))
	b.Set("y", "b-new", st(2, 0))
	b.Set("z", "b-only", st(3, 0))
	a.Merge(&b)
	for k, want := range map[string]string{"x": "a-new", "y": "b-new", "z": "b-only"} {
		if v, _, _ := a.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
}

func TestLWWRegister(t *testing.T) {
	var r LWWRegister[int]
	if _, _, ok := r.Get(); ok {
		t.Error("zero register reports set")
	}
	// Even a zero stamp applies to an unset register.
	if !r.Set(1, Stamp{}) || r.Set(2, Stamp{}) || !r.Set(3, st(1, 0)) || r.Set(4, st(0, 9)) {
		t.Error("Set applied or refused the wrong writes")
	}
	var o LWWRegister[int]
	o.Set(7, st(2, 0))
	r.Merge(o)
	r.Merge(LWWRegister[int]{}) // merging an unset register changes nothing
	if v, s, ok := r.Get(); v != 7 || s != st(2, 0) || !ok {
		t.Errorf("after merge: %d %v %v, want 7 at 2/00", v, s, ok)
	}
}
