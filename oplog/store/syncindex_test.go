package store

import (
	"crypto/sha256"
	"encoding/binary"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// randomItem draws an item whose HLC comes from a small range, so that equal
// HLCs are common and order falls to the ID bytes.
func randomItem(rng *rand.Rand, hlcs int) SyncItem {
	var id oplog.ID
	binary.LittleEndian.PutUint64(id[:], rng.Uint64())
	id = sha256.Sum256(id[:8])
	return SyncItem{HLC: oplog.HLC(1000 + rng.IntN(hlcs)), ID: id}
}

// naiveSum adds IDs as 256-bit little-endian integers with math/big.
func naiveSum(items []SyncItem) [32]byte {
	mod := new(big.Int).Lsh(big.NewInt(1), 256)
	total := new(big.Int)
	for _, it := range items {
		be := slices.Clone(it.ID[:])
		slices.Reverse(be)
		total.Add(total, new(big.Int).SetBytes(be))
	}
	total.Mod(total, mod)
	var out [32]byte
	total.FillBytes(out[:])
	slices.Reverse(out[:])
	return out
}

func indexItems(x *SyncIndex) []SyncItem {
	items := make([]SyncItem, x.Len())
	for i := range items {
		items[i].HLC, items[i].ID = x.At(i)
	}
	return items
}

// checkIndex compares every query the index answers with the reference.
func checkIndex(t *testing.T, rng *rand.Rand, x *SyncIndex, ref []SyncItem) {
	t.Helper()
	if x.Len() != len(ref) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(ref))
	}
	if got := indexItems(x); !slices.Equal(got, ref) {
		t.Fatalf("items differ from the reference (%d items)", len(ref))
	}
	for range 50 {
		// A probe between items, and one that is an ID prefix padded with zeros.
		probe := randomItem(rng, 200)
		if rng.IntN(2) == 0 {
			clear(probe.ID[rng.IntN(4):])
		}
		want, _ := slices.BinarySearchFunc(ref, probe, compareSyncItems)
		if got := x.Rank(probe.HLC, probe.ID); got != want {
			t.Fatalf("Rank(%v) = %d, want %d", probe, got, want)
		}
		if len(ref) > 0 {
			it := ref[rng.IntN(len(ref))]
			if r := x.Rank(it.HLC, it.ID); ref[r] != it {
				t.Fatalf("Rank of a member is %d, which holds another item", r)
			}
			if !x.Has(it) {
				t.Fatal("Has(member) = false")
			}
		}
		i := rng.IntN(len(ref) + 1)
		j := i + rng.IntN(len(ref)-i+1)
		if got, want := x.Sum(i, j), naiveSum(ref[i:j]); got != want {
			t.Fatalf("Sum(%d, %d) differs from the naive sum", i, j)
		}
	}
	if got, want := x.Sum(0, len(ref)), naiveSum(ref); got != want {
		t.Fatal("Sum of everything differs from the naive sum")
	}
}

