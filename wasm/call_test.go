package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

var guests = []struct{ lang, file string }{{"go", goGuest}, {"c", cGuest}}

func TestGreetAndEcho(t *testing.T) {
	h := newHost(t, Config{}, nil)
	ctx := context.Background()
	for _, g := range guests {
		t.Run(g.lang, func(t *testing.T) {
			m := load(t, h, "hello-"+g.lang, g.file, Limits{})
			out, err := m.Call(ctx, "greet", []byte(`{"name":"x"}`), CallContext{})
			if err != nil || string(out) != `{"greeting":"hello, x"}` {
				t.Fatalf("greet = %q, %v; want {\"greeting\":\"hello, x\"}", out, err)
			}
			for _, in := range [][]byte{nil, []byte("a"), []byte("twelve bytes"), bytes.Repeat([]byte("0123456789"), 10_000)} {
				out, err := m.Call(ctx, "echo", in, CallContext{})
				if err != nil || !bytes.Equal(out, in) {
					t.Fatalf("echo of %d bytes = %d bytes, %v", len(in), len(out), err)
				}
			}
		})
	}
}

// A guest's own error reaches the caller in its words, is not a crash, and
// leaves the seed serving.
func TestGuestError(t *testing.T) {
	h := newHost(t, Config{}, nil)
	ctx := context.Background()
	for _, g := range guests {
		t.Run(g.lang, func(t *testing.T) {
			m := load(t, h, "hello-"+g.lang, g.file, Limits{})
			for _, in := range []string{"", "{}", "not json"} {
				_, err := m.Call(ctx, "greet", []byte(in), CallContext{})
				if err == nil || !strings.Contains(err.Error(), "greet wants") || errors.Is(err, ErrTrap) {
					t.Fatalf("greet(%q) = %v; want the guest's own error, not a crash", in, err)
				}
			}
			if out, err := m.Call(ctx, "greet", []byte(`{"name":"y"}`), CallContext{}); err != nil {
				t.Fatalf("greet after errors = %q, %v", out, err)
			}
		})
	}
}

