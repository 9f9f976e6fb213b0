package crdt

import "testing"

func TestMaxRegisterNeverGoesBack(t *testing.T) {
	var r MaxRegister
	if r.Value() != 0 {
		t.Fatal("zero register is not 0")
	}
	if !r.Set(5) || r.Set(3) || r.Set(5) || r.Value() != 5 {
		t.Errorf("Set applied or refused the wrong values; value %d", r.Value())
	}
	var o MaxRegister
	o.Set(9)
	r.Merge(o)
	o.Merge(r)
	if r.Value() != 9 || o.Value() != 9 {
		t.Errorf("after merge: %d and %d, want 9", r.Value(), o.Value())
	}
}
