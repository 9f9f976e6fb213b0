package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/pln-mesh/pln/oplog"
)

// Host runs seeds: it compiles each artifact once, keeps the machine code in
// memory while a seed uses it and on disk for the next start, and hands out
// a Module per seed. Its methods are safe for concurrent use.
type Host struct {
	cfg    Config
	router Router
	log    *slog.Logger
	cache  wazero.CompilationCache
	funcs  []extism.HostFunction
	turns  chan struct{} // a token for each call running guest code (Config.Runners)

	mu       sync.Mutex
	closed   bool
	compiled map[compiledKey]*compiled
	failed   map[compiledKey]failure // code that would not compile, so a retry fails fast
	modules  map[*Module]struct{}
}

// Router is what pln_call reaches: the node, which routes by URI to a
// replica here or across the mesh. cc is the calling seed's context with
// its own "seed/fn" appended to Chain and Deadline set to the time the
// call must end by; Caller and Props are still the original caller's.
type Router interface {
	Call(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error)
}

// compiledKey names one compiled plug-in. Memory caps are per wazero
// runtime, so seeds of one digest with different caps get a plug-in each;
// they still share machine code, which wazero's compilation cache keys by
// the code's hash alone.
type compiledKey struct {
	digest oplog.Digest
	pages  uint32
}

// compiled is a compiled plug-in and the modules using it.
type compiled struct {
	key   compiledKey
	ready chan struct{} // closed once plugin or err is set
	// Set under Host.mu before ready closes; read after ready, or under
	// Host.mu.
	plugin *extism.CompiledPlugin
	err    error
	refs   int // guarded by Host.mu
}

// failure is a compilation that failed, remembered for a while: the daemon
// retries a seed it was chosen for on every placement tick, and each
// failure inside extism leaks a wazero runtime (see build).
type failure struct {
	err error
	at  time.Time
}

// Memory of failed compilations.
const (
	maxFailed   = 256         // failures remembered at most
	failedRetry = time.Minute // how long a failure is final (a full disk may clear)
)

// New starts a host. r receives the calls guests make with pln_call.
func New(ctx context.Context, cfg Config, r Router) (*Host, error) {
	cfg = cfg.withDefaults()
	h := &Host{
		cfg: cfg, router: r, log: cfg.Logger,
		compiled: make(map[compiledKey]*compiled),
		failed:   make(map[compiledKey]failure),
		modules:  make(map[*Module]struct{}),
		turns:    make(chan struct{}, cfg.Runners),
	}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache in %s: %w", cfg.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	h.funcs = h.hostFunctions()
	return h, nil
}

// Load makes seed name ready to call: it checks that code hashes to digest,
// compiles it (or takes the compiled code from memory or the disk cache),
// and warms one instance, so that the first call does not pay for it.
// Calling Load again for the same name gives a second, independent module;
// the caller closes the old one.
func (h *Host) Load(ctx context.Context, name string, digest oplog.Digest, code []byte, l Limits) (*Module, error) {
	if sum := sha256.Sum256(code); sum != digest {
		return nil, fmt.Errorf("wasm: seed %s: %w: the code's sha256 is %s, the seed names %s",
			name, ErrDigest, oplog.Digest(sum).Short(), digest.Short())
	}
	l = l.withDefaults()
	c, err := h.compile(ctx, compiledKey{digest, l.pages()}, code)
	if err != nil {
		return nil, fmt.Errorf("wasm: seed %s (%s): %w", name, digest.Short(), err)
	}
	m, err := newModule(ctx, h, c, name, l)
	if err != nil {
		h.release(context.Background(), c)
		return nil, fmt.Errorf("wasm: seed %s (%s): %w", name, digest.Short(), err)
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.modules[m] = struct{}{}
	}
	h.mu.Unlock()
	if closed {
		m.Close(ctx)
		return nil, fmt.Errorf("wasm: host %w", ErrClosed)
	}
	return m, nil
}

