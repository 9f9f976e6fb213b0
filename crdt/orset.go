package crdt

import "slices"

// AWSet is an add-wins observed-remove set.
//
// Every Add carries a fresh tag (the stamp of the op that made it); a Remove
// names the tags its author had observed for the element. The element is
// present while it has a tag that no Remove named. So a Remove cancels only
// the adds it saw: when an add and a remove of the same element are
// concurrent, the add's tag is not among the removed ones and the element
// stays — add wins. The same element can be added, removed and added again.
//
// State is the live tags and the removed tags of each element. Removed tags
// are kept forever (they are the tombstones that stop an add which arrives
// after its remove from coming back), and a tag is never both live and
// removed. Merge is the union of both, less what is removed, which is the
// join of the underlying grow-only sets of adds and removes.
//
// The zero AWSet is empty and ready to use.
type AWSet[E comparable] struct {
	live    map[E]map[Stamp]struct{}
	removed map[E]map[Stamp]struct{}
}

// Add records that e was added with tag. It reports whether the set changed,
// which is false if the tag is already live or was already removed.
func (s *AWSet[E]) Add(e E, tag Stamp) bool {
	if has(s.removed, e, tag) || has(s.live, e, tag) {
		return false
	}
	s.live = insert(s.live, e, tag)
	return true
}

// Remove records that the adds of e with the given tags are cancelled. Tags
// not yet seen are remembered too, so an add that arrives after the remove
// that observed it stays cancelled. It reports whether the state changed.
func (s *AWSet[E]) Remove(e E, observed []Stamp) bool {
	changed := false
	for _, tag := range observed {
		changed = s.removeTag(e, tag) || changed
	}
	return changed
}

// removeTag tombstones one tag of e and drops it from the live tags.
func (s *AWSet[E]) removeTag(e E, tag Stamp) bool {
	if has(s.removed, e, tag) {
		return false
	}
	s.removed = insert(s.removed, e, tag)
	if tags := s.live[e]; tags != nil {
		delete(tags, tag)
		if len(tags) == 0 {
			delete(s.live, e)
		}
	}
	return true
}

// Contains reports whether e has a live tag.
func (s *AWSet[E]) Contains(e E) bool { return len(s.live[e]) > 0 }

// Tags returns the live tags of e in stamp order: what a Remove of e issued
// now would name as observed.
func (s *AWSet[E]) Tags(e E) []Stamp { return sortedTags(s.live[e]) }

// Len returns the number of elements present.
func (s *AWSet[E]) Len() int { return len(s.live) }

// Elements returns the elements present, sorted by cmp.
func (s *AWSet[E]) Elements(cmp func(a, b E) int) []E {
	es := make([]E, 0, len(s.live))
	for e := range s.live {
		es = append(es, e)
	}
	slices.SortFunc(es, cmp)
	return es
}

// Merge folds other into s. Removes are applied first so that a tag live in
// one state and removed in the other ends up removed.
func (s *AWSet[E]) Merge(other *AWSet[E]) {
	for e, tags := range other.removed {
		for tag := range tags {
			s.removeTag(e, tag)
		}
	}
	for e, tags := range other.live {
		for tag := range tags {
			s.Add(e, tag)
		}
	}
}

// Clone returns an independent copy of s.
func (s *AWSet[E]) Clone() *AWSet[E] {
	return &AWSet[E]{live: cloneTags(s.live), removed: cloneTags(s.removed)}
}

func has[E comparable](m map[E]map[Stamp]struct{}, e E, tag Stamp) bool {
	_, ok := m[e][tag]
	return ok
}

// insert adds tag under e, allocating lazily so the zero AWSet works.
func insert[E comparable](m map[E]map[Stamp]struct{}, e E, tag Stamp) map[E]map[Stamp]struct{} {
	if m == nil {
		m = make(map[E]map[Stamp]struct{})
	}
	tags := m[e]
	if tags == nil {
		tags = make(map[Stamp]struct{})
		m[e] = tags
	}
	tags[tag] = struct{}{}
	return m
}

func sortedTags(tags map[Stamp]struct{}) []Stamp {
	out := make([]Stamp, 0, len(tags))
	for tag := range tags {
		out = append(out, tag)
	}
	slices.SortFunc(out, Compare)
	return out
}

func cloneTags[E comparable](m map[E]map[Stamp]struct{}) map[E]map[Stamp]struct{} {
	if m == nil {
		return nil
	}
	out := make(map[E]map[Stamp]struct{}, len(m))
	for e, tags := range m {
		c := make(map[Stamp]struct{}, len(tags))
		for tag := range tags {
			c[tag] = struct{}{}
		}
		out[e] = c
	}
	return out
}
