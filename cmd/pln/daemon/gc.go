package daemon

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The collector's pace. A node's live heap is small (its view, its log's
// indexes, a few instances' memories), while each seed call leaves about
// 200 KB of garbage behind in the Extism runtime. At Go's default, a
// collection whenever the heap doubles, a busy node would collect every
// few dozen calls and spend a core's fifth on it. So while a node runs it
// lets the heap grow by up to gcHeadroom past the live heap before
// collecting: GOGC between 100 and gcMaxPercent, set from the live heap
// every gcRetune. A node with a large live heap runs at Go's default. A
// GOGC in the environment is the user's choice and is left alone.

const (
	gcHeadroom   = 64 << 20
	gcMaxPercent = 400
	gcRetune     = time.Second
)

var gcPace struct {
	mu    sync.Mutex
	users int           // running nodes (a dev cluster runs several)
	prev  int           // the percent before the first started
	stop  chan struct{} // ends the retuning loop
	done  chan struct{}
}

// paceGC sets the collector's pace for a running node until release is
// called; the last node to release restores the previous setting.
func paceGC() (release func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	gcPace.mu.Lock()
	defer gcPace.mu.Unlock()
	gcPace.users++
	if gcPace.users == 1 {
		p := gcPercent()
		gcPace.prev = debug.SetGCPercent(p)
		gcPace.stop, gcPace.done = make(chan struct{}), make(chan struct{})
		go retuneGC(gcPace.stop, gcPace.done, p)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			gcPace.mu.Lock()
			defer gcPace.mu.Unlock()
			gcPace.users--
			if gcPace.users == 0 {
				close(gcPace.stop)
				<-gcPace.done
				debug.SetGCPercent(gcPace.prev)
			}
		})
	}
}

func retuneGC(stop, done chan struct{}, current int) {
	defer close(done)
	t := time.NewTicker(gcRetune)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if p := gcPercent(); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
	}
}

// gcPercent is the GOGC that gives the live heap gcHeadroom to grow into,
// within [100, gcMaxPercent].
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	live := uint64(0)
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	return gcPercentFor(live)
}

func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	return int(min(max(gcHeadroom*100/live, 100), gcMaxPercent))
}
