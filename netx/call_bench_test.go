package netx

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCallRoundTrip is one call over the call protocol between two
// meshes on loopback, to a handler that echoes at once: what the protocol
// costs beyond its floor, BenchmarkFloorStreamRoundTrip.
func BenchmarkCallRoundTrip(b *testing.B) {
	var ran atomic.Int64
	_, a, c := twoMembers(b, echoCalls(&ran, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	in := make([]byte, 50)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.mesh.Call(ctx, a.self(), &CallRequest{Seed: "s", Fn: "echo", Input: in, Origin: c.self()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFloorStreamRoundTrip is 100 bytes echoed on one stream of the
// same link: bare quic-go.
func BenchmarkFloorStreamRoundTrip(b *testing.B) {
	_, a, c := twoMembers(b)
	c.mesh.mu.Lock()
	p := c.mesh.peers[a.self()]
	c.mesh.mu.Unlock()
	s, err := p.conn.OpenStreamSync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer s.CancelRead(0)
	defer s.Close()
	if _, err := s.Write([]byte{streamEcho}); err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 100), make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
	}
}
