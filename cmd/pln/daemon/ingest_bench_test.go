package daemon

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// ingestBatch is the batch size of the ingest benchmarks: what one push
// burst or one sync round hands the node.
const ingestBatch = 1000

// ingestPool signs load ops from 100 keys, more as the benchmark asks.
type ingestPool struct {
	cluster oplog.ClusterID
	keys    []ed25519.PrivateKey
	ops     []*oplog.Op
}

func newIngestPool(cluster oplog.ClusterID) *ingestPool {
	p := &ingestPool{cluster: cluster}
	for i := range 100 {
		seed := sha256.Sum256(binary.BigEndian.AppendUint32([]byte("ingest"), uint32(i)))
		p.keys = append(p.keys, ed25519.NewKeyFromSeed(seed[:]))
	}
	return p
}

// batch returns the i-th batch of distinct ops, signing it on first use.
func (p *ingestPool) batch(tb testing.TB, i int) []*oplog.Op {
	for len(p.ops) < (i+1)*ingestBatch {
		j := len(p.ops)
		k := p.keys[j%len(p.keys)]
		op, err := signBody(p.cluster, k, oplog.NewHLC(testEpoch.UnixMilli()+int64(j), 0), &reducers.Load{Node: oplog.KeyOf(k), InFlight: int64(j)})
		if err != nil {
			tb.Fatal(err)
		}
		p.ops = append(p.ops, op)
	}
	return p.ops[i*ingestBatch : (i+1)*ingestBatch]
}

// BenchmarkIngestBatch1000 is the door a node takes ops in by: verify every
// signature (on every core), store the batch durably in one transaction, and
// fold it. Target: close to the ed25519 verification rate.
func BenchmarkIngestBatch1000(b *testing.B) {
	n := initNode(b, newFakeClock(), "bench")
	defer n.Close()
	pool := newIngestPool(n.cluster)
	pool.batch(b, 0)
	i := 0
	for b.Loop() {
		b.StopTimer()
		ops := pool.batch(b, i)
		b.StartTimer()
		if _, err := n.Ingest(ops...); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i*ingestBatch)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkFloorVerify1000 is its floor: bare crypto/ed25519 checking the
// same signatures one after another on one core.
func BenchmarkFloorVerify1000(b *testing.B) {
	pool := newIngestPool(oplog.ClusterID{})
	ops := pool.batch(b, 0)
	msgs := make([][]byte, len(ops))
	for i, op := range ops {
		msgs[i] = append(append([]byte("pln/op/v1"), pool.cluster[:]...), unsignedOf(op)...)
	}
	for b.Loop() {
		for i, op := range ops {
			if !ed25519.Verify(op.Author[:], msgs[i], op.Sig[:]) {
				b.Fatal("bad signature")
			}
		}
	}
	b.ReportMetric(float64(b.N*len(ops))/b.Elapsed().Seconds(), "ops/s")
}

// unsignedOf is the canonical encoding of an op's signed fields.
func unsignedOf(op *oplog.Op) []byte {
	b := op.Bytes()
	u := append([]byte{0x85}, b[1:len(b)-2-ed25519.SignatureSize]...)
	return u
}
