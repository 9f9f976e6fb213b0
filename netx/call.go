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

// The call protocol. A call stream carries calls one after another: the
// caller keeps a few open to each peer and reuses them, so a call costs one
// request and one reply, not a stream's opening and closing too.
//
// For each call the caller sends a request. The replica answers with at
// most one interim reply, Started, and then one final reply: Refused (it
// did not run the call: it does not hold the seed, or it is saturated), or
// the result. Started means the call may have had an effect beyond the
// replica (it called out, with pln_call): before the first such effect the
// replica sends it, and waits until the caller acknowledges it. So a call
// whose caller never saw Started has left nothing behind, whatever became
// of it, and the caller may try another replica if the stream fails; a
// call that has started is never tried again.
//
// Deadlines travel as milliseconds left, never as wall times: the two
// clocks need not agree. A caller that gives up on a call resets its
// stream, which cancels the call on the replica.

// StreamCall carries calls to seeds on a peer.
const StreamCall byte = 4

// Call limits.
const (
	maxCallInput   = 4 << 20
	maxCallOutput  = 4 << 20
	maxCallChain   = 64
	maxCallRequest = maxCallInput + 64<<10 // the input and every other field at its longest
	maxCallReply   = maxCallOutput + 1024
)

// CallRequest is a call of fn on a seed's replica.
type CallRequest struct {
	Seed       string
	Fn         string
	Input      []byte
	TimeLeftMs int64     // milliseconds left when sent
	Chain      []string  // "seed/fn" of the calls that led here, outermost first
	Origin     oplog.Key // the node where the call chain began
}

// callReply is one of the replica's replies to a call: the interim Started,
// or a final one, which is Refused or else the result.
type callReply struct {
	Started bool   // interim: the call may have had effects
	Refused string // final: why the replica did not run it
	Output  []byte
	Error   string // final: the seed failed
}

// ErrNotStarted is wrapped by errors from a call that had no effect on the
// replica (it refused, or went away before the call started): the caller
// may try another.
var ErrNotStarted = errors.New("call not started")

// Refuse marks err as a CallHandler's refusal: the call did not run.
func Refuse(err error) error { return refusal{err} }

type refusal struct{ err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{ErrNotStarted, r.err} }

// ErrRemote is wrapped by errors the seed itself returned on the replica.
var ErrRemote = errors.New("seed failed")

// CallHandler runs a call a peer sent. It refuses the call, without having
// run it, by returning an error made with Refuse. started must be called,
// and must have returned nil, before the call first has an effect beyond
// this node: it tells the caller, and returns once the caller knows. ctx
// ends when the caller gives up.
type CallHandler func(ctx context.Context, from oplog.Key, req *CallRequest, started func() error) ([]byte, error)

// HandleCalls serves the call protocol with h.
func (m *Mesh) HandleCalls(h CallHandler) {
	m.Handle(StreamCall, func(_ context.Context, from oplog.Key, s *quic.Stream) {
		// quic-go frees a stream only once both directions are done.
		defer s.Close()
		defer s.CancelRead(0)
		r := bufio.NewReaderSize(s, callBufBytes)
		for {
			raw, err := readFrame(r, maxCallRequest)
			if err != nil {
				return // the caller closed the stream, or it broke
			}
			if err := serveCall(s, r, from, raw, h); err != nil {
				return
			}
		}
	})
}

// serveCall runs one call and sends its replies. An error means the stream
// can carry no more.
func serveCall(s *quic.Stream, r *bufio.Reader, from oplog.Key, raw []byte, h CallHandler) error {
	req, err := decodeCallRequest(raw)
	if err != nil {
		return writeReply(s, callReply{Refused: "malformed call: " + err.Error()})
	}
	// The stream's context ends when the caller resets the stream (it gave
	// up) or the link goes.
	ctx, cancel := context.WithTimeout(s.Context(), time.Duration(req.TimeLeftMs)*time.Millisecond)
	defer cancel()
	var serr error // the stream broke while telling the caller the call started
	started := func() error {
		serr = tellStarted(ctx, s, r)
		return serr
	}
	out, err := h(ctx, from, req, started)
	switch {
	case serr != nil:
		return serr
	case errors.Is(err, ErrNotStarted):
		return writeReply(s, callReply{Refused: err.Error()})
	case err != nil:
		return writeReply(s, callReply{Error: err.Error()})
	}
	return writeReply(s, callReply{Output: out})
}

// tellStarted sends Started and waits for the caller to acknowledge it:
// only once the caller knows the call has started may it have an effect,
// or a replica that died in between would leave the caller free to run it
// again elsewhere.
func tellStarted(ctx context.Context, s *quic.Stream, r *bufio.Reader) error {
	if err := writeReply(s, callReply{Started: true}); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetReadDeadline(dl)
		defer s.SetReadDeadline(time.Time{})
	}
	raw, err := readFrame(r, 1)
	switch {
	case err != nil:
		return fmt.Errorf("the caller did not acknowledge that the call started: %w", err)
	case len(raw) != 1 || raw[0] != ackStarted:
		return errors.New("the caller answered Started with something else")
	}
	return nil
}

// ackStarted is the caller's one-byte frame acknowledging Started.
const ackStarted byte = 1

// callBufBytes sizes a call stream's read buffer: most requests and
// replies fit, and larger ones are read straight through.
const callBufBytes = 4096

func writeReply(w io.Writer, rep callReply) error {
	_, err := w.Write(appendCallReplyFrame(make([]byte, 0, 16+len(rep.Refused)+len(rep.Error)+len(rep.Output)), rep))
	return err
}

// callStream is a call stream to a peer, kept between calls.
type callStream struct {
	s    *quic.Stream
	r    *bufio.Reader
	buf  []byte // the last request sent, reused for the next
	used time.Time
}

