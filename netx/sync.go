package netx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// An anti-entropy session runs on one bidirectional stream. The dialling
// side initiates. Every frame starts with a byte saying what it is:
//
//	'R' a reconciliation message (Reconciler), alternating until the
//	    initiator knows both differences
//	'N' initiator → responder: the IDs it lacks (CBOR array)
//	'O' one op
//	'E' end of this side's ops
//
// After 'N' both sides send their ops at once, each reading while it writes
// so that neither blocks on the other's flow control.
const (
	frameReconcile = 'R'
	frameNeed      = 'N'
	frameOp        = 'O'
	frameEnd       = 'E'
)

// Sync limits.
const (
	// maxSyncFrame bounds one frame of a sync session.
	maxSyncFrame = 1 << 20
	// maxNeedPerSession bounds how many ops one session fetches; the rest
	// come in the next session.
	maxNeedPerSession = 16384
	// syncTimeout bounds one session.
	syncTimeout = time.Minute
)

// SyncStats describes one finished session, for tests and benchmarks.
type SyncStats struct {
	Rounds    int // reconciliation round trips
	Sent      int // ops sent
	Received  int // ops received and new here
	BytesOut  int64
	BytesIn   int64
	Initiator bool
}

// syncWith runs one session with p as the initiator.
func (m *Mesh) syncWith(p *peer) {
	if !p.syncMu.TryLock() {
		return // one at a time per link; the next tick will come
	}
	defer p.syncMu.Unlock()
	ctx, cancel := context.WithTimeout(p.conn.Context(), syncTimeout)
	defer cancel()
	s, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return
	}
	st, err := m.runSync(ctx, p.key, s, true)
	m.finishSync(p, st, err)
}

