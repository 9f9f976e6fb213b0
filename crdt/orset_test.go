package crdt

import (
	"slices"
	"strings"
	"testing"
)

func TestAWSetAddRemove(t *testing.T) {
	var s AWSet[string] // the zero value is ready to use
	if s.Contains("a") || s.Len() != 0 {
		t.Fatal("zero set is not empty")
	}
	if !s.Add("a", st(1, 0)) || s.Add("a", st(1, 0)) {
		t.Error("Add reported the wrong change")
	}
	if !s.Remove("a", s.Tags("a")) || s.Contains("a") {
		t.Error("removing every observed tag left the element")
	}
	if s.Remove("a", []Stamp{st(1, 0)}) {
		t.Error("re-removing a tag reported a change")
	}
	// A removed tag never comes back, even if its add is delivered again.
	if s.Add("a", st(1, 0)) || s.Contains("a") {
		t.Error("a removed add came back")
	}
	// A fresh add brings the element back.
	if !s.Add("a", st(3, 0)) || !s.Contains("a") {
		t.Error("re-adding after a remove failed")
	}
}

// Add wins: a remove cancels only the adds it observed, so an add concurrent
// with it survives the merge on both sides.
func TestAWSetConcurrentAddWins(t *testing.T) {
	var base AWSet[string]
	base.Add("web", st(1, 0))

	alice, bob := base.Clone(), base.Clone()
	alice.Remove("web", alice.Tags("web")) // observed only tag 1/00
	bob.Add("web", st(2, 0))               // concurrent re-add

	a, b := alice.Clone(), bob.Clone()
	a.Merge(bob)
	b.Merge(alice)
	for name, s := range map[string]*AWSet[string]{"alice": a, "bob": b} {
		if !s.Contains("web") {
			t.Errorf("%s: concurrent add lost to a remove", name)
		}
		if got := s.Tags("web"); !slices.Equal(got, []Stamp{st(2, 0)}) {
			t.Errorf("%s: live tags %v, want only the concurrent add's", name, got)
		}
	}
}

// A remove that arrives before the add it observed still cancels it.
func TestAWSetRemoveBeforeAdd(t *testing.T) {
	var s AWSet[string]
	s.Remove("x", []Stamp{st(4, 0)})
	if s.Add("x", st(4, 0)) || s.Contains("x") {
		t.Error("an add overtaken by its remove came back")
	}
}

func TestAWSetElementsSorted(t *testing.T) {
	var s AWSet[string]
	for i, e := range []string{"c", "a", "b"} {
		s.Add(e, st(uint64(i), 0))
		s.Add(e, st(uint64(i), 1)) // two tags, still one element
	}
	s.Add("z", st(9, 0))
	s.Remove("z", []Stamp{st(9, 0)})
	if got := s.Elements(strings.Compare); !slices.Equal(got, []string{"a", "b", "c"}) || s.Len() != 3 {
		t.Errorf("Elements = %v (Len %d), want [a b c]", got, s.Len())
	}
	if got := s.Tags("b"); !slices.Equal(got, []Stamp{st(2, 0), st(2, 1)}) {
		t.Errorf("Tags(b) = %v, want sorted", got)
	}
}
