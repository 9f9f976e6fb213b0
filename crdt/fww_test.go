package crdt

import "testing"

func TestFWWMapFirstWriteWins(t *testing.T) {
	var m FWWMap[string, string]
	if !m.Set("k", "second", st(10, 0)) || m.Set("k", "third", st(11, 0)) || m.Set("k", "second", st(10, 0)) {
		t.Fatal("Set applied or refused the wrong writes")
	}
	// "First" is by stamp, not arrival: an earlier write arriving late wins.
	if !m.Set("k", "first", st(9, 0)) {
		t.Fatal("an earlier write did not apply")
	}
	if v, s, _ := m.Get("k"); v != "first" || s != st(9, 0) {
		t.Errorf("Get = %q %v, want first at 9/00", v, s)
	}
}

// The invite rule from DESIGN.md §3: an invite key may author one grant, and
// when two joiners use the same invite in a split brain, the earliest
// (hlc, ID) is the one every node keeps after the halves merge.
func TestFWWMapInviteSplitBrain(t *testing.T) {
	const invite = "invite-key"
	var left, right FWWMap[string, string]
	left.Set(invite, "grant node A", st(1000, 0xbb))
	right.Set(invite, "grant node B", st(1000, 0xaa)) // same ms, smaller ID

	l, r := left.Clone(), right.Clone()
	l.Merge(&right)
	r.Merge(&left)
	for side, m := range map[string]*FWWMap[string, string]{"left": l, "right": r} {
		if v, _, _ := m.Get(invite); v != "grant node B" {
			t.Errorf("%s half kept %q, want the earliest grant (node B)", side, v)
		}
	}
	if v, _, _ := left.Get(invite); v != "grant node A" {
		t.Error("Merge changed its argument")
	}
}
