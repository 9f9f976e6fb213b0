package netx

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// The filter on raw UDP sockets on loopback. A packet that should not arrive
// is proved absent by a marker sent after it on an untouched link: loopback
// delivers in order, so once the marker is in, the dropped packet is not
// coming.

// udpEnd is one filtered socket and what it has received.
type udpEnd struct {
	pc   net.PacketConn
	addr string

	mu   sync.Mutex
	got  []received
	done chan struct{}
}

type received struct {
	from string
	seq  uint32
	at   time.Time
}

func newUDPEnd(t *testing.T, f *Filter) *udpEnd {
	t.Helper()
	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &udpEnd{pc: f.Wrap(raw), addr: raw.LocalAddr().String(), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		buf := make([]byte, 64)
		for {
			n, from, err := e.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 4 {
				e.mu.Lock()
				e.got = append(e.got, received{from.String(), binary.BigEndian.Uint32(buf[:4]), time.Now()})
				e.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { e.pc.Close(); <-e.done })
	return e
}

func (e *udpEnd) send(t *testing.T, to *udpEnd, seq uint32) {
	t.Helper()
	addr, _ := net.ResolveUDPAddr("udp", to.addr)
	if _, err := e.pc.WriteTo(binary.BigEndian.AppendUint32(nil, seq), addr); err != nil {
		t.Fatal(err)
	}
}

// has reports whether e received seq from.
func (e *udpEnd) has(from *udpEnd, seq uint32) bool {
	_, ok := e.find(from, seq)
	return ok
}

func (e *udpEnd) find(from *udpEnd, seq uint32) (received, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.got {
		if r.from == from.addr && r.seq == seq {
			return r, true
		}
	}
	return received{}, false
}

// await fails the test unless e receives seq from within a few seconds.
func (e *udpEnd) await(t *testing.T, from *udpEnd, seq uint32) received {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r, ok := e.find(from, seq); ok {
			return r
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s never received packet %d from %s", e.addr, seq, from.addr)
	return received{}
}

// absent asserts that seq from did not reach e, by sending a marker from
// witness after it and waiting for the marker.
func (e *udpEnd) absent(t *testing.T, from, witness *udpEnd, seq, marker uint32) {
	t.Helper()
	witness.send(t, e, marker)
	e.await(t, witness, marker)
	if e.has(from, seq) {
		t.Fatalf("packet %d from %s reached %s through a cut link", seq, from.addr, e.addr)
	}
}

func TestFilterCutAndHeal(t *testing.T) {
	f := NewFilter(1)
	a, b, w := newUDPEnd(t, f), newUDPEnd(t, f), newUDPEnd(t, f)
	a.send(t, b, 1)
	b.await(t, a, 1)

	f.Cut(a.addr, b.addr)
	a.send(t, b, 2)
	b.absent(t, a, w, 2, 100)
	b.send(t, a, 3) // both ways
	a.absent(t, b, w, 3, 101)
	a.send(t, w, 4) // other links are untouched
	w.await(t, a, 4)

	f.Heal(a.addr, b.addr)
	a.send(t, b, 5)
	b.await(t, a, 5)
	b.send(t, a, 6)
	a.await(t, b, 6)
}

func TestFilterPartitionAndHealAll(t *testing.T) {
	f := NewFilter(1)
	a, b, c, w := newUDPEnd(t, f), newUDPEnd(t, f), newUDPEnd(t, f), newUDPEnd(t, f)
	f.Partition([]string{a.addr}, []string{b.addr, c.addr})
	a.send(t, b, 1)
	a.send(t, c, 2)
	b.send(t, c, 3) // inside a group: through
	c.await(t, b, 3)
	b.absent(t, a, w, 1, 100)
	c.absent(t, a, w, 2, 101)

	f.HealAll()
	a.send(t, b, 4)
	b.await(t, a, 4)
	c.send(t, a, 5)
	a.await(t, c, 5)
}

func TestFilterDelay(t *testing.T) {
	f := NewFilter(1)
	a, b := newUDPEnd(t, f), newUDPEnd(t, f)
	const d = 80 * time.Millisecond
	f.Delay(a.addr, b.addr, d)
	sent := time.Now()
	a.send(t, b, 1)
	if r := b.await(t, a, 1); r.at.Sub(sent) < d {
		t.Errorf("a packet delayed by %s arrived after %s", d, r.at.Sub(sent))
	}
	f.Heal(a.addr, b.addr)
	a.send(t, b, 2)
	b.await(t, a, 2)
}

// A socket closed while packets are held sends none of them, and WriteTo on
// it fails.
func TestFilterDelayedPacketsDieWithTheSocket(t *testing.T) {
	f := NewFilter(1)
	a, b, w := newUDPEnd(t, f), newUDPEnd(t, f), newUDPEnd(t, f)
	f.Delay(a.addr, b.addr, 50*time.Millisecond)
	a.send(t, b, 1)
	a.pc.Close()
	addr, _ := net.ResolveUDPAddr("udp", b.addr)
	if _, err := a.pc.WriteTo([]byte{0, 0, 0, 2}, addr); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v; want net.ErrClosed", err)
	}
	// The held packet was due 50 ms after it was sent; wait past that, then
	// prove it never came.
	due := time.Now().Add(60 * time.Millisecond)
	for time.Now().Before(due) {
		time.Sleep(5 * time.Millisecond)
	}
	b.absent(t, a, w, 1, 100)
}

// Loss drops the share of packets the seeded generator says, no more and no
// fewer, on the lossy link only.
func TestFilterLoss(t *testing.T) {
	const seed, share, n = 7, 0.3, 300
	f := NewFilter(seed)
	a, b := newUDPEnd(t, f), newUDPEnd(t, f)
	f.Loss(a.addr, b.addr, share)
	rng := rand.New(rand.NewPCG(seed, seed)) // the filter's own draws, replayed
	var kept []uint32
	for i := range uint32(n) {
		if rng.Float64() >= share {
			kept = append(kept, i)
		}
		a.send(t, b, i)
		if i%50 == 49 { // let the receiver keep up, so the OS drops nothing
			for _, k := range kept {
				b.await(t, a, k)
			}
		}
	}
	for _, k := range kept {
		b.await(t, a, k)
	}
	b.mu.Lock()
	got := len(b.got)
	b.mu.Unlock()
	if got != len(kept) {
		t.Errorf("%d of %d packets arrived; the filter's draws keep %d", got, n, len(kept))
	}
	if lost := 1 - float64(len(kept))/n; lost < share-0.1 || lost > share+0.1 {
		t.Errorf("lost %.2f of packets; want about %.2f", lost, share)
	}
}
