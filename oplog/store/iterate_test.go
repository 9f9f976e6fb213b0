package store

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// Ops with random HLCs, arriving in random batches with repeats: arrival order
// is first-seen order, total order is (hlc, author, ID), and both survive more
// than one walk chunk.
func TestArrivalAndTotalOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := openTemp(t, true)
	var ops []*oplog.Op
	for i := range 3*walkChunk + 17 {
		// Few distinct HLCs, so ties on HLC and author are common.
		ops = append(ops, fakeOp(rng.IntN(3), oplog.HLC(rng.IntN(50)), []byte{byte(i), byte(i >> 8)}))
	}
	var firstSeen []oplog.ID
	seen := map[oplog.ID]bool{}
	for lo := 0; lo < len(ops); {
		hi := min(len(ops), lo+1+rng.IntN(40))
		batch := slices.Clone(ops[lo:hi])
		batch = append(batch, ops[rng.IntN(hi)]) // a repeat, old or new
		mustAppend(t, s, batch...)
		for _, op := range batch {
			if !seen[op.ID()] {
				seen[op.ID()] = true
				firstSeen = append(firstSeen, op.ID())
			}
		}
		lo = hi
	}

	ids, seqs := arrivalIDs(t, s, 1)
	if !slices.Equal(ids, firstSeen) {
		t.Fatal("ForEachArrival order differs from first-seen order")
	}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("arrival #%d has seq %d", i, seq)
		}
	}
	if tail, _ := arrivalIDs(t, s, 600); !slices.Equal(tail, firstSeen[599:]) {
		t.Error("ForEachArrival(600) is not the suffix from seq 600")
	}
	if tail, _ := arrivalIDs(t, s, uint64(len(ops)+5)); len(tail) != 0 {
		t.Error("ForEachArrival past the end visited ops")
	}

	want := slices.Clone(ops)
	slices.SortFunc(want, func(a, b *oplog.Op) int { return oplog.Compare(a, b, a.ID(), b.ID()) })
	var got []oplog.ID
	err := s.ForEachOrdered(func(seq uint64, op *oplog.Op) error {
		if seqs[seq-1] != seq || ids[seq-1] != op.ID() {
			t.Fatalf("ForEachOrdered gave op %s with seq %d, but it arrived as seq %d", op.ID().Short(), seq, slices.Index(ids, op.ID())+1)
		}
		got = append(got, op.ID())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, idsOf(want)) {
		t.Fatal("ForEachOrdered is not (hlc, author, ID) order")
	}
}

func TestWalksStopAtCallbackError(t *testing.T) {
	s := openTemp(t, true)
	mustAppend(t, s, manyOps(walkChunk+10)...)
	stop := errors.New("stop")
	for name, walk := range map[string]func(fn func() error) error{
		"arrival": func(fn func() error) error {
			return s.ForEachArrival(1, func(uint64, *oplog.Op) error { return fn() })
		},
		"ordered": func(fn func() error) error {
			return s.ForEachOrdered(func(uint64, *oplog.Op) error { return fn() })
		},
		"sync": func(fn func() error) error { return s.ForEachSync(func(*oplog.Op) error { return fn() }) },
	} {
		calls := 0
		err := walk(func() error {
			if calls++; calls == 3 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 3 {
			t.Errorf("%s: walk returned %v after %d calls, want the callback's error after 3", name, err, calls)
		}
	}
}

// A callback may write to the store: walks do not hold a transaction while
// calling back, so this must not deadlock.
func TestWalkCallbackMayAppend(t *testing.T) {
	s := openTemp(t, true)
	ops := manyOps(2 * walkChunk)
	mustAppend(t, s, ops[:walkChunk]...)
	next := walkChunk
	err := s.ForEachOrdered(func(_ uint64, op *oplog.Op) error {
		if next < len(ops) {
			mustAppend(t, s, ops[next])
			next++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := mustCount(t, s); n != 2*walkChunk {
		t.Errorf("Count = %d, want %d", n, 2*walkChunk)
	}
}

// A stored value that does not decode is reported as ErrCorrupt naming the
// file and seq, by every reader, without a panic.
func TestDamagedValueIsErrCorrupt(t *testing.T) {
	s := openTemp(t, true)
	ops := manyOps(5)
	mustAppend(t, s, ops...)
	path := s.Path()
	s.Close()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrival).Put(be64(3), []byte("\x86\x01\x07garbage"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nop := func(uint64, *oplog.Op) error { return nil }
	_, _, getErr := s.Get(ops[2].ID())
	for name, err := range map[string]error{
		"ForEachArrival": s.ForEachArrival(1, nop),
		"ForEachOrdered": s.ForEachOrdered(nop),
		"ForEachSync":    s.ForEachSync(func(*oplog.Op) error { return nil }),
		"Get":            getErr,
		"Export":         func() error { _, err := s.Export(&strings.Builder{}, LogHeader{}); return err }(),
	} {
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "seq 3") {
			t.Errorf("%s: error %v, want ErrCorrupt naming %s and seq 3", name, err, path)
		}
	}
	// The ops around it are still readable.
	if _, _, err := s.Get(ops[3].ID()); err != nil {
		t.Errorf("Get of an intact op: %v", err)
	}
}
