package store

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// Each store benchmark sits beside a floor: bare bbolt doing the same I/O with
// no store logic, so the gap is what the store itself costs. Ops are signed
// once per test binary (manyOps) and reused.

const (
	benchBatch    = 1000
	benchScanSize = 100_000
)

func reportOpsPerSec(b *testing.B, ops int) {
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}

// One op per transaction, with real fsync: the latency of a CLI-authored op.
func BenchmarkAppendOne(b *testing.B) {
	ops := manyOps(b.N)
	s := openTemp(b, false)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Append(ops[i]); err != nil {
			b.Fatal(err)
		}
	}
	reportOpsPerSec(b, b.N)
}

// One op per Append from many goroutines: group commit shares the fsyncs.
func BenchmarkAppendOneParallel(b *testing.B) {
	ops := manyOps(b.N)
	s := openTemp(b, false)
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(ops[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOpsPerSec(b, b.N)
}

// A network batch of 1000 ops in one transaction, with real fsync.
func BenchmarkAppendBatch1000(b *testing.B) {
	ops := manyOps(b.N * benchBatch)
	s := openTemp(b, false)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Append(ops[i*benchBatch : (i+1)*benchBatch]...); err != nil {
			b.Fatal(err)
		}
	}
	reportOpsPerSec(b, b.N*benchBatch)
}

// Floor for AppendBatch1000: the same three puts per op, same sizes, one
// transaction of 1000 ops, real fsync, no dedup lookups or encoding.
func BenchmarkFloorBoltPutBatch1000(b *testing.B) {
	ops := manyOps(b.N * benchBatch)
	type row struct{ raw, order, id []byte }
	rows := make([]row, len(ops))
	for i, op := range ops {
		id, ok := op.ID(), oplog.OrderKey(op, op.ID())
		rows[i] = row{op.Bytes(), ok[:], id[:]}
	}
	db := openBenchBolt(b, false)
	b.ResetTimer()
	for i := range b.N {
		err := db.Update(func(tx *bolt.Tx) error {
			arrival, order, ids := tx.Bucket(bucketArrival), tx.Bucket(bucketOrder), tx.Bucket(bucketIDs)
			arrival.FillPercent = arrivalFill
			for j := i * benchBatch; j < (i+1)*benchBatch; j++ {
				seq := be64(uint64(j + 1))
				if err := arrival.Put(seq, rows[j].raw); err != nil {
					return err
				}
				if err := order.Put(rows[j].order, seq); err != nil {
					return err
				}
				if err := ids.Put(rows[j].id, seq); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportOpsPerSec(b, b.N*benchBatch)
}

// Replaying 100k ops in arrival order, decoding each.
func BenchmarkForEachArrival(b *testing.B) {
	s := openTemp(b, true)
	ops := manyOps(benchScanSize)
	for i := 0; i < len(ops); i += benchBatch {
		mustAppend(b, s, ops[i:i+benchBatch]...)
	}
	b.ResetTimer()
	for range b.N {
		n := 0
		err := s.ForEachArrival(1, func(uint64, *oplog.Op) error { n++; return nil })
		if err != nil || n != benchScanSize {
			b.Fatalf("visited %d ops: %v", n, err)
		}
	}
	reportOpsPerSec(b, b.N*benchScanSize)
}

// Floor for ForEachArrival: a bare cursor over the same 100k values.
func BenchmarkFloorBoltCursor(b *testing.B) {
	db := openBenchBolt(b, true)
	ops := manyOps(benchScanSize)
	for i := 0; i < len(ops); i += benchBatch {
		err := db.Update(func(tx *bolt.Tx) error {
			arrival := tx.Bucket(bucketArrival)
			arrival.FillPercent = arrivalFill
			for j := i; j < i+benchBatch; j++ {
				if err := arrival.Put(be64(uint64(j+1)), ops[j].Bytes()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		n, size := 0, 0
		db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketArrival).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				n++
				size += len(v)
			}
			return nil
		})
		if n != benchScanSize || size == 0 {
			b.Fatalf("visited %d values", n)
		}
	}
	reportOpsPerSec(b, b.N*benchScanSize)
}

func openBenchBolt(b *testing.B, noSync bool) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, &bolt.Options{NoSync: noSync, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketArrival, bucketOrder, bucketIDs} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return db
}
