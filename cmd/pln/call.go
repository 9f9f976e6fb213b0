package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// CallCmd calls a function of a seed, wherever a replica runs.
type CallCmd struct {
	Seed    string        `arg:"" help:"The seed to call."`
	Fn      string        `arg:"" help:"The function to call."`
	Input   string        `arg:"" optional:"" help:"Input, or - to read it from stdin."`
	Timeout time.Duration `help:"How long the call may take." default:"30s"`
}

func (c *CallCmd) Run(ctx context.Context, g *Globals) error {
	input := []byte(c.Input)
	if c.Input == "-" {
		var err error
		if input, err = io.ReadAll(io.LimitReader(os.Stdin, 4<<20+1)); err != nil {
			return err
		}
	}
	res, err := call[daemon.CallResult](ctx, g, "call", daemon.CallRequest{Seed: c.Seed, Fn: c.Fn, Input: input, Timeout: c.Timeout})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	_, err = os.Stdout.Write(res.Output)
	return err
}

// BenchCmd groups the benchmarks a user can run against a cluster.
type BenchCmd struct {
	Call BenchCallCmd `cmd:"" help:"Drive calls to a seed and report calls/s and latency."`
}

// BenchCallCmd drives calls through the running node.
type BenchCallCmd struct {
	Seed        string        `arg:""`
	Fn          string        `arg:""`
	Input       string        `help:"Input for every call."`
	Concurrency int           `help:"Callers at once." default:"16"`
	Duration    time.Duration `help:"How long to run." default:"10s"`
}

func (c *BenchCallCmd) Run(ctx context.Context, g *Globals) error {
	if c.Concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1")
	}
	conn, err := g.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	if !conn.Running() {
		return fmt.Errorf("no node is running in %s; start one with 'pln up'", g.Dir)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range c.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := time.Now()
				_, err := daemon.Call[daemon.CallResult](ctx, conn, "call", daemon.CallRequest{Seed: c.Seed, Fn: c.Fn, Input: []byte(c.Input)})
				d := time.Since(t)
				mu.Lock()
				if err != nil && ctx.Err() == nil {
					errs++
				} else if err == nil {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	res := map[string]any{"calls": len(lat), "errors": errs, "calls_per_s": float64(len(lat)) / elapsed.Seconds(),
		"p50": pct(0.5).String(), "p90": pct(0.9).String(), "p99": pct(0.99).String()}
	if g.JSON {
		return emit(res)
	}
	fmt.Printf("%d calls in %s with %d callers: %.0f calls/s, %d errors\nlatency p50 %s  p90 %s  p99 %s\n",
		len(lat), elapsed.Round(time.Millisecond), c.Concurrency, res["calls_per_s"], errs, pct(0.5), pct(0.9), pct(0.99))
	return nil
}
