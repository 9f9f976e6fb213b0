package crdt

// LWWMap is a last-writer-wins map: each key holds the value of the update
// with the greatest stamp. The reducers use it for seeds by name, claims by
// (node, seed), load reports by node and the newest grant per subject.
//
// There is no Delete. A deletion is an update like any other, carrying a
// tombstone in V, so that it is ordered against concurrent writes; forgetting
// the key instead would let an older write resurrect it on the next merge.
//
// Get, Len, Keys and Range are documented on table. The zero LWWMap is empty
// and ready to use. Values are stored as given; a V holding pointers must be
// treated as immutable once set.
type LWWMap[K comparable, V any] struct {
	table[K, V]
}

func later(s, cur Stamp) bool { return Compare(s, cur) > 0 }

// Set stores v under k iff s is greater than the stamp already there (or k
// is absent). It reports whether the map changed.
func (m *LWWMap[K, V]) Set(k K, v V, s Stamp) bool { return m.put(k, v, s, later) }

// Merge folds other into m: each key ends with the later of the two entries.
func (m *LWWMap[K, V]) Merge(other *LWWMap[K, V]) { m.merge(&other.table, later) }

// Clone returns an independent copy of m.
func (m *LWWMap[K, V]) Clone() *LWWMap[K, V] { return &LWWMap[K, V]{m.clone()} }

// LWWRegister is a single last-writer-wins value, an LWWMap with one key.
// The zero register is unset.
type LWWRegister[V any] struct {
	val   V
	stamp Stamp
	set   bool
}

// Set stores v iff s is greater than the current stamp or the register is
// unset. It reports whether the register changed.
func (r *LWWRegister[V]) Set(v V, s Stamp) bool {
	if r.set && !later(s, r.stamp) {
		return false
	}
	r.val, r.stamp, r.set = v, s, true
	return true
}

// Get returns the value, the stamp that wrote it, and whether it was ever set.
func (r *LWWRegister[V]) Get() (v V, s Stamp, ok bool) { return r.val, r.stamp, r.set }

// Merge folds other into r.
func (r *LWWRegister[V]) Merge(other LWWRegister[V]) {
	if other.set {
		r.Set(other.val, other.stamp)
	}
}
