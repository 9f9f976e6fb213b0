package wasm

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// slack is how late past its deadline a stopped call may return: wazero
// checks for the deadline at every loop back-edge, but -race and a busy
// machine slow everything down.
const slack = 2 * time.Second

func TestSpinStopsAtTimeout(t *testing.T) {
	h := newHost(t, Config{}, nil)
	const timeout = 200 * time.Millisecond
	m := load(t, h, "spin", spin, Limits{Timeout: timeout})
	ctx := context.Background()
	for range 2 { // and again: the module still serves after a stopped call
		start := time.Now()
		_, err := m.Call(ctx, "run", nil, CallContext{})
		took := time.Since(start)
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("spin: %v; want ErrTimeout", err)
		}
		if took < timeout || took > timeout+slack {
			t.Errorf("spin was stopped after %v; want %v (+ up to %v)", took, timeout, slack)
		}
		if _, err := m.Call(ctx, "ok", nil, CallContext{}); err != nil {
			t.Fatalf("ok after a stopped spin: %v", err)
		}
	}

	// The caller's deadline stops it too, when it comes first.
	start := time.Now()
	_, err := m.Call(ctx, "run", nil, CallContext{Deadline: time.Now().Add(50 * time.Millisecond)})
	if took := time.Since(start); !errors.Is(err, ErrTimeout) || took > 50*time.Millisecond+slack {
		t.Errorf("spin with a 50ms caller deadline: %v after %v", err, took)
	}
	// As does the caller giving up; that is not a timeout.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := m.Call(cctx, "run", nil, CallContext{}); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("spin with a cancelled context: %v; want context.Canceled", err)
	}
}

func TestOverloadedFailsAtOnce(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "spin", spin, Limits{Timeout: time.Second, Concurrency: 1})
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, "run", nil, CallContext{})
		first <- err
	}()
	waitFor(t, "the spinning call to start", func() bool { return m.InFlight() == 1 })

	start := time.Now()
	_, err := m.Call(ctx, "ok", nil, CallContext{})
	if took := time.Since(start); !errors.Is(err, ErrOverloaded) || took > 100*time.Millisecond {
		t.Errorf("a second call with concurrency 1: %v after %v; want ErrOverloaded at once", err, took)
	}
	if err := <-first; !errors.Is(err, ErrTimeout) {
		t.Errorf("the spinning call: %v; want ErrTimeout", err)
	}
	if _, err := m.Call(ctx, "ok", nil, CallContext{}); err != nil {
		t.Errorf("a call once the slot is free: %v", err)
	}
}

func TestTrapDiscardsInstance(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "trap", trap, Limits{})
	ctx := context.Background()
	if len(m.idle) != 1 {
		t.Fatalf("%d warm instances after Load; want 1", len(m.idle))
	}
	_, err := m.Call(ctx, "run", nil, CallContext{})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("trap: %v; want ErrTrap naming the unreachable", err)
	}
	if len(m.idle) != 0 {
		t.Errorf("the trapped instance went back to the pool")
	}
	if _, err := m.Call(ctx, "ok", nil, CallContext{}); err != nil {
		t.Fatalf("ok after a trap: %v", err)
	}
	if len(m.idle) != 1 {
		t.Errorf("%d idle instances after a good call; want 1", len(m.idle))
	}
}

func TestAGuestThatFailsToWarmIsNotLoaded(t *testing.T) {
	h := newHost(t, Config{}, nil)
	code, digest := fixture(t, cold)
	_, err := h.Load(context.Background(), "cold", digest, code, Limits{})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), WarmExport) {
		t.Fatalf("loading a guest whose %s traps: %v; want ErrTrap naming %s", WarmExport, err, WarmExport)
	}
}

func TestMemoryIsCapped(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "grow", grow, Limits{MemoryBytes: 16 << 20})
	ctx := context.Background()
	out, err := m.Call(ctx, "reach", nil, CallContext{})
	if err != nil || len(out) != 8 {
		t.Fatalf("reach = %x, %v", out, err)
	}
	if pages := binary.LittleEndian.Uint64(out); pages != 256 {
		t.Errorf("the guest grew to %d pages; the 16 MiB cap is 256", pages)
	}
	_, err = m.Call(ctx, "run", nil, CallContext{})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "its memory cap is 16MiB") {
		t.Errorf("grow: %v; want ErrTrap naming the 16MiB cap", err)
	}
	t.Log(err)

	// A cap below what the module needs to start is refused at Load.
	code, digest := fixture(t, goGuest)
	_, err = h.Load(ctx, "tiny", digest, code, Limits{MemoryBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("the Go guest under a 1 MiB cap: %v; want a refusal", err)
	}
	t.Log(err)
}

func TestHugeOutputRefused(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "huge", huge, Limits{})
	_, err := m.Call(context.Background(), "run", nil, CallContext{})
	if !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("huge: %v; want ErrOutputTooLarge", err)
	}
	t.Log(err)
}

// Close waits for running calls, then refuses new ones; nothing it started
// outlives it.
func TestCloseWaitsForCalls(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHost(t, Config{}, nil)
	m := load(t, h, "spin", spin, Limits{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, "run", nil, CallContext{})
		done <- err
	}()
	waitFor(t, "the call to start", func() bool { return m.InFlight() == 1 })
	closing := time.Now()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Close waited for the call: it returned only when the call's 300 ms
	// ran out. (The call's goroutine reports a moment later: Close sees the
	// instance come back before Call has returned to its caller.)
	if waited := time.Since(closing); waited < 200*time.Millisecond {
		t.Errorf("Close returned after %v, before the running call ended", waited)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Errorf("the running call: %v; want it to run to its timeout", err)
	}
	if _, err := m.Call(ctx, "ok", nil, CallContext{}); !errors.Is(err, ErrClosed) {
		t.Errorf("a call after Close: %v; want ErrClosed", err)
	}

	// A Close that cannot wait stops the call.
	m = load(t, h, "spin", spin, Limits{Timeout: time.Minute})
	go func() {
		_, err := m.Call(ctx, "run", nil, CallContext{})
		done <- err
	}()
	waitFor(t, "the call to start", func() bool { return m.InFlight() == 1 })
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := m.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a short context: %v", err)
	}
	if err := <-done; err == nil || time.Since(start) > slack {
		t.Errorf("the call outlived Close: %v after %v", err, time.Since(start))
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A Go guest that panics is a crash; its panic message is in the error.
func TestGoPanicIsTrap(t *testing.T) {
	h := newHost(t, Config{}, nil)
	m := load(t, h, "hello", goGuest, Limits{})
	ctx := context.Background()
	_, err := m.Call(ctx, "crash", []byte("on purpose"), CallContext{})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "panic: crash requested: on purpose") {
		t.Fatalf("crash: %v; want ErrTrap with the panic message", err)
	}
	t.Log(err)
	if out, err := m.Call(ctx, "echo", []byte("still here"), CallContext{}); err != nil || string(out) != "still here" {
		t.Fatalf("echo after a panic = %q, %v", out, err)
	}
}