// compile returns the compiled plug-in for key, compiling it if no module
// holds one, and takes a reference on it. Concurrent loads of one key wait
// for a single compilation.
func (h *Host) compile(ctx context.Context, key compiledKey, code []byte) (*compiled, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("host %w", ErrClosed)
	}
	f, failedBefore := h.failed[key]
	if failedBefore && time.Since(f.at) < failedRetry {
		h.mu.Unlock()
		return nil, f.err
	}
	c := h.compiled[key]
	if c != nil {
		c.refs++
		h.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			h.release(context.Background(), c)
			return nil, ctx.Err()
		}
		if c.err != nil {
			return nil, c.err
		}
		return c, nil
	}
	c = &compiled{key: key, ready: make(chan struct{}), refs: 1}
	h.compiled[key] = c
	h.mu.Unlock()

	plugin, err := h.build(ctx, key.pages, code, failedBefore)
	h.mu.Lock()
	c.plugin, c.err = plugin, err
	if err == nil {
		delete(h.failed, key)
	} else {
		delete(h.compiled, key)
		if ctx.Err() == nil { // not the caller giving up: remember it
			if len(h.failed) >= maxFailed {
				clear(h.failed)
			}
			h.failed[key] = failure{err, time.Now()}
		}
	}
	h.mu.Unlock()
	close(c.ready)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// build compiles code into an Extism plug-in whose every instance has at
// most pages of memory (and as much again for the Extism kernel's), whose
// calls stop when their context ends, and which sees the pln host functions
// and WASI without files, network, arguments or environment.
//
// Extism leaks the wazero runtime of a compilation that fails, so code that
// failed before is first compiled on a runtime of our own, which is closed
// whatever happens (once the plug-in holds the machine code).
func (h *Host) build(ctx context.Context, pages uint32, code []byte, suspect bool) (*extism.CompiledPlugin, error) {
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(h.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages)
	if suspect {
		rt := wazero.NewRuntimeWithConfig(ctx, rc)
		defer rt.Close(ctx)
		if _, err := rt.CompileModule(ctx, code); err != nil {
			return nil, fmt.Errorf("compile under a %s memory cap: %w", sizeText(int64(pages)*pageBytes), err)
		}
	}
	manifest := extism.Manifest{
		Wasm: []extism.Wasm{extism.WasmData{Data: code, Name: "main"}},
		Memory: &extism.ManifestMemory{
			MaxPages:             pages,
			MaxHttpResponseBytes: 0, // no HTTP: AllowedHosts is empty anyway
			MaxVarBytes:          1 << 20,
		},
	}
	p, err := extism.NewCompiledPlugin(ctx, manifest, extism.PluginConfig{RuntimeConfig: rc, EnableWasi: true}, h.funcs)
	if err != nil {
		return nil, fmt.Errorf("compile under a %s memory cap: %w", sizeText(int64(pages)*pageBytes), err)
	}
	return p, nil
}

// release drops a reference on c; the last one closes its plug-in, which
// stops whatever still runs on it.
func (h *Host) release(ctx context.Context, c *compiled) {
	h.mu.Lock()
	c.refs--
	last := c.refs == 0 && c.plugin != nil
	if last && h.compiled[c.key] == c {
		delete(h.compiled, c.key)
	}
	h.mu.Unlock()
	if last {
		if err := c.plugin.Close(ctx); err != nil {
			h.log.Warn("close compiled seed", "digest", c.key.digest.Short(), "err", err)
		}
	}
}

// forget is called by a module that has closed.
func (h *Host) forget(m *Module) {
	h.mu.Lock()
	delete(h.modules, m)
	h.mu.Unlock()
}

// Close closes every module (waiting for their calls while ctx allows),
// then the compilation cache. The disk cache stays for the next start.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	ms := make([]*Module, 0, len(h.modules))
	for m := range h.modules {
		ms = append(ms, m)
	}
	h.mu.Unlock()
	var errs []error
	for _, m := range ms {
		errs = append(errs, m.Close(ctx))
	}
	errs = append(errs, h.cache.Close(ctx))
	return errors.Join(errs...)
}

// take waits for a token of sem, or for ctx to end.
func take(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// share is how many of the host's runners one seed may hold.
func (c Config) share() int { return max(1, c.Runners-c.Runners/runnerShareDiv) }
