package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
)

// Seed benchmarks on a two-node loopback cluster: the Go guest's echo is
// placed on n0 only (policy name=n0), so a call from n0 is local and one
// from n1 crosses the mesh. Floors in the same run: the bare Extism plug-in
// calling echo in process, and one bare QUIC round trip
// (BenchmarkFloorQUICRoundTrip in mesh_bench_test.go). The remote calls are
// measured twice: with both nodes in this process, beside the in-process
// round trip, and with n0 in a process of its own, beside the round trip to
// an echo server in one (BenchmarkFloorQUICRoundTripApart).

var benchEchoInput = []byte(`{"bench":"0123456789012345678901234567890123456789"}`)

// Where a benchmark's calls go from.
const (
	fromLocal       = iota // n0, to its own replica
	fromRemote             // n1, to n0 in this process
	fromRemoteApart        // n1, to n0 in a process of its own
)

// echoCluster starts the cluster, waits for the replica on n0 and returns
// the node to call from.
func echoCluster(b *testing.B, from int) *Node {
	b.Helper()
	opts := meshOptions(b)
	opts.NoFilter = true // bare sockets, as in production
	cl := startMesh(b, 2, opts)
	waitMesh(b, cl)
	ns := nodes(cl)
	if _, err := seed(context.Background(), ns[0], SeedRequest{File: helloWasm(), Name: "hello", MinReplicas: 1, MaxReplicas: 1,
		Concurrency: 128, Policy: map[string]string{"name": "n0"}}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 60*time.Second, "hello never became ready on n0", func() bool {
		return len(ready(ns[1], "hello")) == 1 && ready(ns[1], "hello")[0] == "n0"
	})
	switch from {
	case fromLocal:
		return ns[0]
	case fromRemote:
		return ns[1]
	}
	moveToChild(b, cl, cl.Nodes()[0])
	waitFor(b, 60*time.Second, "n1 never reached hello on n0 in its own process", func() bool {
		_, err := callOn(ns[1], "hello", "echo", "x")
		return err == nil
	})
	return ns[1]
}

func benchCall(b *testing.B, n *Node) {
	ctx := context.Background()
	rs := n.replicas.Load()
	for b.Loop() {
		if _, err := rs.Call(ctx, "hello", "echo", benchEchoInput, nil, n.self); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeedCallLocal is a call through the node to its own replica.
func BenchmarkSeedCallLocal(b *testing.B) {
	benchCall(b, echoCluster(b, fromLocal))
}

// BenchmarkSeedCallRemote is a call through the node to a replica on a peer.
func BenchmarkSeedCallRemote(b *testing.B) {
	benchCall(b, echoCluster(b, fromRemote))
}

// BenchmarkSeedCallRemoteApart is the same with the peer in a process of
// its own.
func BenchmarkSeedCallRemoteApart(b *testing.B) {
	benchCall(b, echoCluster(b, fromRemoteApart))
}

// BenchmarkFloorExtismEchoInProcess is the floor under a local call: the
// bare Extism plug-in calling the same function in process.
func BenchmarkFloorExtismEchoInProcess(b *testing.B) {
	defer paceGC()() // the collector's pace of a running node, as the calls through one have
	ctx := context.Background()
	code, err := os.ReadFile(helloWasm())
	if err != nil {
		b.Fatal(err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(sharedWasmCache)
	if err != nil {
		b.Fatal(err)
	}
	// The guest imports pln's host functions; echo never calls them, so
	// the floor satisfies them with functions that do nothing.
	noop := func(name string, in, out []extism.ValueType) extism.HostFunction {
		f := extism.NewHostFunctionWithStack(name, func(context.Context, *extism.CurrentPlugin, []uint64) {}, in, out)
		f.SetNamespace("extism:host/user")
		return f
	}
	i64 := extism.ValueTypeI64
	hostFns := []extism.HostFunction{
		noop("pln_call", []extism.ValueType{i64, i64}, []extism.ValueType{i64}),
		noop("pln_caller", nil, []extism.ValueType{i64}),
		noop("pln_log", []extism.ValueType{i64, i64}, nil),
	}
	// The same work includes a time limit, which makes wazero watch each
	// call's context (a seed's calls always have one).
	manifest := extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: code}}, Timeout: uint64(DefaultSeedTimeout.Milliseconds())}
	cp, err := extism.NewCompiledPlugin(ctx, manifest,
		extism.PluginConfig{EnableWasi: true, RuntimeConfig: wazero.NewRuntimeConfig().WithCompilationCache(cache)}, hostFns)
	if err != nil {
		b.Fatal(err)
	}
	defer cp.Close(ctx)
	p, err := cp.Instance(ctx, extism.PluginInstanceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := p.CallWithContext(ctx, "echo", benchEchoInput); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeedCallThroughput drives calls with 1, 4, 16 and 64 callers at
// once, local and remote, and reports calls/s.
func BenchmarkSeedCallThroughput(b *testing.B) {
	for _, where := range []string{"local", "remote"} {
		for _, callers := range []int{1, 4, 16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", where, callers), func(b *testing.B) {
				from := fromLocal
				if where == "remote" {
					from = fromRemote
				}
				n := echoCluster(b, from)
				rs := n.replicas.Load()
				b.ResetTimer()
				if callers == 1 {
					benchCall(b, n)
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
					return
				}
				// RunParallel runs parallelism × GOMAXPROCS goroutines.
				b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := rs.Call(context.Background(), "hello", "echo", benchEchoInput, nil, n.self); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			})
		}
	}
}

// BenchmarkSeedToFirstCall is the time from 'pln seed' to the first answer
// from another node, with the module compiled before (cached) or not.
func BenchmarkSeedToFirstCall(b *testing.B) {
	for _, cached := range []bool{true, false} {
		b.Run(fmt.Sprintf("cached=%v", cached), func(b *testing.B) {
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				opts := meshOptions(b)
				if !cached {
					opts.WasmCache = b.TempDir()
				}
				cl := startMesh(b, 2, opts)
				waitMesh(b, cl)
				ns := nodes(cl)
				b.StartTimer()
				start := time.Now()
				if _, err := seed(context.Background(), ns[0], SeedRequest{File: helloWasm(), Name: "hello", MinReplicas: 1, MaxReplicas: 1,
					Policy: map[string]string{"name": "n1"}}); err != nil {
					b.Fatal(err)
				}
				waitFor(b, 60*time.Second, "no first answer", func() bool {
					_, err := callOn(ns[0], "hello", "echo", "x")
					return err == nil
				})
				total += time.Since(start)
				b.StopTimer()
				cl.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-call")
		})
	}
}