func TestRefusedBeforeRunning(t *testing.T) {
	h := newHost(t, Config{MaxInputBytes: 1000}, nil)
	m := load(t, h, "hello", cGuest, Limits{})
	ctx := context.Background()
	if _, err := m.Call(ctx, "echo", make([]byte, 1001), CallContext{}); !errors.Is(err, ErrInputTooLarge) {
		t.Errorf("1001-byte input: %v; want ErrInputTooLarge", err)
	}
	_, err := m.Call(ctx, "nope", nil, CallContext{})
	if !errors.Is(err, ErrNoFunction) || !strings.Contains(err.Error(), "[echo greet]") {
		t.Errorf("unknown function: %v; want ErrNoFunction naming echo and greet", err)
	}
	for _, fn := range []string{"_initialize", "_start", "memory"} {
		if _, err := m.Call(ctx, fn, nil, CallContext{}); !errors.Is(err, ErrNoFunction) {
			t.Errorf("%s: %v; want ErrNoFunction", fn, err)
		}
	}
	chain := []string{"a/f", "b/g", "c/h", "d/i", "e/j", "f/k", "g/l", "h/m"}
	if _, err := m.Call(ctx, "echo", nil, CallContext{Chain: chain}); !errors.Is(err, ErrCycle) {
		t.Errorf("chain of %d: %v; want ErrCycle", len(chain), err)
	}
	if _, err := m.Call(ctx, "echo", nil, CallContext{Chain: chain[:7]}); err != nil {
		t.Errorf("chain of 7: %v; want it to run", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	h := newHost(t, Config{}, nil)
	ctx := context.Background()
	code, digest := fixture(t, cGuest)
	digest[0] ^= 1
	if _, err := h.Load(ctx, "hello", digest, code, Limits{}); !errors.Is(err, ErrDigest) {
		t.Fatalf("Load with a wrong digest: %v; want ErrDigest", err)
	}

	// Code that is not WASM fails to compile, and fails the same way, at
	// once, when the daemon tries again.
	code = []byte("#!/bin/sh\necho not wasm\n")
	_, err := h.Load(ctx, "script", sha256.Sum256(code), code, Limits{})
	if err == nil || !strings.Contains(err.Error(), "compile") {
		t.Fatalf("Load of a shell script: %v; want a compile error", err)
	}
	start := time.Now()
	_, again := h.Load(ctx, "script", sha256.Sum256(code), code, Limits{})
	if again == nil || again.Error() != err.Error() || time.Since(start) > 100*time.Millisecond {
		t.Errorf("second Load of a shell script: %v after %v; want the same error at once", again, time.Since(start))
	}
	// Once the failure is old, Load tries again, on a runtime of its own.
	h.mu.Lock()
	for k, f := range h.failed {
		f.at = f.at.Add(-failedRetry)
		h.failed[k] = f
	}
	h.mu.Unlock()
	if _, again := h.Load(ctx, "script", sha256.Sum256(code), code, Limits{}); again == nil || again.Error() != err.Error() {
		t.Errorf("Load of a shell script after the retry delay: %v; want %v", again, err)
	}
	t.Log(err)
}

func TestWhoami(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "hello", goGuest, Limits{Timeout: 3 * time.Second})
	var key oplog.Key
	key[0], key[31] = 0xab, 0xcd
	cc := CallContext{
		Caller:   key,
		Props:    map[string]string{"region": "eu", "tier": "gold"},
		Chain:    []string{"front/index"},
		Deadline: time.Now().Add(10 * time.Second),
	}
	out, err := m.Call(context.Background(), "whoami", nil, cc)
	if err != nil {
		t.Fatal(err)
	}
	var got callerInfo
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("whoami answered %q: %v", out, err)
	}
	if got.Key != key.String() || fmt.Sprint(got.Props) != fmt.Sprint(cc.Props) || fmt.Sprint(got.Chain) != "[front/index]" {
		t.Errorf("whoami = %+v; want key %s, props %v, chain [front/index]", got, key, cc.Props)
	}
	// The seed's 3 s timeout comes before the caller's 10 s deadline.
	if got.DeadlineMS <= 0 || got.DeadlineMS > 3000 {
		t.Errorf("deadline_ms = %d; want (0, 3000]", got.DeadlineMS)
	}

	out, err = m.Call(context.Background(), "whoami", nil, CallContext{Deadline: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil || got.Key != "" || got.Props == nil || got.Chain == nil || got.DeadlineMS > 1000 {
		t.Errorf("whoami with no caller = %s, %v; want an empty key, {} props, [] chain, deadline_ms ≤ 1000", out, err)
	}
}

func TestCallReachesRouter(t *testing.T) {
	type seen struct {
		cc    CallContext
		uri   string
		input string
	}
	var mu sync.Mutex
	var calls []seen
	r := routerFunc(func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
		mu.Lock()
		calls = append(calls, seen{cc, uri, string(input)})
		mu.Unlock()
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("router: the context has no deadline")
		}
		switch uri {
		case "pln://seed/other/pong":
			return []byte("pong to " + string(input)), nil
		default:
			return nil, fmt.Errorf("no seed named %q is published (see 'pln status')", strings.TrimPrefix(uri, "pln://seed/"))
		}
	})
	h := newHost(t, Config{}, r)
	m := load(t, h, "hello", goGuest, Limits{})
	var key oplog.Key
	key[0] = 7
	cc := CallContext{Caller: key, Props: map[string]string{"a": "b"}, Chain: []string{"front/index"}}

	out, err := m.Call(context.Background(), "call", []byte(`{"uri":"pln://seed/other/pong","input":"ping"}`), cc)
	if err != nil || string(out) != "pong to ping" {
		t.Fatalf("call = %q, %v; want %q", out, err, "pong to ping")
	}
	if len(calls) != 1 {
		t.Fatalf("router saw %d calls; want 1", len(calls))
	}
	got := calls[0]
	if got.uri != "pln://seed/other/pong" || got.input != "ping" {
		t.Errorf("router got %q with %q", got.uri, got.input)
	}
	if fmt.Sprint(got.cc.Chain) != "[front/index hello/call]" || got.cc.Caller != key || got.cc.Props["a"] != "b" {
		t.Errorf("router got context %+v; want the chain grown by hello/call, the same caller and props", got.cc)
	}
	if left := time.Until(got.cc.Deadline); left <= 0 || left > DefaultTimeout {
		t.Errorf("router got deadline %v from now; want within the seed's timeout", left)
	}
	if fmt.Sprint(cc.Chain) != "[front/index]" {
		t.Errorf("the caller's chain changed to %v", cc.Chain)
	}

	// A router error reaches the guest as text it can read and pass on.
	_, err = m.Call(context.Background(), "call", []byte(`{"uri":"pln://seed/ghost/fn","input":""}`), cc)
	if err == nil || !strings.Contains(err.Error(), `no seed named "ghost/fn" is published`) {
		t.Errorf("call to a missing seed: %v; want the router's words", err)
	}

	// Services are reserved, and other URIs refused, without the router.
	n := len(calls)
	for uri, want := range map[string]string{
		"pln://service/db": "services are not supported yet",
		"http://example":   "is not a pln:// URI",
		"pln://blob/x":     `unknown kind "blob"`,
	} {
		_, err := m.Call(context.Background(), "call", []byte(`{"uri":"`+uri+`"}`), cc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("call %s: %v; want %q", uri, err, want)
		}
	}
	if len(calls) != n {
		t.Errorf("the router saw %d calls it should not have", len(calls)-n)
	}
}

