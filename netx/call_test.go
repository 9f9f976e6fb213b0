package netx

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// The call protocol between two real meshes on loopback. a serves calls
// with a handler the test writes; b calls it.

// echoCalls answers a call with its input, or does what the function's
// name says.
func echoCalls(ran *atomic.Int64, inCall chan<- struct{}) CallHandler {
	return func(ctx context.Context, from oplog.Key, req *CallRequest, started func() error) ([]byte, error) {
		switch req.Fn {
		case "refuse":
			return nil, Refuse(errors.New("no replica of that seed here"))
		case "fail":
			ran.Add(1)
			return nil, errors.New("guest trapped")
		case "block", "effect-then-block":
			ran.Add(1)
			if req.Fn == "effect-then-block" {
				if err := started(); err != nil {
					return nil, err
				}
			}
			inCall <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		ran.Add(1)
		return req.Input, nil
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCallsShareAFewStreams(t *testing.T) {
	noLeaks(t)
	var ran atomic.Int64
	_, a, b := twoMembers(t, echoCalls(&ran, nil))
	ctx := callCtx(t)
	for i := range 200 {
		in := []byte(strings.Repeat("x", i*100)) // up to 20 KB: replies cross several packets
		out, err := b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "echo", Input: in, Origin: b.self()})
		if err != nil || string(out) != string(in) {
			t.Fatalf("call %d: %q, %v", i, out, err)
		}
	}
	if n := b.mesh.callStreams.Load(); n != 1 {
		t.Errorf("200 calls one after another opened %d streams, want 1", n)
	}
	// Concurrent calls each take a stream, and keep at most
	// maxIdleCallStreams of them afterwards.
	var wg sync.WaitGroup
	for range 3 * maxIdleCallStreams {
		wg.Go(func() {
			if _, err := b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "echo", Input: []byte("y"), Origin: b.self()}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := ran.Load(); n != 200+3*maxIdleCallStreams {
		t.Errorf("the replica ran %d calls, want %d", n, 200+3*maxIdleCallStreams)
	}
	b.mesh.mu.Lock()
	p := b.mesh.peers[a.self()]
	b.mesh.mu.Unlock()
	p.mu.Lock()
	idle := len(p.calls)
	p.mu.Unlock()
	if idle > maxIdleCallStreams {
		t.Errorf("%d idle call streams kept, at most %d wanted", idle, maxIdleCallStreams)
	}
}

func TestCallRefusalsAndFailuresAreTold(t *testing.T) {
	noLeaks(t)
	var ran atomic.Int64
	_, a, b := twoMembers(t, echoCalls(&ran, nil))
	ctx := callCtx(t)

	_, err := b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "refuse", Origin: b.self()})
	if !errors.Is(err, ErrNotStarted) || !strings.Contains(err.Error(), "no replica of that seed here") || strings.Count(err.Error(), "not started") > 1 {
		t.Errorf("a refused call: %v; want ErrNotStarted with the replica's reason, once", err)
	}
	_, err = b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "fail", Origin: b.self()})
	if !errors.Is(err, ErrRemote) || errors.Is(err, ErrNotStarted) || !strings.Contains(err.Error(), "guest trapped") {
		t.Errorf("a failed call: %v; want ErrRemote with the seed's error", err)
	}
	// The stream goes on serving after both.
	if out, err := b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "echo", Input: []byte("z"), Origin: b.self()}); err != nil || string(out) != "z" {
		t.Errorf("a call after a refusal and a failure: %q, %v", out, err)
	}
	if n := b.mesh.callStreams.Load(); n != 1 {
		t.Errorf("%d streams opened, want 1", n)
	}
	if _, err := b.mesh.Call(context.Background(), a.self(), &CallRequest{Seed: "s", Fn: "echo"}); err == nil {
		t.Error("a call without a deadline was sent")
	}
}

