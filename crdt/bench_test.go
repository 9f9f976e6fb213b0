package crdt

import (
	"fmt"
	"testing"
)

// The fold applies one Set per op and merges whole views on partition heal,
// so these are the two costs that matter.

func BenchmarkLWWMapSet(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("seed-%d", i)
	}
	var m LWWMap[string, int]
	var i uint64
	for b.Loop() {
		m.Set(keys[i%1024], int(i), st(i, 0))
		i++
	}
}

func BenchmarkLWWMapMerge1k(b *testing.B) {
	var x, y LWWMap[int, int]
	for i := range 1000 {
		x.Set(i, i, st(uint64(i), 0))
		y.Set(i, i, st(uint64(i), 1)) // every key differs, half the entries win
	}
	for b.Loop() {
		c := x.Clone()
		c.Merge(&y)
	}
}

func BenchmarkAWSetAdd(b *testing.B) {
	var s AWSet[int]
	var i uint64
	for b.Loop() {
		s.Add(int(i%1024), st(i, 0))
		i++
	}
}

func BenchmarkAWSetMerge1k(b *testing.B) {
	var x, y AWSet[int]
	for i := range 1000 {
		x.Add(i, st(uint64(i), 0))
		y.Add(i, st(uint64(i), 1))
		y.Remove(i, []Stamp{st(uint64(i), 0)})
	}
	for b.Loop() {
		c := x.Clone()
		c.Merge(&y)
	}
}