// A call tells its owner before its first pln_call, once, and not at all
// if it makes none: until then it could run again elsewhere unseen.
func TestEffectIsToldBeforeTheFirstCallOut(t *testing.T) {
	var effects, routed atomic.Int64
	var order []string
	r := routerFunc(func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
		order = append(order, "routed")
		routed.Add(1)
		if cc.Effect != nil {
			t.Error("the callee was handed its caller's Effect")
		}
		return []byte("pong"), nil
	})
	h := newHost(t, Config{}, r)
	m := load(t, h, "hello", goGuest, Limits{})
	cc := CallContext{Effect: func() error { order = append(order, "effect"); effects.Add(1); return nil }}
	for _, fn := range []string{"echo", "whoami", "log"} {
		if _, err := m.Call(context.Background(), fn, []byte(`{}`), cc); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
	}
	if effects.Load() != 0 {
		t.Errorf("calls that never called out told of %d effects", effects.Load())
	}
	if _, err := m.Call(context.Background(), "call", []byte(`{"uri":"pln://seed/other/pong","input":"x"}`), cc); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[effect routed]" {
		t.Errorf("a call out went %v; want the effect told first, once", order)
	}
	// A URI refused without routing has no effect.
	if _, err := m.Call(context.Background(), "call", []byte(`{"uri":"http://example"}`), cc); err == nil {
		t.Fatal("a call to a non-pln URI went through")
	}
	if effects.Load() != 1 || routed.Load() != 1 {
		t.Errorf("after a refused URI: %d effects, %d routed; want 1 and 1", effects.Load(), routed.Load())
	}
}

