package store

import (
	"errors"
	"slices"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

func syncIDs(t *testing.T, s *Store) []oplog.ID {
	t.Helper()
	var ids []oplog.ID
	if err := s.ForEachSync(func(op *oplog.Op) error { ids = append(ids, op.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestSupersedeThenCompact(t *testing.T) {
	s := openTemp(t, false)
	ops := manyOps(10)
	mustAppend(t, s, ops...)
	ids := idsOf(ops)
	unknown := sign(t, 2, 1, []byte("never stored")).ID()

	if err := s.MarkSuperseded(100, ids[0], ids[1], ids[2], ids[3], unknown); err != nil {
		t.Fatal(err)
	}
	// Marking again: an op keeps the earliest HLC it was marked at.
	if err := s.MarkSuperseded(50, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSuperseded(200, ids[1], ids[1]); err != nil {
		t.Fatal(err)
	}
	if n := mustSyncCount(t, s); n != 6 {
		t.Errorf("SyncCount = %d, want 6", n)
	}
	if got := syncIDs(t, s); !slices.Equal(got, ids[4:]) {
		t.Errorf("ForEachSync visits %d ops, want the 6 not superseded", len(got))
	}
	if got, _ := arrivalIDs(t, s, 1); !slices.Equal(got, ids) || mustCount(t, s) != 10 {
		t.Error("superseded ops must stay in arrival order and Count until compacted")
	}
	if ok, _ := s.Has(unknown); ok {
		t.Error("MarkSuperseded stored an unknown op")
	}

	// Cutoff 100: only the op marked at 50 is older.
	if n, err := s.Compact(100); err != nil || n != 1 {
		t.Fatalf("Compact(100) = %d, %v; want 1", n, err)
	}
	if _, _, err := s.Get(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(compacted op) error = %v, want ErrNotFound", err)
	}
	if n, err := s.Compact(101); err != nil || n != 3 {
		t.Fatalf("Compact(101) = %d, %v; want 3", n, err)
	}
	if n, err := s.Compact(1 << 40); err != nil || n != 0 {
		t.Fatalf("Compact again = %d, %v; want 0", n, err)
	}
	if c, sc := mustCount(t, s), mustSyncCount(t, s); c != 6 || sc != 6 {
		t.Errorf("after compaction Count, SyncCount = %d, %d; want 6, 6", c, sc)
	}
	var ordered []oplog.ID
	s.ForEachOrdered(func(_ uint64, op *oplog.Op) error { ordered = append(ordered, op.ID()); return nil })
	arrival, seqs := arrivalIDs(t, s, 1)
	if !slices.Equal(ordered, ids[4:]) || !slices.Equal(arrival, ids[4:]) {
		t.Error("compacted ops still visible to ForEachOrdered or ForEachArrival")
	}
	if seqs[0] != 5 {
		t.Errorf("first remaining seq = %d, want 5 (seqs keep their numbers)", seqs[0])
	}

	// Seqs are never reused, and a compacted op that comes back is new again.
	if got := mustAppend(t, s, manyOps(11)[10], ops[0]); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("append after compaction added %v", got)
	}
	if _, seq, _ := s.Get(ids[0]); seq != 12 {
		t.Errorf("returning op got seq %d, want 12", seq)
	}
	if n, _ := s.LastSeq(); n != 12 {
		t.Errorf("LastSeq = %d, want 12", n)
	}
}

// More superseded ops than one compaction transaction takes.
func TestCompactSpansTransactions(t *testing.T) {
	s := openTemp(t, true)
	n := compactChunk*2 + 100
	ops := fakeOps(n + 50)
	mustAppend(t, s, ops...)
	if err := s.MarkSuperseded(10, idsOf(ops[:n])...); err != nil {
		t.Fatal(err)
	}
	removed, err := s.Compact(11)
	if err != nil || removed != n {
		t.Fatalf("Compact = %d, %v; want %d", removed, err, n)
	}
	if c, sc := mustCount(t, s), mustSyncCount(t, s); c != 50 || sc != 50 {
		t.Errorf("Count, SyncCount = %d, %d; want 50, 50", c, sc)
	}
	if got, _ := arrivalIDs(t, s, 1); !slices.Equal(got, idsOf(ops[n:])) {
		t.Error("the wrong ops survived")
	}
}