// serveSync answers a session a peer opened.
func (m *Mesh) serveSync(ctx context.Context, from oplog.Key, s *quic.Stream) {
	m.mu.Lock()
	p := m.peers[from]
	m.mu.Unlock()
	if p == nil {
		s.CancelRead(0)
		s.CancelWrite(0)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	st, err := m.runSync(ctx, from, s, false)
	m.finishSync(p, st, err)
}

func (m *Mesh) finishSync(p *peer, st SyncStats, err error) {
	if err != nil && p.conn.Context().Err() == nil {
		if errors.Is(err, ErrFrame) || errors.Is(err, oplog.ErrSignature) || errors.Is(err, errSyncProtocol) {
			m.protocolError(p, fmt.Errorf("sync: %w", err))
			return
		}
		m.log.Debug("sync ended early", "peer", p.key.Short(), "err", err)
		return
	}
	if m.cfg.OnSync != nil {
		m.cfg.OnSync(p.key, st)
	}
}

var errSyncProtocol = errors.New("sync protocol violation")

// countingRW counts bytes through a stream.
type countingRW struct {
	s       *quic.Stream
	in, out int64
}

func (c *countingRW) Read(b []byte) (int, error) {
	n, err := c.s.Read(b)
	c.in += int64(n)
	return n, err
}

func (c *countingRW) Write(b []byte) (int, error) {
	n, err := c.s.Write(b)
	c.out += int64(n)
	return n, err
}

func (m *Mesh) runSync(ctx context.Context, peer oplog.Key, s *quic.Stream, initiator bool) (st SyncStats, err error) {
	st.Initiator = initiator
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	// quic-go frees a stream only once both directions are done: close ours
	// and stop reading theirs, whatever state the session ended in.
	defer s.CancelRead(0)
	defer s.Close()
	c := &countingRW{s: s}
	defer func() { st.BytesIn, st.BytesOut = c.in, c.out }()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	rec := NewReconciler(m.host.SyncSet(), DefaultReconcileConfig())

	send := func(kind byte, payload []byte) error {
		return writeFrame(w, append([]byte{kind}, payload...))
	}
	recv := func() (byte, []byte, error) {
		f, err := readFrame(r, maxSyncFrame)
		if err != nil {
			return 0, nil, err
		}
		if len(f) == 0 {
			return 0, nil, fmt.Errorf("%w: empty frame", errSyncProtocol)
		}
		return f[0], f[1:], nil
	}

	var need []oplog.ID
	if initiator {
		if err := w.WriteByte(StreamSync); err != nil {
			return st, err
		}
		msg, err := rec.Initiate()
		if err != nil {
			return st, err
		}
		for {
			if err := send(frameReconcile, msg); err != nil {
				return st, err
			}
			if err := w.Flush(); err != nil {
				return st, err
			}
			kind, in, err := recv()
			if err != nil {
				return st, err
			}
			if kind != frameReconcile {
				return st, fmt.Errorf("%w: frame %q while reconciling", errSyncProtocol, kind)
			}
			st.Rounds++
			out, done, err := rec.Reconcile(in)
			if err != nil {
				return st, fmt.Errorf("%w: %v", errSyncProtocol, err)
			}
			if done {
				break
			}
			msg = out
		}
		need = rec.Need()
		if len(need) > maxNeedPerSession {
			need = need[:maxNeedPerSession]
		}
		b, _ := oplog.Marshal(need)
		if err := send(frameNeed, b); err != nil {
			return st, err
		}
	} else {
		for {
			kind, in, err := recv()
			if err != nil {
				return st, err
			}
			if kind == frameNeed {
				if err := oplog.Unmarshal(in, &need); err != nil || len(need) > maxNeedPerSession {
					return st, fmt.Errorf("%w: bad need list", errSyncProtocol)
				}
				break
			}
			if kind != frameReconcile {
				return st, fmt.Errorf("%w: frame %q while reconciling", errSyncProtocol, kind)
			}
			out, _, err := rec.Reconcile(in)
			if err != nil {
				return st, fmt.Errorf("%w: %v", errSyncProtocol, err)
			}
			if err := send(frameReconcile, out); err != nil {
				return st, err
			}
			if err := w.Flush(); err != nil {
				return st, err
			}
			st.Rounds++
		}
	}

	// Exchange ops: the initiator sends what it has that the peer lacks; the
	// responder sends what it was asked for.
	var give []*oplog.Op
	if initiator {
		give = m.host.Ops(rec.Have())
	} else {
		give = m.host.Ops(need)
	}
	recvErr := make(chan error, 1)
	go func() { recvErr <- m.receiveOps(peer, r, &st) }()
	werr := func() error {
		for _, op := range give {
			if err := send(frameOp, op.Bytes()); err != nil {
				return err
			}
		}
		if err := send(frameEnd, nil); err != nil {
			return err
		}
		return w.Flush()
	}()
	if werr != nil {
		// The reader updates st and ingests for this session: stop it and
		// wait, so that it never outlives the session.
		s.CancelRead(0)
		<-recvErr
		return st, werr
	}
	st.Sent = len(give)
	select {
	case err = <-recvErr:
	case <-ctx.Done():
		s.CancelRead(0)
		err = <-recvErr
	}
	return st, err
}

// receiveOps reads 'O' frames until 'E', ingesting them in batches.
func (m *Mesh) receiveOps(peer oplog.Key, r *bufio.Reader, st *SyncStats) error {
	var batch []*oplog.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		added, err := m.host.Ingest(peer, batch)
		for _, a := range added {
			if a {
				st.Received++
			}
		}
		batch = batch[:0]
		return err
	}
	for {
		f, err := readFrame(r, maxSyncFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: stream ended before the end of the ops", errSyncProtocol)
			}
			return err
		}
		if len(f) == 0 {
			return fmt.Errorf("%w: empty frame", errSyncProtocol)
		}
		switch f[0] {
		case frameEnd:
			return flush()
		case frameOp:
			op, err := oplog.Decode(f[1:])
			if err != nil {
				return fmt.Errorf("%w: %v", ErrFrame, err)
			}
			batch = append(batch, op)
			if len(batch) >= m.cfg.MaxPushBatch || r.Buffered() == 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%w: frame %q among ops", errSyncProtocol, f[0])
		}
	}
}
