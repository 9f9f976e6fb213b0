// Package crdt holds the convergent building blocks the reducers fold ops
// into: last-writer-wins and first-writer-wins maps, an add-wins set and a
// max register.
//
// Every type here is a state-based CRDT. A replica's state only ever moves up
// a join semilattice, and Merge computes the join of two states. Merge is
//
//   - commutative: a.Merge(b) and b.Merge(a) reach the same state,
//   - associative: the grouping of merges does not matter,
//   - idempotent: merging a state into itself, or merging twice, changes
//     nothing.
//
// Together these laws are what lets every node fold the same set of ops, in
// whatever order they arrived, duplicated or split across partitions, into
// the same view. The single-update methods (Set, Add, Remove) are merges of a
// one-entry state, so the laws cover them too: any permutation of one set of
// updates yields one state. laws_test.go checks all of this on many thousands
// of seeded random cases.
//
// Conflicts are resolved by Stamp, the position of the op that made the
// update: its HLC and then its op ID. Stamps are unique per op, so two
// updates with the same stamp are the same update carrying the same value.
// Callers must keep that promise — it is the only precondition of the laws.
// The package does not import oplog; the reducers convert an op's HLC and ID
// into a Stamp.
//
// Nothing here does I/O, reads a clock or draws random numbers, and no
// result depends on Go map iteration order: methods that list contents take
// a comparison function and return sorted slices. Range is the one exception
// and says so. The types are not safe for concurrent use; the fold owns them.
package crdt