// Keeping call streams: at most this many idle per peer (each holds a
// goroutine on the replica), and none idle for longer than this.
const (
	maxIdleCallStreams = 16
	callStreamIdle     = 30 * time.Second
)

// takeCallStream returns an idle call stream to p, or opens one; reused
// says which.
func (m *Mesh) takeCallStream(ctx context.Context, p *peer) (cs *callStream, reused bool, err error) {
	p.mu.Lock()
	for len(p.calls) > 0 {
		cs = p.calls[len(p.calls)-1]
		p.calls = p.calls[:len(p.calls)-1]
		if time.Since(cs.used) < callStreamIdle {
			p.mu.Unlock()
			return cs, true, nil
		}
		cs.close()
	}
	p.mu.Unlock()
	s, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, false, err
	}
	m.callStreams.Add(1)
	if _, err := s.Write([]byte{StreamCall}); err != nil {
		s.CancelRead(0)
		s.CancelWrite(0)
		return nil, false, err
	}
	return &callStream{s: s, r: bufio.NewReaderSize(s, callBufBytes)}, false, nil
}

// putCallStream keeps a stream whose last call ended cleanly.
func (p *peer) putCallStream(cs *callStream) {
	cs.used = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.calls) < maxIdleCallStreams {
		p.calls = append(p.calls, cs)
		cs = nil
	}
	p.mu.Unlock()
	if cs != nil {
		cs.close()
	}
}

// close ends a stream politely: the replica's side ends when it reads EOF.
func (cs *callStream) close() {
	cs.s.Close()
	cs.s.CancelRead(0)
}

// abandon resets a stream in the middle of a call, which tells the replica
// to stop it.
func (cs *callStream) abandon() {
	cs.s.CancelWrite(codeCallAbandoned)
	cs.s.CancelRead(codeCallAbandoned)
}

// codeCallAbandoned resets a call stream whose caller gave up.
const codeCallAbandoned quic.StreamErrorCode = 1

// Call runs req on peer. An error wrapping ErrNotStarted means the call had
// no effect there (the replica refused it, or went away before it started):
// another replica may take it. ErrRemote means the seed failed there.
func (m *Mesh) Call(ctx context.Context, peer oplog.Key, req *CallRequest) ([]byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("a call needs a deadline")
	}
	m.mu.Lock()
	p := m.peers[peer]
	m.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: no link to %s", ErrNotStarted, peer.Short())
	}
	for {
		cs, reused, err := m.takeCallStream(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotStarted, err)
		}
		out, err := p.callOn(ctx, cs, dl, req)
		// A kept stream the replica has since closed fails before any
		// reply: that says nothing about the call, so try a new stream.
		if reused && errors.Is(err, errStaleStream) {
			continue
		}
		return out, err
	}
}

// errStaleStream marks a call that failed on sending its request or before
// any reply came, though the link and the deadline are fine.
var errStaleStream = errors.New("the call stream was closed")

// callOn runs req on one call stream and keeps the stream if the call
// ended cleanly.
func (p *peer) callOn(ctx context.Context, cs *callStream, dl time.Time, req *CallRequest) ([]byte, error) {
	req.TimeLeftMs = time.Until(dl).Milliseconds()
	if req.TimeLeftMs <= 0 {
		cs.close()
		return nil, context.DeadlineExceeded
	}
	cs.buf = appendCallRequestFrame(cs.buf[:0], req)
	// A caller that gives up, or whose deadline passes, resets the stream,
	// which ends the read below and stops the call there.
	stop := context.AfterFunc(ctx, cs.abandon)
	defer stop()
	if _, err := cs.s.Write(cs.buf); err != nil {
		cs.abandon()
		return nil, p.lost(ctx, false, err)
	}
	started := false
	for {
		raw, err := readFrame(cs.r, maxCallReply)
		if err != nil {
			cs.abandon()
			return nil, p.lost(ctx, started, err)
		}
		rep, err := decodeCallReply(raw)
		if err == nil && started && rep.Started {
			err = errors.New("Started twice")
		}
		if err != nil {
			cs.abandon()
			if started {
				return nil, fmt.Errorf("garbled reply from %s: %v", p.key.Short(), err)
			}
			return nil, fmt.Errorf("%w: garbled reply from %s: %v", ErrNotStarted, p.key.Short(), err)
		}
		if rep.Started {
			started = true
			if _, err := cs.s.Write([]byte{1, ackStarted}); err != nil {
				cs.abandon()
				return nil, p.lost(ctx, started, err)
			}
			continue
		}
		if !stop() { // the context ended as the reply came: the stream is reset
			cs.abandon()
		} else {
			p.putCallStream(cs)
		}
		switch {
		case rep.Refused != "" && !started:
			return nil, fmt.Errorf("%w: %s refused: %s", ErrNotStarted, p.key.Short(), rep.Refused)
		case rep.Refused != "":
			return nil, fmt.Errorf("%s refused a call it had started: %s", p.key.Short(), rep.Refused)
		case rep.Error != "":
			return nil, fmt.Errorf("%w: %s", ErrRemote, rep.Error)
		}
		return rep.Output, nil
	}
}

// lost explains a call whose stream failed: the caller's deadline or
// cancellation, or else the replica or link went away, before or after the
// call started.
func (p *peer) lost(ctx context.Context, started bool, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("call to %s: %w", p.key.Short(), context.Cause(ctx))
	case started:
		return fmt.Errorf("the call started on %s but its answer was lost: %w", p.key.Short(), err)
	case p.conn.Context().Err() == nil:
		return fmt.Errorf("%w: %w: %v", ErrNotStarted, errStaleStream, err)
	}
	return fmt.Errorf("%w: %s went away before the call started: %v", ErrNotStarted, p.key.Short(), err)
}
