package store

import (
	"bytes"
	"encoding/binary"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// compactChunk bounds the deletions per transaction, so a large compaction
// never builds one huge transaction or holds the writer for long.
const compactChunk = 4096

// MarkSuperseded records that the reducers no longer need the given ops as of
// HLC at (DESIGN.md §4): they leave the sync set at once and Compact deletes
// them once at is older than its cutoff. Unknown IDs are ignored (the op may
// be compacted already, or not yet arrived). Marking again is harmless: an op
// keeps the earliest HLC it was marked at, so replays and reorderings agree.
// Pass all the IDs of one fold step in one call: each call is one fsync.
func (s *Store) MarkSuperseded(at oplog.HLC, ids ...oplog.ID) error {
	if len(ids) == 0 {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	var left []SyncItem // ops leaving the sync set: their first marking
	err := s.update(func(tx *bolt.Tx) error {
		left = left[:0]
		stored, sup, arrival := tx.Bucket(bucketIDs), tx.Bucket(bucketSuperseded), tx.Bucket(bucketArrival)
		for i := range ids {
			id := ids[i][:]
			sk := stored.Get(id)
			if sk == nil {
				continue
			}
			prev := sup.Get(id)
			if prev != nil && len(prev) == hlcLen && oplog.HLC(binary.BigEndian.Uint64(prev)) <= at {
				continue
			}
			if prev == nil {
				// The index orders by HLC, which only the op itself knows.
				seq, err := s.seq(sk, "ids")
				if err != nil {
					return err
				}
				op, err := s.decode(seq, arrival.Get(sk))
				if err != nil {
					return err
				}
				left = append(left, SyncItem{HLC: op.HLC, ID: ids[i]})
			}
			if err := sup.Put(id, be64(uint64(at))); err != nil {
				return err
			}
		}
		return s.addCounter(tx, keySupersededN, int64(len(left)))
	})
	if err != nil {
		return err
	}
	for _, it := range left {
		s.syncIdx.Remove(it)
	}
	return nil
}

// Compact deletes every op that was superseded at an HLC before the cutoff,
// from every bucket, and returns how many it deleted. Callers pass now minus
// the retention window, so replay still covers the window. Arrival sequences
// of deleted ops are never reused. Compact works in several transactions; if
// it fails part way, what it deleted stays deleted and running it again
// finishes the job.
func (s *Store) Compact(before oplog.HLC) (removed int, err error) {
	var from []byte // superseded key to resume at
	for {
		n, next, err := s.compactSome(before, from)
		removed += n
		if err != nil || next == nil {
			return removed, err
		}
		from = next
	}
}

// compactSome deletes up to compactChunk eligible ops, scanning the superseded
// bucket from key from, and returns where to resume (nil when finished).
func (s *Store) compactSome(before oplog.HLC, from []byte) (removed int, next []byte, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		removed, next = 0, nil
		arrival, order, ids, sup := tx.Bucket(bucketArrival), tx.Bucket(bucketOrder), tx.Bucket(bucketIDs), tx.Bucket(bucketSuperseded)

		// Collect first, delete after: deleting under a bbolt cursor skips keys.
		var victims [][]byte
		c := sup.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		for ; k != nil; k, v = c.Next() {
			if len(victims) == compactChunk {
				next = bytes.Clone(k)
				break
			}
			if len(k) != len(oplog.ID{}) || len(v) != hlcLen {
				return s.corrupt("superseded bucket holds a %d-byte key and %d-byte value, want %d and %d", len(k), len(v), len(oplog.ID{}), hlcLen)
			}
			if oplog.HLC(binary.BigEndian.Uint64(v)) < before {
				victims = append(victims, bytes.Clone(k))
			}
		}

		var gone int64
		for _, id := range victims {
			if sk := ids.Get(id); sk != nil {
				seq, err := s.seq(sk, "ids")
				if err != nil {
					return err
				}
				if raw := arrival.Get(sk); raw != nil {
					op, err := s.decode(seq, raw)
					if err != nil {
						return err
					}
					ok := oplog.OrderKey(op, oplog.ID(id))
					if err := order.Delete(ok[:]); err != nil {
						return err
					}
					if err := arrival.Delete(bytes.Clone(sk)); err != nil {
						return err
					}
				}
				if err := ids.Delete(id); err != nil {
					return err
				}
				gone++
			}
			if err := sup.Delete(id); err != nil {
				return err
			}
		}
		removed = int(gone)
		if err := s.addCounter(tx, keyOps, -gone); err != nil {
			return err
		}
		return s.addCounter(tx, keySupersededN, -int64(len(victims)))
	})
	if err != nil {
		return 0, nil, err
	}
	return removed, next, nil
}
