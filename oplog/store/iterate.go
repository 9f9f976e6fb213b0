package store

import (
	"bytes"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// walkChunk is how many ops a walk reads per read transaction. Walks release
// the transaction before calling back, so a callback may use the store
// (Append included) and a long walk never holds up the writer's remaps.
const walkChunk = 512

// visit is one op read by a walk, waiting to be handed to the callback.
type visit struct {
	seq uint64
	op  *oplog.Op
}

// ForEachArrival calls fn for each stored op in arrival order, starting at
// sequence from (0 or 1 visits everything). It stops at the first error fn
// returns and returns it. The walk is not a snapshot: ops appended while it
// runs may or may not be visited, ops compacted while it runs may still be.
func (s *Store) ForEachArrival(from uint64, fn func(seq uint64, op *oplog.Op) error) error {
	from = max(from, 1)
	batch := make([]visit, 0, walkChunk)
	for {
		batch = batch[:0]
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketArrival).Cursor()
			for k, v := c.Seek(be64(from)); k != nil && len(batch) < walkChunk; k, v = c.Next() {
				seq, err := s.seq(k, "arrival")
				if err != nil {
					return err
				}
				op, err := s.decode(seq, v)
				if err != nil {
					return err
				}
				batch = append(batch, visit{seq, op})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, v := range batch {
			if err := fn(v.seq, v.op); err != nil {
				return err
			}
		}
		if len(batch) < walkChunk {
			return nil
		}
		from = batch[len(batch)-1].seq + 1
	}
}

// ForEachOrdered calls fn for each stored op in the total order (HLC, author,
// ID), superseded ops included. Errors and consistency as ForEachArrival.
func (s *Store) ForEachOrdered(fn func(seq uint64, op *oplog.Op) error) error {
	return s.walkOrdered(false, fn)
}

// ForEachSync calls fn for each op in the sync set — stored and not
// superseded — in the total order. Errors and consistency as ForEachArrival.
func (s *Store) ForEachSync(fn func(op *oplog.Op) error) error {
	return s.walkOrdered(true, func(_ uint64, op *oplog.Op) error { return fn(op) })
}

func (s *Store) walkOrdered(skipSuperseded bool, fn func(seq uint64, op *oplog.Op) error) error {
	var after []byte // the last order key looked at; nil before the first
	batch := make([]visit, 0, walkChunk)
	for {
		batch = batch[:0]
		done := false
		err := s.view(func(tx *bolt.Tx) error {
			arrival, sup := tx.Bucket(bucketArrival), tx.Bucket(bucketSuperseded)
			c := tx.Bucket(bucketOrder).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); bytes.Equal(k, after) {
				k, v = c.Next()
			}
			var last []byte
			for ; k != nil && len(batch) < walkChunk; k, v = c.Next() {
				last = k
				if len(k) != oplog.OrderKeyLen {
					return s.corrupt("order bucket holds a %d-byte key, want %d", len(k), oplog.OrderKeyLen)
				}
				if skipSuperseded && sup.Get(k[orderKeyIDStart:]) != nil {
					continue
				}
				seq, err := s.seq(v, "order")
				if err != nil {
					return err
				}
				raw := arrival.Get(v)
				if raw == nil {
					return s.corrupt("order index names seq %d, which is missing", seq)
				}
				op, err := s.decode(seq, raw)
				if err != nil {
					return err
				}
				batch = append(batch, visit{seq, op})
			}
			done = k == nil
			if last != nil {
				after = bytes.Clone(last)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, v := range batch {
			if err := fn(v.seq, v.op); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}
