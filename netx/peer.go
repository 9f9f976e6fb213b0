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

	mu      sync.Mutex
	queue   []*oplog.Op
	wake    chan struct{} // signalled when the queue gains ops
	drained chan struct{} // signalled when the queue has been sent and flushed
	unsent  int           // ops queued or written but not yet flushed
	closed  bool
	closing bool          // the link goes once its queue is sent
	calls   []*callStream // idle call streams, newest last

	syncMu sync.Mutex // one anti-entropy session at a time
}

func newPeer(key oplog.Key, conn *quic.Conn, outbound bool) *peer {
	return &peer{key: key, conn: conn, outbound: outbound, since: time.Now(),
		wake: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

// Closing a link politely: how long to wait for the queue to go out, and
// for the last of it to arrive, before closing the link regardless.
const (
	drainTimeout = time.Second
	drainGrace   = 50 * time.Millisecond
)

// startClosing marks the link as closing; it reports false if it already
// was.
func (p *peer) startClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.closing = true
	return true
}

// drainThenClose waits for the push queue to be sent (at most
// drainTimeout), gives it a moment to arrive, and closes the link.
func (p *peer) drainThenClose(code quic.ApplicationErrorCode, reason string) {
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		sent := p.unsent == 0
		p.mu.Unlock()
		if sent {
			break
		}
		select {
		case <-p.drained:
			continue
		case <-deadline.C:
		case <-p.conn.Context().Done():
			return
		}
		break
	}
	grace := time.NewTimer(max(drainGrace, 2*p.conn.ConnectionStats().SmoothedRTT))
	defer grace.Stop()
	select {
	case <-grace.C:
	case <-p.conn.Context().Done():
	}
	p.conn.CloseWithError(code, reason)
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
		p.unsent += len(ops)
		if over := len(p.queue) - maxPushQueue; over > 0 {
			p.unsent -= over
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
	calls := p.calls
	p.calls = nil
	p.mu.Unlock()
	for _, cs := range calls {
		cs.close()
	}
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
	written := 0 // since the last flush
	for {
		ops := p.take(m.cfg.MaxPushBatch)
		if len(ops) == 0 {
			if err := w.Flush(); err != nil {
				return
			}
			p.mu.Lock()
			p.unsent -= written
			p.mu.Unlock()
			written = 0
			select {
			case p.drained <- struct{}{}:
			default:
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
		written += len(ops)
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
