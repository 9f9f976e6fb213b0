package wasm

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/pln-mesh/pln/oplog"
)

// Module is one seed loaded on this node: a bounded pool of instances of its
// compiled code. Each call runs alone on one instance; an instance that
// crashed, ran out of time or answered too much is thrown away, never
// reused.
type Module struct {
	h      *Host
	c      *compiled
	name   string
	limits Limits
	funcs  map[string]bool // the exports a caller may call

	slots chan struct{}  // one token per running call
	turns chan struct{}  // one token per call running guest code: the seed's share of the runners
	idle  chan *instance // instances parked between calls

	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

// CallContext is who a call is for, as the host tells the guest.
type CallContext struct {
	Caller   oplog.Key         // the node (or seed's node) that made the call
	Props    map[string]string // the caller's properties from its grant
	Chain    []string          // "seed/fn" entries so far, outermost first
	Deadline time.Time         // when the call must end; zero: the seed's timeout alone
	// Effect, if set, is called once, just before the call first reaches
	// beyond its instance (its first pln_call). Until then the call has
	// had no effect anyone else could see, and running it again elsewhere
	// is safe; from then on it is not. If Effect fails, so does every
	// pln_call of the call, with its error, and nothing leaves the
	// instance.
	Effect func() error
}

// instance is one instantiated plug-in and what its last call wrote to
// standard error (a Go guest's panic lands there).
type instance struct {
	p      *extism.Plugin
	stderr *headBuffer
}

// lifecycleExports are exports the runtime calls itself, never a caller.
var lifecycleExports = []string{"_start", "_initialize", "__wasm_call_ctors", "hs_init", "hs_exit", WarmExport}

// WarmExport is the export a guest may offer to be warmed: the host calls
// it once on every new instance, with no input, before the instance takes
// a call. The guest's runtime starts then (about 2 ms for Go), and the
// guest may set itself up; no caller waits for either. It may log but not
// call other seeds, and it fails the instance if it fails.
const WarmExport = "pln_warm"

func newModule(ctx context.Context, h *Host, c *compiled, name string, l Limits) (*Module, error) {
	m := &Module{
		h: h, c: c, name: name, limits: l,
		slots: make(chan struct{}, l.Concurrency),
		turns: make(chan struct{}, h.cfg.share()),
		idle:  make(chan *instance, l.Concurrency),
	}
	inst, err := m.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	m.funcs = make(map[string]bool)
	for fn := range inst.p.Module().ExportedFunctions() {
		if !slices.Contains(lifecycleExports, fn) {
			m.funcs[fn] = true
		}
	}
	m.idle <- inst
	return m, nil
}

// newInstance instantiates the seed's code: its own memory, its own Extism
// kernel. The guest sees a real clock and a real random source, and nothing
// else of the machine: no files, no network, no arguments, no environment.
func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	stderr := &headBuffer{max: maxStderrBytes}
	cfg := wazero.NewModuleConfig().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStderr(stderr)
	p, err := m.c.plugin.Instance(ctx, extism.PluginInstanceConfig{ModuleConfig: cfg})
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	inst := &instance{p: p, stderr: stderr}
	if p.FunctionExists(WarmExport) {
		if err := m.warm(ctx, inst); err != nil {
			inst.close()
			return nil, err
		}
	}
	return inst, nil
}

// warm calls the guest's WarmExport on a new instance, within the seed's
// timeout.
func (m *Module) warm(ctx context.Context, inst *instance) error {
	ctx, cancel := context.WithTimeout(ctx, m.limits.Timeout)
	defer cancel()
	cs := &callState{m: m, fn: WarmExport, warming: true}
	rc, _, err := inst.p.CallWithContext(context.WithValue(ctx, callKey{}, cs), WarmExport, nil)
	if err == nil && rc == 0 {
		return nil
	}
	_, err = m.outcome(ctx, inst, cs, rc, err)
	return err
}

func (i *instance) close() { i.p.Close(context.Background()) }

