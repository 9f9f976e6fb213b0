package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// The fixtures, built from source by testdata/wasm/build.sh.
const (
	goGuest = "hello.wasm"     // Go: greet, echo, call, whoami, log
	cGuest  = "c/greet_c.wasm" // C: greet, echo
	spin    = "hostile/spin.wasm"
	trap    = "hostile/trap.wasm"
	grow    = "hostile/grow.wasm"
	huge    = "hostile/huge.wasm"
	cold    = "hostile/coldwarm.wasm" // pln_warm traps
)

// cacheDir is one compilation cache for the whole package, so that the Go
// guest is compiled once per test run (it takes seconds under -race).
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pln-wasm-cache-")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func fixture(t testing.TB, name string) ([]byte, oplog.Digest) {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "testdata", "wasm", name))
	if err != nil {
		t.Fatalf("fixture %s: %v (rebuild with testdata/wasm/build.sh)", name, err)
	}
	return code, sha256.Sum256(code)
}

// newHost starts a host on the shared cache that logs into the test's log.
func newHost(t testing.TB, cfg Config, r Router) *Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := New(context.Background(), cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close host: %v", err)
		}
	})
	return h
}

// load loads a fixture as seed name.
func load(t testing.TB, h *Host, name, file string, l Limits) *Module {
	t.Helper()
	if file == goGuest {
		coldGoLoad(t)
	}
	code, digest := fixture(t, file)
	m, err := h.Load(context.Background(), name, digest, code, l)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// goCold is the first load of the Go guest into the shared cache: a real
// compilation, timed, which every later load can compare itself with.
var goCold struct {
	once sync.Once
	took time.Duration
	err  error
}

// coldGoLoad compiles the Go guest into the shared cache, once, and says
// how long that took.
func coldGoLoad(t testing.TB) time.Duration {
	t.Helper()
	goCold.once.Do(func() {
		code, digest := fixture(t, goGuest)
		ctx := context.Background()
		h, err := New(ctx, Config{CacheDir: cacheDir}, nil)
		if err != nil {
			goCold.err = err
			return
		}
		defer h.Close(ctx)
		start := time.Now()
		_, goCold.err = h.Load(ctx, "cold", digest, code, Limits{})
		goCold.took = time.Since(start)
	})
	if goCold.err != nil {
		t.Fatalf("compile the Go guest: %v", goCold.err)
	}
	return goCold.took
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// routerFunc is a Router in a function.
type routerFunc func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error)

func (f routerFunc) Call(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
	return f(ctx, cc, uri, input)
}

// lateRouter is a Router whose target is set after the host exists, for a
// router that calls back into a module of the same host.
type lateRouter struct {
	mu sync.Mutex
	f  routerFunc
}

func (r *lateRouter) set(f routerFunc) {
	r.mu.Lock()
	r.f = f
	r.mu.Unlock()
}

func (r *lateRouter) Call(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
	r.mu.Lock()
	f := r.f
	r.mu.Unlock()
	return f(ctx, cc, uri, input)
}

// filepathWalk calls f for every regular file under dir.
func filepathWalk(dir string, f func(path string, size int64, mod time.Time)) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f(path, info.Size(), info.ModTime())
		return nil
	})
}