// A seed that calls itself is stopped at MaxDepth with ErrCycle, at every
// level, instead of running until the deadline.
func TestCycleStopsAtMaxDepth(t *testing.T) {
	r := &lateRouter{}
	h := newHost(t, Config{}, r)
	m := load(t, h, "loop", goGuest, Limits{Concurrency: DefaultMaxDepth})
	var hops int
	var mu sync.Mutex
	self := []byte(`{"uri":"pln://seed/loop/call","input":"{\"uri\":\"pln://seed/loop/call\"}"}`)
	r.set(func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
		mu.Lock()
		hops++
		mu.Unlock()
		// Call again with the same request, as a loop of seeds would.
		return m.Call(ctx, "call", self, cc)
	})
	start := time.Now()
	_, err := m.Call(context.Background(), "call", self, CallContext{})
	if !errors.Is(err, ErrCycle) {
		t.Fatalf("a seed calling itself: %v; want ErrCycle", err)
	}
	if !strings.Contains(err.Error(), strings.Repeat("loop/call → ", DefaultMaxDepth-1)+"loop/call") {
		t.Errorf("the error does not show the chain: %v", err)
	}
	if hops != DefaultMaxDepth-1 {
		t.Errorf("the router was called %d times; want %d", hops, DefaultMaxDepth-1)
	}
	t.Logf("stopped after %d hops in %v: %v", hops, time.Since(start), err)
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHost(t, Config{Logger: logger}, nil)
	m := load(t, h, "hello", goGuest, Limits{})
	var key oplog.Key
	key[0] = 9
	if _, err := m.Call(context.Background(), "log", []byte("hello from the guest"), CallContext{Caller: key}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var rec map[string]any
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(line, "hello from the guest") {
			json.Unmarshal([]byte(line), &rec)
		}
	}
	if rec["level"] != "INFO" || rec["seed"] != "hello" || rec["fn"] != "log" || rec["caller"] != key.String() {
		t.Errorf("log record = %v; want level INFO, seed hello, fn log, caller %s", rec, key)
	}
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// Calls up to the concurrency run at once, each on its own instance.
func TestConcurrentCalls(t *testing.T) {
	h := newHost(t, Config{}, nil)
	const n = 8
	m := load(t, h, "hello", goGuest, Limits{Concurrency: n})
	var wg sync.WaitGroup
	errs := make(chan error, n*4)
	for i := range n {
		wg.Go(func() {
			for j := range 4 {
				name := fmt.Sprintf("caller-%d-%d", i, j)
				out, err := m.Call(context.Background(), "greet", []byte(`{"name":"`+name+`"}`), CallContext{})
				if err == nil && string(out) != `{"greeting":"hello, `+name+`"}` {
					err = fmt.Errorf("greet %s = %s", name, out)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m.InFlight() != 0 {
		t.Errorf("InFlight = %d after every call returned", m.InFlight())
	}
}

// A second host on the same cache directory takes the compiled code from
// disk: it writes no new cache file and loads far faster than the first
// compilation did.
func TestLoadUsesDiskCache(t *testing.T) {
	ctx := context.Background()
	cold := coldGoLoad(t)
	before := cacheFiles(t, cacheDir)
	if len(before) == 0 {
		t.Fatal("compiling wrote nothing to the cache directory")
	}
	start := time.Now()
	h := newHost(t, Config{CacheDir: cacheDir}, nil)
	m := load(t, h, "hello-again", goGuest, Limits{})
	warm := time.Since(start)
	if after := cacheFiles(t, cacheDir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the second load changed the cache:\nbefore %v\nafter  %v", before, after)
	}
	if warm*4 > cold {
		t.Errorf("cached load took %v, cold %v; want at least 4× faster", warm, cold)
	}
	if out, err := m.Call(ctx, "echo", []byte("hi"), CallContext{}); err != nil || string(out) != "hi" {
		t.Errorf("echo from the cached module = %q, %v", out, err)
	}
	t.Logf("Go guest load: cold %v, from the disk cache %v", cold, warm)

	// A second seed of the same digest in the same host shares the
	// compiled code in memory.
	start = time.Now()
	load(t, h, "hello-third", goGuest, Limits{})
	t.Logf("second seed of the same digest: %v", time.Since(start))

	// A fresh cache directory starts empty and is filled by a compilation.
	dir := t.TempDir()
	load(t, newHost(t, Config{CacheDir: dir}, nil), "hello-c", cGuest, Limits{})
	if len(cacheFiles(t, dir)) == 0 {
		t.Error("compiling the C guest wrote nothing to a fresh cache directory")
	}
}

// cacheFiles lists the cache directory's files with their sizes and
// modification times: a recompilation rewrites a file.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var fs []string
	err := filepathWalk(dir, func(path string, size int64, mod time.Time) {
		fs = append(fs, fmt.Sprintf("%s:%d:%d", path, size, mod.UnixNano()))
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// A guest that exports pln_warm is warmed on each new instance, before any
// call, and may not call out while it warms.
func TestEveryNewInstanceIsWarmedFirst(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	warmed := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["fn"] == WarmExport && rec["msg"] == "warm" {
				n++
			}
		}
		return n
	}
	release := make(chan struct{})
	var routed atomic.Int64
	r := routerFunc(func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
		routed.Add(1)
		<-release
		return []byte("ok"), nil
	})
	h := newHost(t, Config{Logger: logger}, r)
	const n = 4
	m := load(t, h, "hello", goGuest, Limits{Concurrency: n})
	if got := warmed(); got != 1 {
		t.Fatalf("after Load %d instances were warmed; want the one it made", got)
	}
	if routed.Load() != 0 {
		t.Fatal("pln_warm's call out reached the router")
	}
	// n calls held inside the router need n instances.
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := m.Call(context.Background(), "call", []byte(`{"uri":"pln://seed/other/fn"}`), CallContext{}); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for routed.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := warmed(); got != n {
		t.Errorf("%d instances were warmed; want %d, one per instance", got, n)
	}
	if _, err := m.Call(context.Background(), WarmExport, nil, CallContext{}); !errors.Is(err, ErrNoFunction) {
		t.Errorf("calling %s from outside: %v; want ErrNoFunction", WarmExport, err)
	}
}

// Runners bounds the calls running guest code at once; the others wait
// their turn, and a call waiting on a pln_call gives its turn up.
func TestRunnersTakeTurns(t *testing.T) {
	release := make(chan struct{})
	var routed atomic.Int64
	r := routerFunc(func(ctx context.Context, cc CallContext, uri string, input []byte) ([]byte, error) {
		routed.Add(1)
		<-release
		return []byte("pong"), nil
	})
	h := newHost(t, Config{Runners: 1}, r)
	m := load(t, h, "hello", goGuest, Limits{Concurrency: 4})
	ctx := context.Background()

	// A call blocked in pln_call holds no turn: another call runs.
	outc := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, "call", []byte(`{"uri":"pln://seed/other/fn"}`), CallContext{})
		outc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for routed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if out, err := m.Call(ctx, "echo", []byte("meanwhile"), CallContext{}); err != nil || string(out) != "meanwhile" {
		t.Errorf("a call while the only runner's call waits on pln_call: %q, %v", out, err)
	}
	close(release)
	if err := <-outc; err != nil {
		t.Errorf("the call that waited on pln_call: %v", err)
	}

	// A call waits while another runs guest code, and runs once it ends.
	s := load(t, h, "spin", spin, Limits{Timeout: 300 * time.Millisecond, Concurrency: 2})
	other := load(t, h, "trap", trap, Limits{})
	// ok cannot run before spin gives its turn back, at its deadline.
	var wg sync.WaitGroup
	spinStart := time.Now()
	wg.Go(func() {
		if _, err := s.Call(ctx, "run", nil, CallContext{}); !errors.Is(err, ErrTimeout) {
			t.Errorf("spin: %v", err)
		}
	})
	for len(h.turns) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	wg.Go(func() {
		if _, err := other.Call(ctx, "ok", nil, CallContext{}); err != nil {
			t.Errorf("ok: %v", err)
		}
		if took := time.Since(spinStart); took < 300*time.Millisecond {
			t.Errorf("with one runner ok ran %v after spin began; spin held the turn for 300 ms", took)
		}
	})
	wg.Wait()
	// A call that cannot get a turn before its deadline times out.
	wg.Go(func() { s.Call(ctx, "run", nil, CallContext{}) })
	for len(h.turns) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := other.Call(ctx, "ok", nil, CallContext{Deadline: time.Now().Add(20 * time.Millisecond)})
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("a call that never got a turn: %v; want ErrTimeout", err)
	}
	wg.Wait()
}

// No one seed may hold every runner: one that keeps its whole share busy
// leaves the others room.
func TestASeedCannotTakeEveryRunner(t *testing.T) {
	h := newHost(t, Config{Runners: 4}, nil)
	share := h.cfg.share()
	if share != 3 {
		t.Fatalf("with 4 runners a seed's share is %d; want 3", share)
	}
	s := load(t, h, "spin", spin, Limits{Timeout: 3 * time.Second, Concurrency: 8})
	ok := load(t, h, "trap", trap, Limits{})
	ctx := context.Background()
	var wg sync.WaitGroup
	var spun atomic.Int64
	for range share + 2 { // two more than its share: they wait
		wg.Go(func() {
			s.Call(ctx, "run", nil, CallContext{})
			spun.Add(1)
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.turns) < share && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(h.turns); n != share {
		t.Errorf("the spinning seed holds %d runners; want its share, %d", n, share)
	}
	// Another seed still runs, while every spinning call is still spinning.
	if _, err := ok.Call(ctx, "ok", nil, CallContext{}); err != nil {
		t.Errorf("another seed beside a seed using its whole share: %v", err)
	}
	if n := spun.Load(); n != 0 {
		t.Errorf("%d spinning calls had ended before the other seed's call ran", n)
	}
	wg.Wait()
}
