package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	extism "github.com/extism/go-sdk"
)

// The pln host functions, namespace extism:host/user. doc.go describes the
// ABI as a guest author sees it; this file is its only implementation.

// callKey finds the callState in the context a host function runs with.
type callKey struct{}

// callState is the call a host function runs inside.
type callState struct {
	m  *Module
	fn string
	cc CallContext // Deadline is the call's effective deadline
	// cycle is set when a pln_call failed with ErrCycle, so that the
	// guest's failure, whatever its words, is reported as ErrCycle too.
	cycle error
	// reached is set once the call has reached beyond its instance, and
	// reachErr if the owner, told so, refused.
	reached  bool
	reachErr error
	// warming is set while the instance runs WarmExport, for no caller.
	warming bool
	// turn is set while the call holds a turn to run guest code.
	turn bool
}

// reach tells the call's owner, once, that the call is about to have an
// effect beyond its instance. Every host function with such an effect
// calls it first.
func (cs *callState) reach() error {
	if !cs.reached {
		cs.reached = true
		if cs.cc.Effect != nil {
			if err := cs.cc.Effect(); err != nil {
				cs.reachErr = fmt.Errorf("the call cannot reach beyond its instance: %w", err)
			}
		}
	}
	return cs.reachErr
}

// Log levels of pln_log.
const (
	logDebug = 0
	logInfo  = 1
	logWarn  = 2
	logError = 3
	// maxLogBytes bounds one pln_log line; the rest is cut.
	maxLogBytes = 4 << 10
)

func (h *Host) hostFunctions() []extism.HostFunction {
	i64 := extism.ValueTypeI64
	return []extism.HostFunction{
		extism.NewHostFunctionWithStack("pln_call", h.plnCall, []extism.ValueType{i64, i64}, []extism.ValueType{i64}),
		extism.NewHostFunctionWithStack("pln_caller", h.plnCaller, nil, []extism.ValueType{i64}),
		extism.NewHostFunctionWithStack("pln_log", h.plnLog, []extism.ValueType{i64, i64}, nil),
	}
}

func current(ctx context.Context) *callState {
	cs, ok := ctx.Value(callKey{}).(*callState)
	if !ok {
		panic("pln host function called outside a pln call")
	}
	return cs
}

// plnCall is pln_call(uri, input) -> result: the result block is 0 and the
// output, or 1 and an error message.
func (h *Host) plnCall(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
	cs := current(ctx)
	uri := readBlock(p, "pln_call uri", stack[0])
	input := readBlock(p, "pln_call input", stack[1])
	out, err := h.call(ctx, cs, string(uri), input)
	var res []byte
	if err != nil {
		res = append([]byte{1}, err.Error()...)
	} else {
		res = make([]byte, 1+len(out))
		copy(res[1:], out)
	}
	stack[0] = writeBlock(p, "pln_call result", res)
}

// call routes one pln_call: the callee sees the chain grown by this call.
func (h *Host) call(ctx context.Context, cs *callState, uri string, input []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(uri, "pln://")
	kind, _, _ := strings.Cut(rest, "/")
	switch {
	case !ok:
		return nil, fmt.Errorf("%q is not a pln:// URI (want pln://seed/<name>/<fn>)", uri)
	case kind == "service":
		return nil, fmt.Errorf("%q: services are not supported yet", uri)
	case kind != "seed":
		return nil, fmt.Errorf("%q: unknown kind %q (want pln://seed/<name>/<fn>)", uri, kind)
	case h.router == nil:
		return nil, fmt.Errorf("%q: this host routes no calls", uri)
	case cs.warming:
		return nil, fmt.Errorf("%q: %s may not call other seeds: it runs before the instance has a caller", uri, WarmExport)
	}
	cc := cs.cc
	cc.Chain = append(slices.Clip(cs.cc.Chain), cs.m.name+"/"+cs.fn)
	cc.Effect = nil // the callee's effects are its own caller's concern
	var out []byte
	var err error
	if len(cc.Chain) >= h.cfg.MaxDepth { // the callee would refuse: save the trip
		err = fmt.Errorf("%s: %w: %d calls deep, the limit is %d (%s); a seed probably calls itself in a loop",
			uri, ErrCycle, len(cc.Chain), h.cfg.MaxDepth, chainText(cc.Chain))
	} else {
		// Waiting on the network is no use of a turn: let another call run.
		held := cs.turn
		if held {
			cs.m.giveTurn()
			cs.turn = false
		}
		if err = cs.reach(); err == nil {
			out, err = h.router.Call(ctx, cc, uri, input)
		}
		if held {
			if cs.turn = cs.m.takeTurn(ctx); !cs.turn && err == nil {
				err = ctx.Err() // the call is over; the guest is stopped before it runs on
			}
		}
	}
	if errors.Is(err, ErrCycle) {
		cs.cycle = err
	}
	return out, err
}

