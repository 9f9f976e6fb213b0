package crdt

import "slices"

// entry is one value together with the stamp of the update that wrote it.
type entry[V any] struct {
	val   V
	stamp Stamp
}

// table is the storage shared by LWWMap and FWWMap, which differ only in
// which stamp wins. Its read methods are promoted to both. The zero table is
// empty and ready to use.
type table[K comparable, V any] struct {
	m map[K]entry[V]
}

// put stores (v, s) under k iff k is absent or wins(s, current) holds.
// Equal stamps never win, which is what makes re-applying an update a no-op.
func (t *table[K, V]) put(k K, v V, s Stamp, wins func(s, cur Stamp) bool) bool {
	if cur, ok := t.m[k]; ok && !wins(s, cur.stamp) {
		return false
	}
	if t.m == nil {
		t.m = make(map[K]entry[V])
	}
	t.m[k] = entry[V]{val: v, stamp: s}
	return true
}

// Get returns the value stored under k and the stamp of the update that
// wrote it; ok is false if k was never set.
func (t *table[K, V]) Get(k K) (v V, s Stamp, ok bool) {
	e, ok := t.m[k]
	return e.val, e.stamp, ok
}

// Len returns the number of keys ever set. Tombstones are values, so a
// "deleted" key still counts.
func (t *table[K, V]) Len() int { return len(t.m) }

// Keys returns every key, sorted by cmp. Sorting here rather than in each
// caller keeps map iteration order out of every decision built on a map.
func (t *table[K, V]) Keys(cmp func(a, b K) int) []K {
	ks := make([]K, 0, len(t.m))
	for k := range t.m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, cmp)
	return ks
}

// Range calls fn for each entry until fn returns false. The order is
// unspecified and changes from run to run: use it only for order-insensitive
// work (counting, summing, filtering into a set) and Keys for the rest.
func (t *table[K, V]) Range(fn func(k K, v V, s Stamp) bool) {
	for k, e := range t.m {
		if !fn(k, e.val, e.stamp) {
			return
		}
	}
}

// merge puts every entry of other into t under the same rule.
func (t *table[K, V]) merge(other *table[K, V], wins func(s, cur Stamp) bool) {
	for k, e := range other.m {
		t.put(k, e.val, e.stamp, wins)
	}
}

// clone copies the entries; values are copied by assignment, so a V that
// holds pointers or slices shares them with the original.
func (t *table[K, V]) clone() table[K, V] {
	if t.m == nil {
		return table[K, V]{}
	}
	m := make(map[K]entry[V], len(t.m))
	for k, e := range t.m {
		m[k] = e
	}
	return table[K, V]{m: m}
}
