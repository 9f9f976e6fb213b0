package daemon

import (
	"sync"
	"time"

	"github.com/pln-mesh/pln/reducers"
)

// meters count, per seed, the calls that start at this node (demand) and
// those its replica serves, with their service times, between two load
// reports: what placement reads to move replicas toward demand.
type meters struct {
	mu    sync.Mutex
	since time.Time
	seeds map[string]*meter
}

type meter struct {
	demand, served int64
	busy           time.Duration // total service time of served calls
}

func newMeters(now time.Time) *meters { return &meters{since: now, seeds: make(map[string]*meter)} }

func (ms *meters) get(seed string) *meter {
	m := ms.seeds[seed]
	if m == nil {
		m = &meter{}
		ms.seeds[seed] = m
	}
	return m
}

// demanded counts a call that started here.
func (ms *meters) demanded(seed string) {
	ms.mu.Lock()
	ms.get(seed).demand++
	ms.mu.Unlock()
}

// served counts a call this node's replica ran, and how long it took.
func (ms *meters) served(seed string, took time.Duration) {
	ms.mu.Lock()
	m := ms.get(seed)
	m.served++
	m.busy += took
	ms.mu.Unlock()
}

// sample returns the rates since the last sample, and starts a new window.
// saturation gives each seed's replica saturation now, per mille.
func (ms *meters) sample(now time.Time, saturation func(seed string) int64) map[string]reducers.SeedLoad {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	windowMs := max(now.Sub(ms.since).Milliseconds(), 1)
	ms.since = now
	out := make(map[string]reducers.SeedLoad, len(ms.seeds))
	for name, m := range ms.seeds {
		l := reducers.SeedLoad{
			DemandMilliCPS: m.demand * 1_000_000 / windowMs,
			ServedMilliCPS: m.served * 1_000_000 / windowMs,
			SaturationPM:   saturation(name),
		}
		if m.served > 0 {
			l.LatencyMicros = (m.busy / time.Duration(m.served)).Microseconds()
		}
		if l.DemandMilliCPS > 0 || l.ServedMilliCPS > 0 || l.SaturationPM > 0 {
			out[name] = l
		}
	}
	clear(ms.seeds)
	if len(out) > reducers.MaxLoadSeeds {
		return nil
	}
	return out
}
