package daemon

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// Mesh benchmarks on real nodes on loopback. Each reports its figure as a
// custom metric (ms per event); run them with -benchtime=1x, as each
// iteration is a whole event. The README's figures come from here.

// pollFast waits for cond with a fine grain, so that the measured time is
// the event's, not the poll's. It fails b after timeout.
func pollFast(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkDenyReaches20Nodes: from authoring a deny on n0 until all 20
// nodes' views show the key denied. Above 16 nodes each node keeps a bounded
// set of links, so the deny travels several hops.
func BenchmarkDenyReaches20Nodes(b *testing.B) {
	opts := meshOptions(b)
	opts.Params.LoadIntervalMillis = 1000
	cl := startMesh(b, 20, opts)
	ctx := context.Background()
	ns := nodes(cl)
	pollFast(b, meshWait, "not every node knows all 20 members", func() bool {
		return everyone(ns, func(n *Node) bool { return len(n.View().Members) >= 21 && len(linkedTo(n)) > 0 })
	})
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		k := oplog.KeyOf(freshKey(b))
		if _, err := grant(ctx, ns[0], GrantRequest{Subject: k.String(), Tier: "member"}); err != nil {
			b.Fatal(err)
		}
		pollFast(b, meshWait, "the grant did not reach every node", func() bool {
			return everyone(ns, func(n *Node) bool { return isMember(n, k) })
		})
		b.StartTimer()
		start := time.Now()
		if _, err := deny(ctx, ns[0], DenyRequest{Subject: k.String()}); err != nil {
			b.Fatal(err)
		}
		left := ns
		pollFast(b, meshWait, "the deny did not reach every node", func() bool {
			for len(left) > 0 {
				m := left[0].View().Member(k)
				if m == nil || !m.Denied {
					return false
				}
				left = left[1:]
			}
			return true
		})
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/deny")
}

// BenchmarkJoinToVisible: from 'pln invite' on a running node, through
// 'pln join' of a second (PlanJoin, netx.Join, Enroll, Run), until both
// show each other in 'pln status' as live, direct peers.
func BenchmarkJoinToVisible(b *testing.B) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		cl := startMesh(b, 1, meshOptions(b))
		n0 := cl.Nodes()[0].Node()
		b.StartTimer()
		start := time.Now()
		d, err := cl.Add(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n1 := d.Node()
		pollFast(b, meshWait, "the nodes do not see each other", func() bool { return seesLive(n0, n1) && seesLive(n1, n0) })
		total += time.Since(start)
		b.StopTimer()
		if err := cl.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/join")
}

// BenchmarkFloorQUICRoundTrip is the floor under both: bare quic-go, one
// connection on loopback, a 200-byte message echoed on one stream.
func BenchmarkFloorQUICRoundTrip(b *testing.B) {
	serverKey, clientKey := freshKey(b), freshKey(b)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert(b, serverKey)}, NextProtos: []string{"echo"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		s, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		io.Copy(s, s)
		s.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert(b, clientKey)}, InsecureSkipVerify: true, NextProtos: []string{"echo"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 200), make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s.Close()
	conn.CloseWithError(0, "")
	ln.Close()
	<-done
}

// BenchmarkFloorQUICRoundTripApart is the same round trip to an echo
// server in a process of its own: the floor under a remote call between
// nodes in two processes.
func BenchmarkFloorQUICRoundTripApart(b *testing.B) {
	addr := startChild(b, childSpec{Echo: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert(b, freshKey(b))}, InsecureSkipVerify: true, NextProtos: []string{"echo"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 200), make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
}