// Random inserts (mostly at the end) and removals keep the index equal to a
// sorted slice, through chunk splits and merges; snapshots hold still while
// both sides keep changing.
func TestSyncIndexMatchesSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := NewSyncIndex()
	var ref []SyncItem
	type snap struct {
		x   *SyncIndex
		ref []SyncItem
	}
	var snaps []snap
	hlc := 2000
	for step := range 12_000 {
		var it SyncItem
		switch r := rng.IntN(10); {
		case r < 5: // the common case: a new op at the end of the log
			hlc += rng.IntN(2)
			it = randomItem(rng, 1)
			it.HLC = oplog.HLC(hlc)
		case r < 7:
			it = randomItem(rng, 200)
		case len(ref) > 0: // remove a member
			it = ref[rng.IntN(len(ref))]
		default:
			it = randomItem(rng, 200)
		}
		i, found := slices.BinarySearchFunc(ref, it, compareSyncItems)
		if found {
			if !x.Remove(it) {
				t.Fatalf("step %d: Remove of a member returned false", step)
			}
			if x.Remove(it) {
				t.Fatalf("step %d: second Remove returned true", step)
			}
			ref = slices.Delete(ref, i, i+1)
		} else {
			if x.Remove(it) {
				t.Fatalf("step %d: Remove of a stranger returned true", step)
			}
			if !x.Add(it) {
				t.Fatalf("step %d: Add of a new item returned false", step)
			}
			if x.Add(it) {
				t.Fatalf("step %d: second Add returned true", step)
			}
			ref = slices.Insert(ref, i, it)
		}
		if step%1500 == 0 {
			snaps = append(snaps, snap{x.Snapshot(), slices.Clone(ref)})
		}
		if step%1000 == 999 {
			checkIndex(t, rng, x, ref)
		}
	}
	// Drain most of it, so chunks empty and merge.
	for len(ref) > 100 {
		i := rng.IntN(len(ref))
		if !x.Remove(ref[i]) {
			t.Fatal("Remove of a member returned false")
		}
		ref = slices.Delete(ref, i, i+1)
	}
	checkIndex(t, rng, x, ref)
	for k, s := range snaps {
		checkIndex(t, rng, s.x, s.ref)
		// A snapshot is an index in its own right.
		it := randomItem(rng, 200)
		if s.x.Add(it) {
			s.ref = append(s.ref, it)
			slices.SortFunc(s.ref, compareSyncItems)
		}
		checkIndex(t, rng, s.x, s.ref)
		if k == 0 {
			checkIndex(t, rng, x, ref) // and writes to it never reach the original
		}
	}
}

// Items with one HLC order by ID bytes; HLC comes first.
func TestSyncIndexOrder(t *testing.T) {
	x := NewSyncIndex()
	a := SyncItem{HLC: 5, ID: oplog.ID{0xff}}
	b := SyncItem{HLC: 6, ID: oplog.ID{0x00, 0x01}}
	c := SyncItem{HLC: 6, ID: oplog.ID{0x00, 0x02}}
	d := SyncItem{HLC: 6, ID: oplog.ID{0x01}}
	for _, it := range []SyncItem{d, b, a, c} {
		x.Add(it)
	}
	if got := indexItems(x); !slices.Equal(got, []SyncItem{a, b, c, d}) {
		t.Fatalf("order %v", got)
	}
	if r := x.Rank(6, oplog.ID{0x00, 0x02}); r != 2 {
		t.Fatalf("Rank of c = %d, want 2", r)
	}
	if r := x.Rank(6, oplog.ID{0x01}); r != 3 {
		t.Fatalf("Rank of the prefix 01 = %d, want 3", r)
	}
	if r := x.Rank(7, oplog.ID{}); r != 4 {
		t.Fatalf("Rank past the end = %d, want 4", r)
	}
	if x.Sum(0, 0) != ([32]byte{}) {
		t.Fatal("empty sum is not zero")
	}
}

