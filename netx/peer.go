package netx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// peer is one link and its outgoing push queue.
type peer struct {
	key      oplog.Key
	conn     *quic.Conn
	outbound bool
	since    time.Time

	mu     sync.Mutex
	queue  []*oplog.Op
	wake   chan struct{} // signalled when the queue gains ops
	closed bool

	syncMu sync.Mutex // one anti-entropy session at a time
}

func newPeer(key oplog.Key, conn *quic.Conn, outbound bool) *peer {
	return &peer{key: key, conn: conn, outbound: outbound, since: time.Now(), wake: make(chan struct{}, 1)}
}

// maxPushQueue bounds a peer's push queue. A peer that does not keep up
// loses the oldest ops beyond it (never denies); anti-entropy brings it
// whatever push did not.
const maxPushQueue = 1 << 16

// enqueue adds ops to the push queue.
func (p *peer) enqueue(ops []*oplog.Op) {
	p.mu.Lock()
	if !p.closed {
		p.queue = append(p.queue, ops...)
		if over := len(p.queue) - maxPushQueue; over > 0 {
			p.queue = slices.DeleteFunc(p.queue, func(op *oplog.Op) bool {
				if over > 0 && op.Kind != oplog.KindDeny {
					over--
					return true
				}
				return false
			})
		}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take removes up to n ops from the queue, denies first: a revocation must
// not wait behind a backlog of load reports.
func (p *peer) take(n int) []*oplog.Op {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out, rest []*oplog.Op
	for _, op := range p.queue {
		if op.Kind == oplog.KindDeny && len(out) < n {
			out = append(out, op)
		} else {
			rest = append(rest, op)
		}
	}
	k := min(n-len(out), len(rest))
	out = append(out, rest[:k]...)
	p.queue = append(p.queue[:0], rest[k:]...)
	return out
}

func (p *peer) close() {
	p.mu.Lock()
	p.closed, p.queue = true, nil
	p.mu.Unlock()
}

// Broadcast pushes ops to every linked peer except from (the one they came
// from; zero for ops this node made).
func (m *Mesh) Broadcast(from oplog.Key, ops []*oplog.Op) {
	if len(ops) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range m.peers {
		if k != from {
			p.enqueue(ops)
		}
	}
}

// pushLoop sends the peer's queue on one unidirectional stream, one op per
// frame, for the life of the link.
func (p *peer) pushLoop(m *Mesh) {
	ctx := p.conn.Context()
	s, err := p.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return
	}
	defer s.Close()
	w := bufio.NewWriter(s)
	if err := w.WriteByte(StreamPush); err != nil {
		return
	}
	for {
		ops := p.take(m.cfg.MaxPushBatch)
		if len(ops) == 0 {
			if err := w.Flush(); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		for _, op := range ops {
			if err := writeFrame(w, op.Bytes()); err != nil {
				return
			}
		}
	}
}

// receivePush reads a peer's push stream and ingests what arrives, in
// batches of what is already buffered so that a burst is one store commit.
func (m *Mesh) receivePush(p *peer, s *quic.ReceiveStream) {
	r := bufio.NewReaderSize(s, 64<<10)
	t, err := r.ReadByte()
	if err != nil {
		return
	}
	if t != StreamPush {
		m.protocolError(p, fmt.Errorf("unknown unidirectional stream type %d", t))
		return
	}
	for {
		batch, err := readOps(r, m.cfg.MaxPushBatch)
		if len(batch) > 0 {
			if _, ierr := m.host.Ingest(p.key, batch); ierr != nil {
				m.protocolError(p, fmt.Errorf("pushed ops: %w", ierr))
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && p.conn.Context().Err() == nil {
				m.protocolError(p, err)
			}
			return
		}
	}
}

// readOps reads op frames until max ops or until nothing more is buffered.
// A malformed op is an error and nothing after it is returned.
func readOps(r *bufio.Reader, max int) ([]*oplog.Op, error) {
	var ops []*oplog.Op
	for len(ops) < max {
		raw, err := readFrame(r, oplog.MaxOpBytes)
		if err != nil {
			return ops, err
		}
		op, err := oplog.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFrame, err)
		}
		ops = append(ops, op)
		if r.Buffered() == 0 {
			break
		}
	}
	return ops, nil
}

// syncLoop runs anti-entropy with every peer this node dialled, every
// SyncInterval.
func (m *Mesh) syncLoop() {
	t := time.NewTicker(m.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var ps []*peer
		for _, p := range m.peers {
			if p.outbound {
				ps = append(ps, p)
			}
		}
		m.mu.Unlock()
		for _, p := range ps {
			m.wg.Go(func() { m.syncWith(p) })
		}
	}
}
