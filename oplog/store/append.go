package store

import (
	"fmt"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// appendReq is one Append call waiting for, or taking part in, a commit.
type appendReq struct {
	ops   []*oplog.Op
	ids   []oplog.ID
	raw   [][]byte
	added []bool
	err   error
	// turn tells a waiting caller how its wait ended: true means "lead the
	// next commit", false means "your ops are committed (or err is set)".
	turn chan bool
}

// Append stores the ops it does not already hold, in one transaction that is
// fsynced before Append returns. added[i] reports whether ops[i] was new;
// an op already stored, or repeated earlier in the same call, is not. New ops
// get the next arrival sequences in input order.
//
// Callers should pass a whole network batch to one Append so one fsync covers
// it. Appends from different goroutines are group-committed as well: while one
// commit is in flight, later calls queue, and the first of them then commits
// the whole queue in one transaction, each call keeping its ops contiguous and
// in order. A lone caller never waits for company.
//
// Ops must be well formed (a known version and kind, a non-nil body, at most
// oplog.MaxOpBytes encoded); otherwise nothing is stored and an error says
// which op is wrong. Append does not verify signatures: callers do.
func (s *Store) Append(ops ...*oplog.Op) (added []bool, err error) {
	if len(ops) == 0 {
		return []bool{}, nil
	}
	r, err := s.prepare(ops)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	s.queue = append(s.queue, r)
	if s.committing {
		s.mu.Unlock()
		if lead := <-r.turn; !lead {
			return r.added, r.err
		}
		s.mu.Lock()
	}
	s.committing = true
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()

	s.commit(batch)

	s.mu.Lock()
	if len(s.queue) > 0 {
		s.queue[0].turn <- true // hand over; committing stays true
	} else {
		s.committing = false
	}
	s.mu.Unlock()
	for _, other := range batch {
		if other != r {
			other.turn <- false
		}
	}
	return r.added, r.err
}

// prepare encodes and checks ops before they join a commit, so that one bad
// op fails only its own call, and the encoding work runs in parallel.
func (s *Store) prepare(ops []*oplog.Op) (*appendReq, error) {
	r := &appendReq{
		ops:  ops,
		ids:  make([]oplog.ID, len(ops)),
		raw:  make([][]byte, len(ops)),
		turn: make(chan bool, 1),
	}
	for i, op := range ops {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("store %s: append: op %d of %d: %s; nothing stored", s.path, i+1, len(ops), fmt.Sprintf(format, args...))
		}
		switch {
		case op == nil:
			return nil, bad("nil op")
		case op.V != oplog.Version:
			return nil, bad("version %d (this build stores %d)", op.V, oplog.Version)
		case !op.Kind.Valid():
			return nil, bad("unknown kind %d", op.Kind)
		case op.Body == nil:
			// Only a hand-built op can have one (Sign stores an empty body):
			// it encodes as CBOR null, which Decode refuses on the way back.
			return nil, bad("nil body (use an empty one)")
		}
		raw := op.Bytes()
		if len(raw) > oplog.MaxOpBytes {
			return nil, bad("%d bytes, limit %d", len(raw), oplog.MaxOpBytes)
		}
		r.ids[i], r.raw[i] = op.ID(), raw
	}
	return r, nil
}

// commit writes a batch of requests in one transaction and fills in each
// request's result. New ops join the sync index once the transaction commits.
func (s *Store) commit(batch []*appendReq) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	err := s.update(func(tx *bolt.Tx) error {
		arrival, order, ids := tx.Bucket(bucketArrival), tx.Bucket(bucketOrder), tx.Bucket(bucketIDs)
		arrival.FillPercent = arrivalFill
		var n int64
		for _, r := range batch {
			r.added = make([]bool, len(r.ops))
			for i, op := range r.ops {
				id := r.ids[i][:]
				if ids.Get(id) != nil {
					continue
				}
				seq, err := arrival.NextSequence()
				if err != nil {
					return err
				}
				// bbolt keeps key and value slices until commit: each Put
				// gets its own.
				sk := be64(seq)
				ok := oplog.OrderKey(op, r.ids[i])
				if err := arrival.Put(sk, r.raw[i]); err != nil {
					return err
				}
				if err := order.Put(ok[:], sk); err != nil {
					return err
				}
				if err := ids.Put(id, sk); err != nil {
					return err
				}
				r.added[i] = true
				n++
			}
		}
		return s.addCounter(tx, keyOps, n)
	})
	if err != nil {
		for _, r := range batch {
			r.added, r.err = nil, err
		}
		return
	}
	for _, r := range batch {
		for i, added := range r.added {
			if added {
				s.syncIdx.Add(SyncItem{HLC: r.ops[i].HLC, ID: r.ids[i]})
			}
		}
	}
}
