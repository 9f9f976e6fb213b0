package netx

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The call protocol's frames are laid out by hand rather than in CBOR: a
// call is a few short fields, and at tens of thousands of calls a second
// reflection-driven CBOR cost more than the rest of the protocol together.
//
// A request:
//
//	uvarint len, seed | uvarint len, fn | uvarint ms left | origin (32 bytes)
//	uvarint n, then n × (uvarint len, "seed/fn") | the input (the rest)
//
// A reply: one byte saying which (replyStarted, replyRefused, replyOutput,
// replyError), then its text or output (the rest).

// Reply kinds.
const (
	replyStarted byte = 1 // interim: the call may have had effects
	replyRefused byte = 2 // final: the replica did not run it; text says why
	replyOutput  byte = 3 // final: the output
	replyError   byte = 4 // final: the seed failed; text says how
)

// maxTimeLeftMs bounds a request's time left: a day.
const maxTimeLeftMs = 24 * 60 * 60 * 1000

// appendCallRequestFrame appends r as one frame to b.
func appendCallRequestFrame(b []byte, r *CallRequest) []byte {
	n := uvarintLen(uint64(len(r.Seed))) + len(r.Seed) + uvarintLen(uint64(len(r.Fn))) + len(r.Fn) +
		uvarintLen(uint64(max(r.TimeLeftMs, 0))) + len(r.Origin) + uvarintLen(uint64(len(r.Chain))) + len(r.Input)
	for _, c := range r.Chain {
		n += uvarintLen(uint64(len(c))) + len(c)
	}
	b = binary.AppendUvarint(b, uint64(n))
	return appendCallRequest(b, r)
}

// appendCallRequest appends r's encoding to b.
func appendCallRequest(b []byte, r *CallRequest) []byte {
	b = appendString(b, r.Seed)
	b = appendString(b, r.Fn)
	b = binary.AppendUvarint(b, uint64(max(r.TimeLeftMs, 0)))
	b = append(b, r.Origin[:]...)
	b = binary.AppendUvarint(b, uint64(len(r.Chain)))
	for _, c := range r.Chain {
		b = appendString(b, c)
	}
	return append(b, r.Input...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeCallRequest reads a request from a peer. The input aliases raw.
func decodeCallRequest(raw []byte) (*CallRequest, error) {
	d := callDecoder{b: raw}
	req := &CallRequest{
		Seed:       d.text("seed", maxCallName),
		Fn:         d.text("function", maxCallName),
		TimeLeftMs: int64(d.uvarint("time left", maxTimeLeftMs)),
	}
	copy(req.Origin[:], d.take("origin", len(req.Origin)))
	n := d.uvarint("chain length", maxCallChain)
	for range n {
		if d.err != nil {
			break
		}
		req.Chain = append(req.Chain, d.text("chain entry", 2*maxCallName+1))
	}
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case len(d.b) > maxCallInput:
		return nil, fmt.Errorf("input of %d bytes, limit %d", len(d.b), maxCallInput)
	case req.TimeLeftMs <= 0:
		return nil, errors.New("no time left")
	}
	if len(d.b) > 0 {
		req.Input = d.b
	}
	return req, nil
}

// maxCallName bounds a seed's or function's name in a request.
const maxCallName = 255

// appendCallReplyFrame appends rep as one frame to b.
func appendCallReplyFrame(b []byte, rep callReply) []byte {
	n := 1 + len(rep.Refused) + len(rep.Error) + len(rep.Output)
	if rep.Started {
		n = 1
	}
	return appendCallReply(binary.AppendUvarint(b, uint64(n)), rep)
}

// appendCallReply appends rep's encoding to b.
func appendCallReply(b []byte, rep callReply) []byte {
	switch {
	case rep.Started:
		return append(b, replyStarted)
	case rep.Refused != "":
		return append(append(b, replyRefused), rep.Refused...)
	case rep.Error != "":
		return append(append(b, replyError), rep.Error...)
	}
	return append(append(b, replyOutput), rep.Output...)
}

// decodeCallReply reads a reply from a replica. The output aliases raw.
func decodeCallReply(raw []byte) (*callReply, error) {
	if len(raw) == 0 {
		return nil, errors.New("an empty reply")
	}
	rest := raw[1:]
	switch raw[0] {
	case replyStarted:
		if len(rest) > 0 {
			return nil, errors.New("a Started reply with more in it")
		}
		return &callReply{Started: true}, nil
	case replyRefused, replyError:
		if len(rest) == 0 {
			return nil, errors.New("a refusal or failure that does not say why")
		}
		if raw[0] == replyRefused {
			return &callReply{Refused: string(rest)}, nil
		}
		return &callReply{Error: string(rest)}, nil
	case replyOutput:
		if len(rest) == 0 {
			rest = nil
		}
		return &callReply{Output: rest}, nil
	}
	return nil, fmt.Errorf("unknown reply kind %d", raw[0])
}

// callDecoder reads a request's fields, keeping the first error.
type callDecoder struct {
	b   []byte
	err error
}

func (d *callDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *callDecoder) uvarint(what string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n <= 0:
		d.fail("%s: not a varint", what)
		return 0
	case v > limit:
		d.fail("%s: %d, limit %d", what, v, limit)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *callDecoder) take(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("%s: cut short", what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *callDecoder) text(what string, limit int) string {
	return string(d.take(what, int(d.uvarint(what+" length", uint64(limit)))))
}