// The store keeps its index in step: Append adds, MarkSuperseded removes,
// Compact changes nothing, a compacted op appended again comes back, and
// reopening (read-write or read-only) rebuilds the same index.
func TestSyncIndexFollowsStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	opts := DefaultOptions()
	opts.NoSync = true
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Three authors and shared HLCs: store order (hlc, author, ID) is not
	// index order (hlc, ID).
	ops := make([]*oplog.Op, 3000)
	for i := range ops {
		body := make([]byte, 8)
		binary.BigEndian.PutUint64(body, uint64(i))
		ops[i] = fakeOp(i%3, oplog.NewHLC(1_700_000_000_000+int64(i/4), 0), body)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	for i := 0; i < len(ops); i += 500 {
		mustAppend(t, s, ops[i:i+500]...)
	}
	mustAppend(t, s, ops[:10]...) // repeats add nothing

	want := func(skip map[oplog.ID]bool) []SyncItem {
		var items []SyncItem
		for _, op := range ops {
			if !skip[op.ID()] {
				items = append(items, SyncItem{op.HLC, op.ID()})
			}
		}
		slices.SortFunc(items, compareSyncItems)
		return items
	}
	if got := indexItems(s.SyncIndex()); !slices.Equal(got, want(nil)) {
		t.Fatalf("after Append: %d items, want %d", len(got), len(ops))
	}

	gone := map[oplog.ID]bool{}
	var ids []oplog.ID
	for _, op := range ops[:700] {
		gone[op.ID()] = true
		ids = append(ids, op.ID())
	}
	ids = append(ids, oplog.ID{1, 2, 3}) // unknown: ignored
	if err := s.MarkSuperseded(oplog.NewHLC(1_800_000_000_000, 0), ids...); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSuperseded(oplog.NewHLC(1_700_000_000_000, 0), ids[:50]...); err != nil {
		t.Fatal(err) // marking again, earlier: still out, not removed twice
	}
	if got := indexItems(s.SyncIndex()); !slices.Equal(got, want(gone)) {
		t.Fatalf("after MarkSuperseded: %d items, want %d", len(got), len(ops)-len(gone))
	}
	if n := mustSyncCount(t, s); n != s.SyncIndex().Len() {
		t.Fatalf("SyncCount %d, index %d", n, s.SyncIndex().Len())
	}

	check := func(label string, s *Store, skip map[oplog.ID]bool) {
		t.Helper()
		if got := indexItems(s.SyncIndex()); !slices.Equal(got, want(skip)) {
			t.Fatalf("%s: index has %d items, want %d", label, len(got), len(want(skip)))
		}
	}
	s.Close()
	for _, ro := range []bool{false, true} {
		o := opts
		o.ReadOnly = ro
		s2, err := Open(path, o)
		if err != nil {
			t.Fatal(err)
		}
		check("reopened", s2, gone)
		s2.Close()
	}

	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Ops marked at the earlier HLC go; the rest wait for a later cutoff.
	if n, err := s.Compact(oplog.NewHLC(1_750_000_000_000, 0)); err != nil || n != 50 {
		t.Fatalf("Compact removed %d: %v", n, err)
	}
	check("after Compact", s, gone)
	// An op compacted away and appended again is new, and back in the set.
	if added := mustAppend(t, s, ops[0]); !added[0] {
		t.Fatal("compacted op not appended as new")
	}
	delete(gone, ops[0].ID())
	check("after re-Append", s, gone)
}

// A range sum over a million items costs what its chunk count says, not the
// item count: compare BenchmarkSyncIndexFloorSum1e6.
func BenchmarkSyncIndexSum1e6(b *testing.B) {
	x, _ := benchIndex(1_000_000)
	b.ResetTimer()
	for i := range b.N {
		x.Sum(i%1000, 1_000_000-i%1000)
	}
}

// Floor: adding up a million IDs one by one.
func BenchmarkSyncIndexFloorSum1e6(b *testing.B) {
	_, items := benchIndex(1_000_000)
	b.ResetTimer()
	for range b.N {
		var s sum256
		for k := range items {
			s.add(&items[k].ID)
		}
	}
}

// Inserting into a million-item index at random places, and at the end.
func BenchmarkSyncIndexAdd1e6(b *testing.B) {
	for _, where := range []string{"end", "random"} {
		b.Run(where, func(b *testing.B) {
			x, items := benchIndex(1_000_000)
			x = x.Snapshot()
			rng := rand.New(rand.NewPCG(5, 6))
			b.ResetTimer()
			for i := range b.N {
				it := randomItem(rng, 1)
				if where == "end" {
					it.HLC = items[len(items)-1].HLC + oplog.HLC(i+1)
				} else {
					it.HLC = items[rng.IntN(len(items))].HLC
				}
				x.Add(it)
			}
		})
	}
}

func benchIndex(n int) (*SyncIndex, []SyncItem) {
	items := make([]SyncItem, n)
	for i := range items {
		var seed [8]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		items[i] = SyncItem{HLC: oplog.NewHLC(1_700_000_000_000+int64(i), 0), ID: sha256.Sum256(seed[:])}
	}
	return newSyncIndexSorted(slices.Clone(items)), items
}
