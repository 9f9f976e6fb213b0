package crdt

// FWWMap is a first-writer-wins map: each key holds the value of the update
// with the smallest stamp, and later writes are ignored.
//
// It exists for rules of the form "X may happen once": an invite key may
// author exactly one grant, so grants are put into an FWWMap keyed by the
// invite key, and in a split brain the earliest (hlc, ID) wins everywhere
// once the halves merge. Note that a key's value can still change when an
// earlier update arrives late; "first" is by stamp, not by arrival.
//
// Get, Len, Keys and Range are documented on table. The zero FWWMap is empty
// and ready to use.
type FWWMap[K comparable, V any] struct {
	table[K, V]
}

func earlier(s, cur Stamp) bool { return Compare(s, cur) < 0 }

// Set stores v under k iff s is smaller than the stamp already there (or k is
// absent). It reports whether the map changed.
func (m *FWWMap[K, V]) Set(k K, v V, s Stamp) bool { return m.put(k, v, s, earlier) }

// Merge folds other into m: each key ends with the earlier of the two entries.
func (m *FWWMap[K, V]) Merge(other *FWWMap[K, V]) { m.merge(&other.table, earlier) }

// Clone returns an independent copy of m.
func (m *FWWMap[K, V]) Clone() *FWWMap[K, V] { return &FWWMap[K, V]{m.clone()} }