// Name is the seed's name.
func (m *Module) Name() string { return m.name }

// Limits are the seed's limits, defaults filled in.
func (m *Module) Limits() Limits { return m.limits }

// InFlight is how many calls are running now.
func (m *Module) InFlight() int { return len(m.slots) }

// Call runs fn with input for the caller cc. It fails at once, without
// running anything, with ErrInputTooLarge, ErrNoFunction, ErrCycle or
// ErrOverloaded; otherwise it runs fn on an idle instance (or a new one)
// until fn returns or the call's deadline passes (ErrTimeout), whichever
// is first.
func (m *Module) Call(ctx context.Context, fn string, input []byte, cc CallContext) ([]byte, error) {
	cfg := &m.h.cfg
	if len(input) > cfg.MaxInputBytes {
		return nil, fmt.Errorf("seed %s: %s: %w: %d bytes, at most %d", m.name, fn, ErrInputTooLarge, len(input), cfg.MaxInputBytes)
	}
	if !m.funcs[fn] {
		return nil, fmt.Errorf("seed %s: %w %q (it exports %s)", m.name, ErrNoFunction, fn, m.exports())
	}
	if len(cc.Chain) >= cfg.MaxDepth {
		return nil, fmt.Errorf("seed %s: %s: %w: %d calls deep, the limit is %d (%s → %s/%s); a seed probably calls itself in a loop",
			m.name, fn, ErrCycle, len(cc.Chain), cfg.MaxDepth, chainText(cc.Chain), m.name, fn)
	}
	if !m.enter() {
		return nil, fmt.Errorf("seed %s: module %w", m.name, ErrClosed)
	}
	defer m.calls.Done()
	select {
	case m.slots <- struct{}{}:
	default:
		return nil, fmt.Errorf("seed %s: %w: %d calls running; try another replica", m.name, ErrOverloaded, m.limits.Concurrency)
	}
	defer func() { <-m.slots }()

	deadline := time.Now().Add(m.limits.Timeout)
	if !cc.Deadline.IsZero() && cc.Deadline.Before(deadline) {
		deadline = cc.Deadline
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if d, _ := ctx.Deadline(); d.Before(deadline) {
		deadline = d // the caller's context ends first
	}
	cc.Deadline = deadline
	if ctx.Err() != nil { // out of time before it began: spare the instances
		return nil, m.failure(ctx, fn, ctx.Err())
	}
	cs := &callState{m: m, fn: fn, cc: cc}
	if !m.takeTurn(ctx) {
		return nil, m.failure(ctx, fn, ctx.Err())
	}
	cs.turn = true
	defer func() {
		if cs.turn {
			m.giveTurn()
		}
	}()

	var inst *instance
	select {
	case inst = <-m.idle:
	default:
		var err error
		if inst, err = m.newInstance(ctx); err != nil {
			return nil, m.failure(ctx, fn, err)
		}
	}
	inst.stderr.reset()
	rc, out, err := inst.p.CallWithContext(context.WithValue(ctx, callKey{}, cs), fn, input)
	keep := true
	switch {
	case err == nil && rc == 0 && len(out) > cfg.MaxOutputBytes:
		err, keep = fmt.Errorf("seed %s: %s: %w: %d bytes, at most %d", m.name, fn, ErrOutputTooLarge, len(out), cfg.MaxOutputBytes), false
	case err != nil || rc != 0:
		keep, err = m.outcome(ctx, inst, cs, rc, err)
	}
	if !keep {
		inst.close()
	} else {
		m.park(inst)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// outcome says why a call failed, and whether its instance may serve
// again. Only a guest that reported an error and returned keeps its
// instance: it ran its own code to the end, and a new Go guest instance
// costs some 5 ms against a 30 µs call, so discarding it would let any
// caller with bad input make every call that expensive. An instance that
// trapped, exited, ran out of time or answered too much is closed.
func (m *Module) outcome(ctx context.Context, inst *instance, cs *callState, rc uint32, err error) (keep bool, _ error) {
	fn := cs.fn
	if ctx.Err() != nil {
		return false, m.failure(ctx, fn, err)
	}
	if err == nil {
		return true, fmt.Errorf("seed %s: %s failed (returned %d) without saying why", m.name, fn, rc)
	}
	// The guest set an error and returned: its own words.
	if msg := inst.p.GetErrorWithContext(ctx); msg != "" && msg == err.Error() {
		if cs.cycle != nil {
			// The guest passed on a refused pln_call. Pass on the refusal
			// itself: it names the chain, and wrapping it again at every
			// level of a loop would repeat it eight times over.
			return true, cs.cycle
		}
		return true, fmt.Errorf("seed %s: %s: %s", m.name, fn, msg)
	}
	return false, fmt.Errorf("seed %s: %s: %w: %s%s (its memory cap is %s)",
		m.name, fn, ErrTrap, firstLine(err.Error()), inst.stderr.suffix(), sizeText(m.limits.MemoryBytes))
}

// failure words an error that came with the call's context ending.
func (m *Module) failure(ctx context.Context, fn string, err error) error {
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return fmt.Errorf("seed %s: %s: %w: stopped at its deadline (the seed's timeout is %v): %w",
			m.name, fn, ErrTimeout, m.limits.Timeout, context.DeadlineExceeded)
	case context.Canceled:
		return fmt.Errorf("seed %s: %s: the caller gave up: %w", m.name, fn, context.Canceled)
	}
	return fmt.Errorf("seed %s: %s: %w", m.name, fn, err)
}

// takeTurn waits for a turn to run guest code: one of the seed's share of
// the runners and then one of the host's, or for ctx to end.
func (m *Module) takeTurn(ctx context.Context) bool {
	if !take(ctx, m.turns) {
		return false
	}
	if !take(ctx, m.h.turns) {
		<-m.turns
		return false
	}
	return true
}

func (m *Module) giveTurn() {
	<-m.h.turns
	<-m.turns
}

// park returns a healthy instance to the pool, or closes it if the module
// is closing.
func (m *Module) park(inst *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		inst.close()
		return
	}
	select {
	case m.idle <- inst:
	default: // cannot happen: at most Concurrency instances exist
		inst.close()
	}
}

// enter admits a call unless the module is closed.
func (m *Module) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.calls.Add(1)
	return true
}

