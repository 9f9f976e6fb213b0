package crdt

// MaxRegister holds the largest uint64 it has seen, such as the frontier HLC
// of a view. Max is the simplest join: it never goes back, so late or
// duplicated observations are harmless. The zero register holds 0.
type MaxRegister struct {
	v uint64
}

// Set raises the register to v if v is larger, and reports whether it did.
func (r *MaxRegister) Set(v uint64) bool {
	if v <= r.v {
		return false
	}
	r.v = v
	return true
}

// Value returns the largest value seen.
func (r MaxRegister) Value() uint64 { return r.v }

// Merge folds other into r.
func (r *MaxRegister) Merge(other MaxRegister) { r.Set(other.v) }
