package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// SeedCmd publishes a WASM file, or an artifact the cluster holds by digest.
type SeedCmd struct {
	Target      string        `arg:"" help:"A .wasm file to publish (or, with --digest, the name to publish under)." placeholder:"FILE|NAME"`
	Name        string        `arg:"" optional:"" help:"Name to publish under (default: the file's name without .wasm)."`
	Digest      string        `help:"SHA-256 of an artifact the cluster already holds (64 hex digits); the argument is then the name."`
	Kind        string        `help:"wasm, site or blob." default:"wasm" enum:"wasm,site,blob"`
	Replicas    string        `help:"Replicas wanted, MIN or MIN:MAX; more than MIN as demand grows." default:"2" placeholder:"MIN[:MAX]"`
	Memory      string        `help:"Memory limit per instance (e.g. 64MiB)." default:"64MiB"`
	Timeout     time.Duration `help:"Per-call time limit." default:"30s"`
	Concurrency int64         `help:"Calls one replica runs at once." default:"16"`
	AllowProps  []string      `name:"allow-prop" help:"Run only on nodes with this property, key=value (repeatable; value * for any)." placeholder:"K=V"`
}

func (c *SeedCmd) Run(ctx context.Context, g *Globals) error {
	lo, hi, err := parseReplicas(c.Replicas)
	if err != nil {
		return err
	}
	mem, err := parseBytes(c.Memory)
	if err != nil {
		return err
	}
	policy, err := parseProps(c.AllowProps)
	if err != nil {
		return err
	}
	req := daemon.SeedRequest{Digest: c.Digest, Kind: c.Kind, MinReplicas: lo, MaxReplicas: hi,
		MemoryBytes: mem, Timeout: c.Timeout, Concurrency: c.Concurrency, Policy: policy}
	switch {
	case c.Digest != "" && c.Name != "":
		return fmt.Errorf("with --digest, give just the name to publish under")
	case c.Digest != "":
		req.Name = c.Target
	default:
		if req.File, err = filepath.Abs(c.Target); err != nil {
			return err
		}
		req.Name = c.Name
		if req.Name == "" {
			req.Name = strings.ToLower(strings.TrimSuffix(filepath.Base(c.Target), filepath.Ext(c.Target)))
		}
	}
	res, err := call[daemon.SeedResult](ctx, g, "seed", req)
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	fmt.Printf("seeded %s %s (op %s)\n", res.Name, res.Digest, res.ID.Short())
	return nil
}

// UnseedCmd withdraws a seed.
type UnseedCmd struct {
	Name string `arg:"" help:"Seed to withdraw."`
}

func (c *UnseedCmd) Run(ctx context.Context, g *Globals) error {
	res, err := call[daemon.OpResult](ctx, g, "unseed", daemon.UnseedRequest{Name: c.Name})
	return printOp(g, res, err)
}

// parseReplicas reads MIN or MIN:MAX.
func parseReplicas(s string) (lo, hi int64, err error) {
	a, b, ranged := strings.Cut(s, ":")
	lo, err = strconv.ParseInt(a, 10, 64)
	hi = lo
	if err == nil && ranged {
		hi, err = strconv.ParseInt(b, 10, 64)
	}
	if err != nil || lo < 1 || hi < lo {
		return 0, 0, fmt.Errorf("--replicas %q: want MIN or MIN:MAX with 1 ≤ MIN ≤ MAX, e.g. 2 or 2:8", s)
	}
	return lo, hi, nil
}

// parseBytes reads a size such as 64MiB, 1GiB, 512KiB or 1000000.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"B", 1}}
	num, mult := s, int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is not a number of bytes like 64MiB, 1GiB or 1048576", s)
	}
	return n * mult, nil
}