func TestACallerGivingUpStopsTheCallOnTheReplica(t *testing.T) {
	noLeaks(t)
	var ran atomic.Int64
	inCall := make(chan struct{}, 1)
	_, a, b := twoMembers(t, echoCalls(&ran, inCall))
	ctx, cancel := context.WithCancel(callCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := b.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "block", Origin: b.self()})
		errc <- err
	}()
	<-inCall
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotStarted) {
			t.Errorf("a cancelled call returned %v; want context.Canceled, not a retryable error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled call did not return")
	}
	// The handler's context ends, or the stream it blocks would leak
	// (noLeaks checks); and the next call takes a fresh stream.
	if out, err := b.mesh.Call(callCtx(t), a.self(), &CallRequest{Seed: "s", Fn: "echo", Input: []byte("after"), Origin: b.self()}); err != nil || string(out) != "after" {
		t.Errorf("the call after: %q, %v", out, err)
	}

	// A deadline passing is the same; the replica, told the time left,
	// may be the one to notice first.
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	go func() {
		_, err := b.mesh.Call(dctx, a.self(), &CallRequest{Seed: "s", Fn: "block", Origin: b.self()})
		errc <- err
	}()
	<-inCall
	if err := <-errc; !strings.Contains(fmtErr(err), "deadline exceeded") || errors.Is(err, ErrNotStarted) {
		t.Errorf("a call past its deadline returned %v", err)
	}
}

// A replica that goes away mid-call: the caller may try another replica
// only if the call had no effect yet.
func TestAReplicaLostMidCallIsRetryableOnlyBeforeItsFirstEffect(t *testing.T) {
	for _, effect := range []bool{false, true} {
		name := map[bool]string{false: "before", true: "after"}[effect]
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			var ran atomic.Int64
			inCall := make(chan struct{}, 1)
			_, a, b := twoMembers(t, echoCalls(&ran, inCall))
			fn := "block"
			if effect {
				fn = "effect-then-block"
			}
			errc := make(chan error, 1)
			go func() {
				_, err := b.mesh.Call(callCtx(t), a.self(), &CallRequest{Seed: "s", Fn: fn, Origin: b.self()})
				errc <- err
			}()
			<-inCall
			a.stop()
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not end when its replica went away")
			}
			if retry := errors.Is(err, ErrNotStarted); retry == effect {
				t.Errorf("%s its first effect the call ended with %v (retryable: %v)", name, err, retry)
			}
		})
	}
}

// A malformed request is refused, and the stream carries on.
func TestAMalformedCallIsRefused(t *testing.T) {
	noLeaks(t)
	var ran atomic.Int64
	_, a, b := twoMembers(t, echoCalls(&ran, nil))
	s, r := rawStream(t, b, a)
	good := appendCallRequest(nil, &CallRequest{Seed: "s", Fn: "echo", Input: []byte("ok"), TimeLeftMs: 5000})
	msg := append([]byte{StreamCall}, appendFrame(nil, []byte{0xff})...)
	msg = appendFrame(msg, good)
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"malformed call", ""} {
		raw, err := readFrame(r, maxCallReply)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := decodeCallReply(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Refused, want) || (want == "" && (rep.Refused != "" || string(rep.Output) != "ok")) {
			t.Errorf("reply %d: %+v, want refused %q", i, rep, want)
		}
	}
	if ran.Load() != 1 {
		t.Errorf("the replica ran %d calls, want 1", ran.Load())
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// A replica has an effect only once the caller has acknowledged Started;
// a caller that answers anything else gets no effect and loses the stream.
func TestAnEffectWaitsForTheCallerToKnow(t *testing.T) {
	noLeaks(t)
	var ran atomic.Int64
	inCall := make(chan struct{}, 1)
	_, a, b := twoMembers(t, echoCalls(&ran, inCall))
	s, r := rawStream(t, b, a)
	msg := appendCallRequestFrame([]byte{StreamCall}, &CallRequest{Seed: "s", Fn: "effect-then-block", TimeLeftMs: 5000})
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	raw, err := readFrame(r, maxCallReply)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := decodeCallReply(raw); err != nil || !rep.Started {
		t.Fatalf("first reply %v, %v; want Started", rep, err)
	}
	if _, err := s.Write([]byte{1, 9}); err != nil { // not ackStarted
		t.Fatal(err)
	}
	if _, err := readFrame(r, maxCallReply); err == nil {
		t.Fatal("the stream carried on after a bad acknowledgement")
	}
	if len(inCall) != 0 {
		t.Error("the call had its effect without the caller acknowledging Started")
	}
}

// rawStream opens a bare stream from one node to another, for a test to
// speak the protocol by hand; it ends with the test.
func rawStream(t *testing.T, from, to *testNode) (*quic.Stream, *bufio.Reader) {
	t.Helper()
	from.mesh.mu.Lock()
	p := from.mesh.peers[to.self()]
	from.mesh.mu.Unlock()
	s, err := p.conn.OpenStreamSync(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.CancelRead(0)
		s.Close()
	})
	s.SetDeadline(time.Now().Add(10 * time.Second))
	return s, bufio.NewReader(s)
}
