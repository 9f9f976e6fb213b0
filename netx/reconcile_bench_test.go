package netx

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// BenchmarkReconcile drives two Reconcilers in memory to the end over sets of
// n items that differ in diff items (about half on each side) and reports
// what an exchange costs: round trips (rtt), reconciliation bytes each way
// (B_a2b, B_b2a) and the ops the two sides must then send each other (ops;
// their payload, a few hundred bytes an op, is not counted in the bytes).
// ns/op is the CPU of both sides together, on one goroutine.
//
// The sets are sliceSets (prefix sums, O(1) range sums); the store's
// SyncIndex answers a range sum in O(n/512), a few microseconds at 10^6.
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{1e3, 1e5, 1e6} {
		for _, diff := range []int{0, 1, 10, 1000} {
			b.Run(fmt.Sprintf("n=%.0e/diff=%d", float64(n), diff), func(b *testing.B) {
				sa, sb := benchPair(n, diff)
				cfg := testConfig(1)
				var x exchange
				b.ResetTimer()
				for range b.N {
					x = reconcile(b, sa, sb, cfg, 1000)
				}
				b.StopTimer()
				if got := len(x.a.Have()) + len(x.a.Need()); got != diff {
					b.Fatalf("found %d differences, want %d", got, diff)
				}
				b.ReportMetric(float64(x.roundTrips()), "rtt")
				b.ReportMetric(float64(x.a2b), "B_a2b")
				b.ReportMetric(float64(x.b2a), "B_b2a")
				b.ReportMetric(float64(diff), "ops")
			})
		}
	}
}

// The floor: fingerprinting a whole set of 10^6 naively, hashing each ID and
// adding the hashes, which an exchange of sets in sync would otherwise cost
// on each side.
func BenchmarkFloorSHA256Sum1e6(b *testing.B) {
	base := benchBase(1e6)
	b.ResetTimer()
	for range b.N {
		var sum [4]uint64
		for _, it := range base {
			sum = add256(sum, limbsOf(sha256.Sum256(it.id[:])))
		}
		if sum == ([4]uint64{}) {
			b.Fatal("zero sum")
		}
	}
}

// benchCache keeps the base items of the largest n asked for, and the one
// pair of sets last built from it: a pair of 10^6 takes about 150 MB.
var benchCache struct {
	sync.Mutex
	base   []item
	key    [2]int
	sa, sb *sliceSet
}

func benchBase(n int) []item {
	benchCache.Lock()
	defer benchCache.Unlock()
	if len(benchCache.base) < n+1000 {
		benchCache.base = genItems(rand.New(rand.NewPCG(1, 1)), n+1000, 1)
	}
	return benchCache.base[:n]
}

// benchPair returns sets a and b: the first n+ceil(diff/2) base items, less
// ceil(diff/2) chosen at random from a and floor(diff/2) others from b.
func benchPair(n, diff int) (*sliceSet, *sliceSet) {
	universe := benchBase(n + (diff+1)/2)
	benchCache.Lock()
	defer benchCache.Unlock()
	if benchCache.key == [2]int{n, diff} {
		return benchCache.sa, benchCache.sb
	}
	benchCache.sa, benchCache.sb = nil, nil // let the old pair go first
	rng := rand.New(rand.NewPCG(uint64(n), uint64(diff)))
	side := map[int]int{} // universe index → the side that lacks it
	for len(side) < diff {
		k := rng.IntN(len(universe))
		if _, ok := side[k]; !ok {
			side[k] = len(side) % 2
		}
	}
	var a, b []item
	for k, it := range universe {
		lacks, ok := side[k]
		if !ok || lacks != 0 {
			a = append(a, it)
		}
		if !ok || lacks != 1 {
			b = append(b, it)
		}
	}
	benchCache.key = [2]int{n, diff}
	benchCache.sa, benchCache.sb = newSliceSet(a), newSliceSet(b)
	return benchCache.sa, benchCache.sb
}
