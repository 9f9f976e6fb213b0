package wasm

import (
	"log/slog"
	"runtime"
	"time"
)

// Config tunes a Host. The zero value of every field takes the default
// named beside it; DefaultConfig spells them out.
type Config struct {
	// CacheDir holds wazero's on-disk compilation cache, so a restart or a
	// second seed of the same digest does not compile the code again.
	// Empty: compile in memory only.
	CacheDir string
	// MaxDepth bounds the call chain: a call whose chain already holds
	// MaxDepth "seed/fn" entries fails with ErrCycle. Default 8.
	MaxDepth int
	// MaxInputBytes bounds a call's input, checked before the call.
	// Default 4 MiB.
	MaxInputBytes int
	// MaxOutputBytes bounds a call's output, checked after the call: a
	// larger output is ErrOutputTooLarge, never a cut or empty answer.
	// Default 4 MiB.
	MaxOutputBytes int
	// Logger receives pln_log lines (keys seed, fn, caller) and the host's
	// own warnings. Default slog.Default().
	Logger *slog.Logger
	// Runners is how many calls run guest code at once, over every seed;
	// the others wait their turn, holding no instance. A call waiting on a
	// pln_call gives its turn up meanwhile, and no one seed may hold more
	// than three quarters of the turns, so a seed that hogs the CPU leaves
	// the others room. Default 4 × GOMAXPROCS: enough to keep every core
	// busy, few enough that the node's own work (its heartbeat, the mesh)
	// is not queued behind dozens of guests.
	Runners int
}

// Config defaults.
const (
	// A seed's share of the runners: all but a quarter of them.
	runnerShareDiv        = 4
	DefaultMaxDepth       = 8
	DefaultMaxInputBytes  = 4 << 20
	DefaultMaxOutputBytes = 4 << 20
)

// DefaultConfig is the configuration New uses for fields left zero.
func DefaultConfig() Config {
	return Config{
		MaxDepth:       DefaultMaxDepth,
		MaxInputBytes:  DefaultMaxInputBytes,
		MaxOutputBytes: DefaultMaxOutputBytes,
		Logger:         slog.Default(),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxDepth <= 0 {
		c.MaxDepth = d.MaxDepth
	}
	if c.MaxInputBytes <= 0 {
		c.MaxInputBytes = d.MaxInputBytes
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = d.MaxOutputBytes
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Runners <= 0 {
		c.Runners = 4 * runtime.GOMAXPROCS(0)
	}
	return c
}

// Limits are one seed's resource limits, from its seed op. Zero fields
// take the defaults below.
type Limits struct {
	// MemoryBytes caps each instance's linear memory, rounded up to whole
	// 64 KiB pages; the Extism kernel's memory (inputs, outputs, blocks)
	// is capped at the same size. Default 64 MiB, at most 4 GiB.
	MemoryBytes int64
	// Timeout bounds one call; a call also ends at its caller's deadline
	// if that comes first. Default 30 s.
	Timeout time.Duration
	// Concurrency is how many calls run at once, each on its own
	// instance; one more fails at once with ErrOverloaded. Default 16.
	Concurrency int
}

// Limit defaults and bounds.
const (
	DefaultMemoryBytes = 64 << 20
	DefaultTimeout     = 30 * time.Second
	DefaultConcurrency = 16
	// MaxMemoryBytes is all a wasm32 memory can address: 65536 pages.
	MaxMemoryBytes = 4 << 30
	pageBytes      = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = DefaultMemoryBytes
	}
	l.MemoryBytes = min(l.MemoryBytes, MaxMemoryBytes)
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultConcurrency
	}
	return l
}

// pages is MemoryBytes in wasm pages, rounded up.
func (l Limits) pages() uint32 {
	return uint32((l.MemoryBytes + pageBytes - 1) / pageBytes)
}
