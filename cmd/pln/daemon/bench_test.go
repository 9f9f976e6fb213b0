package daemon

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
	"github.com/pln-mesh/pln/reducers"
	bolt "go.etcd.io/bbolt"
)

// Replay benchmarks run on one data directory of a million ops, built once
// per test binary (it takes a while) and removed by TestMain.

func TestMain(m *testing.M) {
	if spec := os.Getenv(childNodeEnv); spec != "" {
		os.Exit(runChildNode(spec))
	}
	dir, err := os.MkdirTemp("", "pln-wasm-cache-")
	if err != nil {
		panic(err)
	}
	sharedWasmCache = dir
	code := m.Run()
	if replay1M.dir != "" {
		os.RemoveAll(replay1M.dir)
	}
	os.RemoveAll(sharedWasmCache)
	os.Exit(code)
}

// sharedWasmCache is one compilation cache for every node of every test:
// the Go guest is compiled once per test binary, not once per node.
var sharedWasmCache string

const (
	replayOps    = 1_000_000
	replayNodes  = 1000
	replayBatch  = 10_000
	replayClaims = 100 // one claim by the log's node every replayOps/replayClaims ops
)

var replay1M struct {
	once   sync.Once
	dir    string
	newest oplog.HLC
	err    error
}

// replayFixture returns a data directory whose log holds a genesis, a grant
// for each of 1000 nodes, a seed, and load reports from all of them (with a
// few claims by the log's node) up to a million ops. Only the membership ops
// are signed: a node's own store is trusted on replay (ReadLog does not
// verify a directory), and a million signatures would take minutes.
func replayFixture(b *testing.B) (string, oplog.HLC) {
	replay1M.once.Do(func() {
		start := time.Now()
		replay1M.dir, replay1M.newest, replay1M.err = buildReplayStore()
		b.Logf("built a store of %d ops in %s", replayOps, time.Since(start).Round(time.Millisecond))
	})
	if replay1M.err != nil {
		b.Fatal(replay1M.err)
	}
	return replay1M.dir, replay1M.newest
}

