package store

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

func TestAppendIsIdempotent(t *testing.T) {
	s := openTemp(t, false)
	a, b, c := sign(t, 1, 10, []byte{1}), sign(t, 1, 11, []byte{2}), sign(t, 2, 9, []byte{3})

	if got := mustAppend(t, s, a, b); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("first append added %v, want [true true]", got)
	}
	// Across batches and within one: b and a are known, c comes twice.
	if got := mustAppend(t, s, b, c, c, a); !slices.Equal(got, []bool{false, true, false, false}) {
		t.Fatalf("second append added %v, want [false true false false]", got)
	}
	if got := mustAppend(t, s, a); !slices.Equal(got, []bool{false}) {
		t.Fatalf("third append added %v, want [false]", got)
	}
	if n := mustCount(t, s); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
	if n, _ := s.LastSeq(); n != 3 {
		t.Fatalf("LastSeq = %d, want 3", n)
	}
	for want, op := range []*oplog.Op{a, b, c} {
		got, seq, err := s.Get(op.ID())
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(want+1) || got.ID() != op.ID() || got.HLC != op.HLC {
			t.Errorf("Get(%s) = seq %d, op %s; want seq %d, op %s", op.ID().Short(), seq, got.ID().Short(), want+1, op.ID().Short())
		}
		if ok, err := s.Has(op.ID()); !ok || err != nil {
			t.Errorf("Has(%s) = %v, %v; want true", op.ID().Short(), ok, err)
		}
	}
	missing := sign(t, 3, 1, nil)
	if ok, _ := s.Has(missing.ID()); ok {
		t.Error("Has(unknown) = true")
	}
	if _, _, err := s.Get(missing.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
	}
	if got, err := s.Append(); err != nil || len(got) != 0 {
		t.Errorf("Append() = %v, %v; want empty, nil", got, err)
	}
}

func TestAppendRefusesMalformedOps(t *testing.T) {
	s := openTemp(t, false)
	good := sign(t, 1, 10, nil)
	nilBody := *sign(t, 1, 11, nil)
	nilBody.Body = nil
	badKind := *sign(t, 1, 12, nil)
	badKind.Kind = 99
	for name, bad := range map[string]*oplog.Op{"nil op": nil, "nil body": &nilBody, "bad kind": &badKind} {
		if _, err := s.Append(good, bad); err == nil || !strings.Contains(err.Error(), "op 2 of 2") {
			t.Errorf("%s: Append error = %v, want one naming op 2 of 2", name, err)
		}
	}
	if n := mustCount(t, s); n != 0 {
		t.Errorf("Count = %d after refused appends, want 0", n)
	}
}

func TestStorePersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ops := manyOps(20)
	mustAppend(t, s, ops[:12]...)
	mustAppend(t, s, ops[10:]...)
	if err := s.SetMeta("cluster", testCluster[:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := mustCount(t, s); n != 20 {
		t.Fatalf("Count after reopen = %d, want 20", n)
	}
	ids, seqs := arrivalIDs(t, s, 1)
	if !slices.Equal(ids, idsOf(ops)) {
		t.Error("arrival order changed across reopen")
	}
	if seqs[0] != 1 || seqs[19] != 20 {
		t.Errorf("seqs run %d..%d, want 1..20", seqs[0], seqs[19])
	}
	if v, ok, err := s.Meta("cluster"); err != nil || !ok || string(v) != string(testCluster[:]) {
		t.Errorf("Meta(cluster) = %x, %v, %v; want the cluster ID", v, ok, err)
	}
	if got := mustAppend(t, s, manyOps(21)[20]); !got[0] {
		t.Error("a new op after reopen was not added")
	}
	if n, _ := s.LastSeq(); n != 21 {
		t.Errorf("LastSeq = %d, want 21", n)
	}
}

func TestMeta(t *testing.T) {
	s := openTemp(t, false)
	if _, ok, err := s.Meta("node-key"); ok || err != nil {
		t.Fatalf("Meta of an unset key = %v, %v; want false, nil", ok, err)
	}
	if err := s.SetMeta("node-key", []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta("node-key", []byte("k2")); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Meta("node-key"); !ok || string(v) != "k2" {
		t.Errorf("Meta(node-key) = %q, %v; want k2", v, ok)
	}
	for _, key := range []string{"", "store.ops", "store.format"} {
		if err := s.SetMeta(key, []byte("x")); err == nil {
			t.Errorf("SetMeta(%q) succeeded; reserved keys must be refused", key)
		}
	}
}

// Many goroutines appending overlapping batches: every op is added exactly
// once, seqs run 1..N with no gaps, and each call's new ops are contiguous.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	s := openTemp(t, false)
	ops := manyOps(400)
	const workers = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		added = map[oplog.ID]int{}
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				// Overlapping windows so that calls race on the same ops.
				lo := (w*20 + i*13) % 380
				batch := ops[lo : lo+20]
				got, err := s.Append(batch...)
				if err != nil {
					t.Error(err)
					return
				}
				var prev uint64
				for j, ok := range got {
					if !ok {
						continue
					}
					_, seq, err := s.Get(batch[j].ID())
					if err != nil {
						t.Error(err)
						return
					}
					if prev != 0 && seq != prev+1 {
						t.Errorf("one call's new ops got seqs %d then %d: not contiguous", prev, seq)
					}
					prev = seq
					mu.Lock()
					added[batch[j].ID()]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	n := mustCount(t, s)
	if n != len(added) {
		t.Fatalf("Count = %d but %d ops reported added", n, len(added))
	}
	for id, times := range added {
		if times != 1 {
			t.Errorf("op %s reported added %d times", id.Short(), times)
		}
	}
	_, seqs := arrivalIDs(t, s, 1)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("seq #%d is %d: gaps in arrival", i, seq)
		}
	}
}
