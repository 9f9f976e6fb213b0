package daemon

import (
	"context"
	"errors"
	"time"
)

// CallRequest is 'pln call': run fn of a seed with input, wherever a ready
// replica is.
type CallRequest struct {
	Seed    string        `json:"seed"`
	Fn      string        `json:"fn"`
	Input   []byte        `json:"input,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// CallResult is the seed's output.
type CallResult struct {
	Output []byte `json:"output"`
}

func init() { register("call", call) }

func call(ctx context.Context, n *Node, r CallRequest) (*CallResult, error) {
	rs := n.replicas.Load()
	if rs == nil {
		return nil, errors.New("calls need a running node; start one with 'pln up'")
	}
	if r.Timeout <= 0 {
		r.Timeout = defaultCallTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	out, err := rs.Call(ctx, r.Seed, r.Fn, r.Input, nil, n.self)
	if err != nil {
		return nil, err
	}
	return &CallResult{Output: out}, nil
}