func buildReplayStore() (dir string, newest oplog.HLC, err error) {
	dir, err = os.MkdirTemp("", "pln-replay-bench-")
	if err != nil {
		return "", 0, err
	}
	opts := store.DefaultOptions()
	opts.NoSync = true
	st, err := store.Open(filepath.Join(dir, StoreFile), opts)
	if err != nil {
		return dir, 0, err
	}
	defer st.Close()

	seeded := func(i int) ed25519.PrivateKey {
		var seed [ed25519.SeedSize]byte
		binary.BigEndian.PutUint64(seed[:], uint64(i)+1)
		return ed25519.NewKeyFromSeed(seed[:])
	}
	root := seeded(1 << 40)
	cluster := oplog.ClusterOf(oplog.KeyOf(root))
	nodes := make([]oplog.Key, replayNodes)
	for i := range nodes {
		nodes[i] = oplog.KeyOf(seeded(i))
	}
	self := nodes[0]
	if err := st.SetMeta(metaCluster, cluster[:]); err != nil {
		return dir, 0, err
	}
	if err := st.SetMeta(metaNode, self[:]); err != nil {
		return dir, 0, err
	}

	hlc := oplog.HLCAt(testEpoch)
	tick := func() oplog.HLC { hlc++; return hlc }
	batch := make([]*oplog.Op, 0, replayBatch)
	count := 0
	add := func(op *oplog.Op) error {
		batch = append(batch, op)
		count++
		if len(batch) == replayBatch {
			if _, err := st.Append(batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
		return nil
	}
	signed := func(b reducers.Body) error {
		op, err := signBody(cluster, root, tick(), b)
		if err != nil {
			return err
		}
		return add(op)
	}
	unsigned := func(author oplog.Key, b reducers.Body) error {
		body, err := reducers.EncodeBody(b)
		if err != nil {
			return err
		}
		op := &oplog.Op{V: oplog.Version, Kind: reducers.KindOf(b), Author: author, HLC: tick(), Body: body}
		fill := sha512.Sum512(append(author[:], body...))
		copy(op.Sig[:], fill[:])
		return add(op)
	}

	if err := signed(&reducers.Genesis{Name: "bench", Root: oplog.KeyOf(root), Params: reducers.DefaultParams()}); err != nil {
		return dir, 0, err
	}
	for i, k := range nodes {
		if err := signed(&reducers.Grant{Subject: k, Tier: reducers.TierMember, Props: map[string]string{"name": fmt.Sprintf("n%04d", i)}}); err != nil {
			return dir, 0, err
		}
	}
	web := digestOf("web")
	if err := signed(&reducers.Seed{Name: "web", Kind: reducers.SeedWASM, Digest: web, MinReplicas: 3, MaxReplicas: 3}); err != nil {
		return dir, 0, err
	}
	for j := 0; count < replayOps; j++ {
		var err error
		if j%(replayOps/replayClaims) == 0 {
			err = unsigned(self, &reducers.Claim{Node: self, Seed: "web", Digest: web, State: reducers.ClaimReady, Seq: uint64(count)})
		} else {
			k := nodes[j%replayNodes]
			err = unsigned(k, &reducers.Load{Node: k, CPUMilli: 4000, CPUUsedMilli: int64(j % 4000), MemBytes: 8 << 30,
				MemUsedBytes: int64(j%8) << 30, InFlight: int64(j % 16), Coord: reducers.Coord{X: int64(j % 997), Y: int64(j % 991)}})
		}
		if err != nil {
			return dir, 0, err
		}
	}
	if len(batch) > 0 {
		if _, err := st.Append(batch...); err != nil {
			return dir, 0, err
		}
	}
	return dir, hlc, nil
}

// BenchmarkReplay1M is 'pln replay DIR' on a million ops: read the store in
// arrival order, decode every op, and fold; with /check, also recompute the
// node's claims. Target: ≤ 3 s per replay on 2 cores.
func BenchmarkReplay1M(b *testing.B) {
	dir, newest := replayFixture(b)
	for _, check := range []bool{false, true} {
		name := "read+fold"
		if check {
			name += "+check"
		}
		b.Run(name, func(b *testing.B) {
			var read, fold, checking time.Duration
			for b.Loop() {
				t0 := time.Now()
				src, err := ReadLog(dir, false)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				v := reducers.Fold(src.Cluster, src.Ops, newest)
				t2 := time.Now()
				if check {
					if r := reducers.CheckClaims(src.Cluster, src.Node, src.Ops); r.Claims != replayClaims {
						b.Fatalf("checked %d claims, want %d", r.Claims, replayClaims)
					}
				}
				read, fold, checking = read+t1.Sub(t0), fold+t2.Sub(t1), checking+time.Since(t2)
				if len(src.Ops) != replayOps || len(v.Loads) != replayNodes || len(v.LiveNodes(newest)) != replayNodes {
					b.Fatalf("replayed %d ops to %d loads, %d live", len(src.Ops), len(v.Loads), len(v.LiveNodes(newest)))
				}
			}
			b.ReportMetric(float64(replayOps)*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(read.Seconds()/float64(b.N), "read-s/op")
			b.ReportMetric(fold.Seconds()/float64(b.N), "fold-s/op")
			if check {
				b.ReportMetric(checking.Seconds()/float64(b.N), "check-s/op")
			}
		})
	}
}

// BenchmarkFloorBoltScan1M is the floor under BenchmarkReplay1M: bare bbolt
// walking the same file's arrival bucket, no decoding, no folding.
func BenchmarkFloorBoltScan1M(b *testing.B) {
	dir, _ := replayFixture(b)
	db, err := bolt.Open(filepath.Join(dir, StoreFile), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	arrival := []byte("arrival") // the store's file format (oplog/store/store.go)
	for b.Loop() {
		var n, size int
		err := db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(arrival).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				n, size = n+1, size+len(v)
			}
			return nil
		})
		if err != nil || n != replayOps {
			b.Fatalf("scanned %d ops: %v", n, err)
		}
	}
	b.ReportMetric(float64(replayOps)*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkAuthorGrant is 'pln grant' inside a node: sign, check against the
// view, and append durably. Every grant makes the next view refold the whole
// membership, so the cost grows with the cluster: members=N runs on a node
// with N to N+authorRestart granted keys (a fresh node every authorRestart
// ops, set up off the clock). nosync shows what is not the disk.
func BenchmarkAuthorGrant(b *testing.B) {
	for _, members := range []int{0, 1000} {
		for _, noSync := range []bool{false, true} {
			name := fmt.Sprintf("members=%d/fsync", members)
			if noSync {
				name = fmt.Sprintf("members=%d/nosync", members)
			}
			b.Run(name, func(b *testing.B) {
				var subject oplog.Key
				i := uint64(0)
				grant := func() *reducers.Grant {
					i++
					binary.BigEndian.PutUint64(subject[:], i)
					return &reducers.Grant{Subject: subject, Tier: reducers.TierMember}
				}
				fresh := func() *Node {
					n, err := Init(Config{Dir: b.TempDir(), NoSync: noSync}, InitOptions{Name: "bench"})
					if err != nil {
						b.Fatal(err)
					}
					var existing []*oplog.Op
					for range members {
						op, err := signBody(n.Cluster(), n.key, n.clock.Now(), grant())
						if err != nil {
							b.Fatal(err)
						}
						existing = append(existing, op)
					}
					if _, err := n.Ingest(existing...); err != nil {
						b.Fatal(err)
					}
					n.View()
					return n
				}
				n := fresh()
				authored := 0
				for b.Loop() {
					if authored == authorRestart {
						b.StopTimer()
						n.Close()
						n, authored = fresh(), 0
						b.StartTimer()
					}
					if _, err := n.Author(grant()); err != nil {
						b.Fatal(err)
					}
					authored++
				}
				if got := len(n.View().Members); got != members+authored+2 {
					b.Fatalf("%d members after %d grants on %d", got, authored, members)
				}
				n.Close()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// authorRestart bounds how far BenchmarkAuthorGrant's cluster grows.
const authorRestart = 256