// callerInfo is what pln_caller answers, as JSON.
type callerInfo struct {
	Key        string            `json:"key"`         // hex; empty if the caller is not known
	Props      map[string]string `json:"props"`       // never null
	Chain      []string          `json:"chain"`       // the calls that led here, outermost first; never null
	DeadlineMS int64             `json:"deadline_ms"` // milliseconds left in this call
}

// plnCaller is pln_caller() -> info.
func (h *Host) plnCaller(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
	cs := current(ctx)
	info := callerInfo{
		Props:      cs.cc.Props,
		Chain:      cs.cc.Chain,
		DeadlineMS: max(0, time.Until(cs.cc.Deadline).Milliseconds()),
	}
	if !cs.cc.Caller.IsZero() {
		info.Key = cs.cc.Caller.String()
	}
	if info.Props == nil {
		info.Props = map[string]string{}
	}
	if info.Chain == nil {
		info.Chain = []string{}
	}
	b, err := json.Marshal(info)
	if err != nil {
		panic(fmt.Errorf("pln_caller: %w", err))
	}
	stack[0] = writeBlock(p, "pln_caller result", b)
}

// plnLog is pln_log(level, msg).
func (h *Host) plnLog(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
	cs := current(ctx)
	level := slog.LevelError
	switch stack[0] {
	case logDebug:
		level = slog.LevelDebug
	case logInfo:
		level = slog.LevelInfo
	case logWarn:
		level = slog.LevelWarn
	}
	if !h.log.Enabled(ctx, level) {
		return
	}
	msg := readBlock(p, "pln_log message", stack[1])
	if len(msg) > maxLogBytes {
		msg = append(msg[:maxLogBytes:maxLogBytes], "…"...)
	}
	caller := ""
	if !cs.cc.Caller.IsZero() {
		caller = cs.cc.Caller.String()
	}
	h.log.LogAttrs(ctx, level, string(msg),
		slog.String("seed", cs.m.name), slog.String("fn", cs.fn), slog.String("caller", caller))
}

// readBlock copies an Extism block out of the guest. Offset 0 is the
// empty block. A bad offset crashes the call, as a bad pointer would.
func readBlock(p *extism.CurrentPlugin, what string, off uint64) []byte {
	if off == 0 {
		return nil
	}
	b, err := p.ReadBytes(off)
	if err != nil {
		panic(fmt.Errorf("%s: block %d: %w", what, off, err))
	}
	return b
}

// writeBlock copies b into a new Extism block. The kernel answers 0 when
// the block does not fit under the memory cap; the call then crashes
// rather than hand the guest a block it does not have.
func writeBlock(p *extism.CurrentPlugin, what string, b []byte) uint64 {
	off, err := p.Alloc(uint64(len(b)))
	if err != nil {
		panic(fmt.Errorf("%s: %w", what, err))
	}
	if off == 0 {
		panic(fmt.Errorf("%s: no room for %d bytes under the memory cap", what, len(b)))
	}
	if !p.Memory().Write(uint32(off), b) {
		panic(fmt.Errorf("%s: block %d is outside memory", what, off))
	}
	return off
}
