package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// Test fixtures: deterministic keys, a cluster, signed ops and temp stores.

// testKeys are fixed signing keys, derived once: derivation costs as much as
// a signature.
var testKeys = func() (keys [4]ed25519.PrivateKey) {
	for i := range keys {
		keys[i] = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
	}
	return keys
}()

// testKey returns the i-th fixed signing key.
func testKey(i int) ed25519.PrivateKey { return testKeys[i] }

var testCluster = oplog.ClusterOf(oplog.KeyOf(testKey(0)))

// sign makes one op by author key i at hlc; body makes ops with equal HLC and
// author distinct.
func sign(t testing.TB, key int, hlc oplog.HLC, body []byte) *oplog.Op {
	t.Helper()
	if body == nil {
		body = []byte{}
	}
	op, err := oplog.Sign(testCluster, testKey(key), oplog.KindLoad, hlc, body)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// fakeOp builds an op by author key i without signing it: the store never
// checks signatures, and signing thousands of ops is slow under -race. Its
// signature bytes are filler of the right size.
func fakeOp(key int, hlc oplog.HLC, body []byte) *oplog.Op {
	op := &oplog.Op{V: oplog.Version, Kind: oplog.KindLoad, Author: oplog.KeyOf(testKey(key)), HLC: hlc, Body: bytes.Clone(body)}
	if op.Body == nil {
		op.Body = []byte{}
	}
	fill := sha512.Sum512(append(op.Author[:], body...))
	copy(op.Sig[:], fill[:])
	return op
}

// nthOp is the i-th op of the fixed sequence that benchmarks and big tests
// draw from: three authors, increasing HLCs, a 100-byte body.
func nthOp(i int) *oplog.Op {
	body := make([]byte, 100)
	binary.BigEndian.PutUint64(body, uint64(i))
	op, err := oplog.Sign(testCluster, testKey(i%3), oplog.KindLoad, oplog.NewHLC(1_700_000_000_000+int64(i), 0), body)
	if err != nil {
		panic(err)
	}
	return op
}

var opCache struct {
	sync.Mutex
	ops []*oplog.Op
}

// fakeOps returns n unsigned ops in the shape of manyOps.
func fakeOps(n int) []*oplog.Op {
	ops := make([]*oplog.Op, n)
	for i := range ops {
		body := make([]byte, 100)
		binary.BigEndian.PutUint64(body, uint64(i))
		ops[i] = fakeOp(i%3, oplog.NewHLC(1_700_000_000_000+int64(i), 0), body)
	}
	return ops
}

// manyOps returns the first n ops of the fixed sequence. Signing is slow, so
// they are made once per test binary, on every CPU.
func manyOps(n int) []*oplog.Op {
	opCache.Lock()
	defer opCache.Unlock()
	if have := len(opCache.ops); have < n {
		more := make([]*oplog.Op, n-have)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(more); i += workers {
					more[i] = nthOp(have + i)
				}
			})
		}
		wg.Wait()
		opCache.ops = append(opCache.ops, more...)
	}
	return opCache.ops[:n]
}

// openTemp opens a new store in a fresh temp dir and closes it at cleanup.
func openTemp(t testing.TB, noSync bool) *Store {
	t.Helper()
	opts := DefaultOptions()
	opts.NoSync = noSync
	s, err := Open(filepath.Join(t.TempDir(), "node.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Store, ops ...*oplog.Op) []bool {
	t.Helper()
	added, err := s.Append(ops...)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func mustCount(t testing.TB, s *Store) int {
	t.Helper()
	n, err := s.Count()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustSyncCount(t testing.TB, s *Store) int {
	t.Helper()
	n, err := s.SyncCount()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// arrivalIDs lists the stored ops' IDs in arrival order, with their seqs.
func arrivalIDs(t testing.TB, s *Store, from uint64) ([]oplog.ID, []uint64) {
	t.Helper()
	var ids []oplog.ID
	var seqs []uint64
	err := s.ForEachArrival(from, func(seq uint64, op *oplog.Op) error {
		ids = append(ids, op.ID())
		seqs = append(seqs, seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, seqs
}

func idsOf(ops []*oplog.Op) []oplog.ID {
	ids := make([]oplog.ID, len(ops))
	for i, op := range ops {
		ids[i] = op.ID()
	}
	return ids
}
