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

// The call protocol: one bidirectional stream per call. The caller sends a
// request; the replica answers at once either that it refuses (it does not
// hold the seed, or it is saturated) or that it has started, and then the
// result. A call the replica refused may be tried on the next candidate; a
// call that started is never retried, since it may have had effects.
//
// Deadlines travel as milliseconds left, never as wall times: the two
// clocks need not agree.

// StreamCall carries one call to a seed on a peer.
const StreamCall byte = 4

// Call limits.
const (
	maxCallInput  = 4 << 20
	maxCallOutput = 4 << 20
	maxCallFrame  = maxCallOutput + 1024
	maxCallChain  = 64
)

// CallRequest is a call of fn on a seed's replica.
type CallRequest struct {
	Seed       string    `cbor:"1,keyasint"`
	Fn         string    `cbor:"2,keyasint"`
	Input      []byte    `cbor:"3,keyasint,omitempty"`
	TimeLeftMs int64     `cbor:"4,keyasint"`           // milliseconds left when sent
	Chain      []string  `cbor:"5,keyasint,omitempty"` // "seed/fn" of the calls that led here, outermost first
	Origin     oplog.Key `cbor:"6,keyasint"`           // the node where the call chain began
}

// callAnswer is the replica's first frame: refused or started.
type callAnswer struct {
	Started bool   `cbor:"1,keyasint,omitempty"`
	Refused string `cbor:"2,keyasint,omitempty"` // why not, if not started
}

// callResult is the replica's second frame.
type callResult struct {
	Output []byte `cbor:"1,keyasint,omitempty"`
	Error  string `cbor:"2,keyasint,omitempty"`
}

// ErrNotStarted is wrapped by errors from a call that did not start on the
// replica: the caller may try another.
var ErrNotStarted = errors.New("call not started")

// ErrRemote is wrapped by errors the seed itself returned on the replica.
var ErrRemote = errors.New("seed failed")

// CallHandler runs a call a peer sent. start must be called once the call
// is accepted, before it runs; a handler that returns without calling start
// refuses the call with its error.
type CallHandler func(ctx context.Context, from oplog.Key, req *CallRequest, start func()) ([]byte, error)

// HandleCalls serves the call protocol with h.
func (m *Mesh) HandleCalls(h CallHandler) {
	m.Handle(StreamCall, func(ctx context.Context, from oplog.Key, s *quic.Stream) {
		// quic-go frees a stream only once both directions are done.
		defer s.Close()
		defer s.CancelRead(0)
		r := bufio.NewReaderSize(s, callBufBytes)
		raw, err := readFrame(r, maxCallInput+maxCallChain*128+1024)
		if err != nil {
			return
		}
		var req CallRequest
		if err := oplog.Unmarshal(raw, &req); err != nil || len(req.Chain) > maxCallChain || req.TimeLeftMs <= 0 {
			writeAnswer(s, callAnswer{Refused: "malformed call"})
			return
		}
		ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeLeftMs)*time.Millisecond)
		defer cancel()
		started := false
		out, err := h(ctx, from, &req, func() {
			started = true
			writeAnswer(s, callAnswer{Started: true})
		})
		if !started {
			msg := "refused"
			if err != nil {
				msg = err.Error()
			}
			writeAnswer(s, callAnswer{Refused: msg})
			return
		}
		res := callResult{Output: out}
		if err != nil {
			res.Output, res.Error = nil, err.Error()
		}
		b, _ := oplog.Marshal(res)
		s.Write(appendFrame(nil, b))
	})
}

// callBufBytes sizes a call stream's read buffer: the answer is a few
// bytes, and larger outputs are read straight through.
const callBufBytes = 512

func writeAnswer(w io.Writer, a callAnswer) {
	b, _ := oplog.Marshal(a)
	w.Write(appendFrame(nil, b))
}

// Call runs req on peer. An error wrapping ErrNotStarted means the replica
// refused before running it; ErrRemote, that the seed failed there.
func (m *Mesh) Call(ctx context.Context, peer oplog.Key, req *CallRequest) ([]byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("a call needs a deadline")
	}
	req.TimeLeftMs = time.Until(dl).Milliseconds()
	if req.TimeLeftMs <= 0 {
		return nil, context.DeadlineExceeded
	}
	m.mu.Lock()
	p := m.peers[peer]
	m.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: no link to %s", ErrNotStarted, peer.Short())
	}
	s, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotStarted, err)
	}
	defer s.CancelRead(0) // quic-go frees a stream only once both directions are done
	s.SetDeadline(dl)
	body, err := oplog.Marshal(req)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(s, callBufBytes)
	if _, err := s.Write(appendFrame([]byte{StreamCall}, body)); err != nil {
		return nil, fmt.Errorf("%w: could not send the call", ErrNotStarted)
	}
	// Done sending. The replica may have answered and stopped reading
	// already, which makes Close report the stream cancelled: harmless.
	s.Close()
	raw, err := readFrame(r, 4096)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotStarted, err)
	}
	var a callAnswer
	if err := oplog.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%w: garbled answer: %v", ErrNotStarted, err)
	}
	if !a.Started {
		return nil, fmt.Errorf("%w: %s refused: %s", ErrNotStarted, peer.Short(), a.Refused)
	}
	raw, err = readFrame(r, maxCallFrame)
	if err != nil {
		return nil, fmt.Errorf("call started on %s but its answer was lost: %w", peer.Short(), err)
	}
	var res callResult
	if err := oplog.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("garbled result from %s: %w", peer.Short(), err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrRemote, res.Error)
	}
	return res.Output, nil
}