// Close stops new calls and waits for running ones while ctx allows; then
// it frees the instances. Calls still running when ctx ends are stopped
// (the last module of a digest closes the compiled code they run on), and
// Close returns once they have; a call waiting in pln_call ends at its
// deadline at the latest.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.h.forget(m)

	done := make(chan struct{})
	go func() {
		m.calls.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("seed %s: %d calls still running at close: %w", m.name, m.InFlight(), ctx.Err())
	}
	for {
		select {
		case inst := <-m.idle:
			inst.close()
			continue
		default:
		}
		break
	}
	m.h.release(context.Background(), m.c)
	<-done // stopped calls end promptly; one in pln_call ends by its deadline
	return err
}

func (m *Module) exports() string {
	fns := make([]string, 0, len(m.funcs))
	for fn := range m.funcs {
		fns = append(fns, fn)
	}
	if len(fns) == 0 {
		return "no functions"
	}
	slices.Sort(fns)
	return fmt.Sprint(fns)
}

// How much of a call's standard error is kept for its error message:
// enough for a Go panic's first lines.
const (
	maxStderrBytes = 1 << 10
	maxStderrLines = 4
)

// headBuffer keeps the first max bytes written to it. It is written and
// read by the goroutine running the call.
type headBuffer struct {
	max int
	buf []byte
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *headBuffer) reset() { b.buf = b.buf[:0] }

// suffix is what the guest wrote, for an error message.
func (b *headBuffer) suffix() string {
	var lines []string
	for line := range strings.Lines(string(b.buf)) {
		if line = strings.TrimSpace(line); line != "" && len(lines) < maxStderrLines {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "; it wrote: " + strings.Join(lines, " | ")
}
