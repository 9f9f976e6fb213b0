package netx

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Network coordinates, Vivaldi style (Dabek et al., SIGCOMM 2004): each node
// places itself in a 2-D plane plus a height (its access link) so that the
// distance between two nodes predicts their round trip. Each RTT that QUIC
// measures to a peer nudges our position toward or away from the peer's
// reported one. Coordinates travel in load ops as integers (microseconds),
// so that placement, which reads them, is identical on every CPU; the
// floating point stays here, on the node that measures.
const (
	vivaldiCE        = 0.25 // how fast the error estimate adapts
	vivaldiCC        = 0.25 // how far one sample moves us, at most
	vivaldiMinHeight = 0.01 // ms: every link has some access delay
	vivaldiMaxError  = 1.5  // the error of a node that knows nothing yet
	rttInterval      = time.Second
)

type vivaldi struct {
	mu   sync.Mutex
	x, y float64 // ms
	h    float64 // ms
	err  float64 // relative error estimate
}

func newVivaldi() *vivaldi { return &vivaldi{h: vivaldiMinHeight, err: vivaldiMaxError} }

// observe updates our coordinate from one RTT sample to a peer at c.
func (v *vivaldi) observe(rtt time.Duration, c reducers.Coord, peer oplog.Key) {
	r := float64(rtt) / float64(time.Millisecond)
	if r <= 0 {
		return
	}
	px, py, ph := float64(c.X)/1000, float64(c.Y)/1000, math.Max(float64(c.H)/1000, vivaldiMinHeight)
	perr := vivaldiMaxError
	if c.ErrorPM > 0 {
		perr = float64(c.ErrorPM) / 1000
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	dx, dy := v.x-px, v.y-py
	plane := math.Hypot(dx, dy)
	dist := plane + v.h + ph
	w := v.err / (v.err + perr)
	es := math.Abs(dist-r) / r
	v.err = math.Min(es*vivaldiCE*w+v.err*(1-vivaldiCE*w), vivaldiMaxError)
	delta := vivaldiCC * w * (r - dist)
	if plane == 0 {
		// Same spot: move apart in a direction both ends derive alike.
		dx, dy, plane = unitFrom(peer)
	}
	v.x += delta * dx / plane
	v.y += delta * dy / plane
	v.h = math.Max(v.h+delta*(v.h+ph)/dist, vivaldiMinHeight)
}

// coord returns our coordinate in the integer form load ops carry.
func (v *vivaldi) coord() reducers.Coord {
	v.mu.Lock()
	defer v.mu.Unlock()
	return reducers.Coord{X: int64(v.x * 1000), Y: int64(v.y * 1000), H: int64(v.h * 1000), ErrorPM: int64(v.err * 1000)}
}

// unitFrom is a unit vector derived from a key.
func unitFrom(k oplog.Key) (x, y, norm float64) {
	h := sha256.Sum256(k[:])
	a := float64(binary.BigEndian.Uint64(h[:8])) / math.MaxUint64 * 2 * math.Pi
	return math.Cos(a), math.Sin(a), 1
}

// Coord returns the node's network coordinate, for its load reports.
func (m *Mesh) Coord() reducers.Coord { return m.coord.coord() }

// rttLoop feeds QUIC's RTT estimates into our coordinate.
func (m *Mesh) rttLoop() {
	t := time.NewTicker(rttInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		v := m.host.View()
		m.mu.Lock()
		for k, p := range m.peers {
			if l := v.Loads[k]; l != nil {
				m.coord.observe(p.conn.ConnectionStats().SmoothedRTT, l.Coord, k)
			}
		}
		m.mu.Unlock()
	}
}
