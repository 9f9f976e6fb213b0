package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
)

// benchInput is 64 bytes, the size of a small JSON request.
var benchInput = []byte(`{"name":"a reasonably sized input, some sixty-four bytes long!!"}`)[:64]

var quiet = Config{Logger: slog.New(slog.DiscardHandler)}

// BenchmarkCallEcho is one caller calling echo through Module.Call: the
// pool, the limits, the deadline and the host functions' context.
func BenchmarkCallEcho(b *testing.B) {
	for _, g := range guests {
		b.Run("guest="+g.lang, func(b *testing.B) {
			h := newHost(b, quiet, nil)
			m := load(b, h, "hello", g.file, Limits{Concurrency: 1})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Call(ctx, "echo", benchInput, CallContext{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFloorExtismEcho is the floor for BenchmarkCallEcho: one bare
// Extism plug-in instance, compiled as the host compiles (a timeout, so
// wazero stops calls at their deadline), calling echo with the same input.
func BenchmarkFloorExtismEcho(b *testing.B) {
	for _, g := range guests {
		b.Run("guest="+g.lang, func(b *testing.B) {
			ctx := context.Background()
			code, _ := fixture(b, g.file)
			cp, err := extism.NewCompiledPlugin(ctx,
				extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: code}}, Timeout: uint64(DefaultTimeout.Milliseconds())},
				extism.PluginConfig{EnableWasi: true, RuntimeConfig: wazero.NewRuntimeConfig().WithCompilationCache(sharedCache(b))},
				(&Host{}).hostFunctions())
			if err != nil {
				b.Fatal(err)
			}
			defer cp.Close(ctx)
			p, err := cp.Instance(ctx, extism.PluginInstanceConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.CallWithContext(ctx, "echo", benchInput); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCallEchoParallel is many callers calling echo on one seed whose
// concurrency lets them all run: throughput, in calls/s.
func BenchmarkCallEchoParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, callers := range []int{4, 16, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			perProc := max(1, callers/procs)
			h := newHost(b, quiet, nil)
			m := load(b, h, "hello", goGuest, Limits{Concurrency: perProc * procs})
			ctx := context.Background()
			warm(b, m, perProc*procs)
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(perProc)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := m.Call(ctx, "echo", benchInput, CallContext{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// warm fills the pool with n instances before the clock starts: the
// benchmark measures calls, not instantiation.
func warm(b *testing.B, m *Module, n int) {
	for len(m.idle) < n {
		inst, err := m.newInstance(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		m.idle <- inst
	}
}

// BenchmarkLoadCold is Load of the Go guest with an empty cache: a full
// compilation, plus a new host and one warm instance.
func BenchmarkLoadCold(b *testing.B) {
	code, digest := fixture(b, goGuest)
	ctx := context.Background()
	root := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		cfg := quiet
		cfg.CacheDir = filepath.Join(root, fmt.Sprint(i))
		loadOnce(b, ctx, cfg, digest, code)
		os.RemoveAll(cfg.CacheDir)
	}
}

// BenchmarkLoadCached is Load of the Go guest by a new host whose cache
// directory holds its compiled code: a restart.
func BenchmarkLoadCached(b *testing.B) {
	code, digest := fixture(b, goGuest)
	ctx := context.Background()
	cfg := quiet
	cfg.CacheDir = b.TempDir()
	loadOnce(b, ctx, cfg, digest, code)
	for b.Loop() {
		loadOnce(b, ctx, cfg, digest, code)
	}
}

func loadOnce(b *testing.B, ctx context.Context, cfg Config, digest [32]byte, code []byte) {
	h, err := New(ctx, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.Load(ctx, "hello", digest, code, Limits{}); err != nil {
		b.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// sharedCache is a compilation cache on the package's cache directory.
func sharedCache(b *testing.B) wazero.CompilationCache {
	coldGoLoad(b)
	c, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(context.Background()) })
	return c
}
