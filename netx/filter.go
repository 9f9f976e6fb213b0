package netx

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// Filter sits between nodes' UDP sockets and the network in tests and in
// 'pln dev': it can cut links (a partition), delay them, or drop a share of
// their packets, and heal them again. It acts on what a socket sends, so a
// link cut between A and B drops A→B at A and B→A at B. Addresses are
// compared as strings ("127.0.0.1:60611").
type Filter struct {
	mu    sync.Mutex
	rules map[link]rule
	rng   *rand.Rand
}

type link struct{ from, to string }

type rule struct {
	cut   bool
	delay time.Duration
	loss  float64 // share of packets dropped, 0..1
}

// NewFilter returns a filter that lets everything through. seed makes its
// packet loss reproducible.
func NewFilter(seed uint64) *Filter {
	return &Filter{rules: make(map[link]rule), rng: rand.New(rand.NewPCG(seed, seed))}
}

// Wrap returns pc with the filter applied to what it sends.
func (f *Filter) Wrap(pc net.PacketConn) net.PacketConn {
	return &filteredConn{PacketConn: pc, f: f, local: pc.LocalAddr().String()}
}

func (f *Filter) set(a, b string, fn func(*rule)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range []link{{a, b}, {b, a}} {
		r := f.rules[l]
		fn(&r)
		f.rules[l] = r
	}
}

// Cut drops every packet between a and b, both ways.
func (f *Filter) Cut(a, b string) { f.set(a, b, func(r *rule) { r.cut = true }) }

// Delay holds every packet between a and b for d, both ways.
func (f *Filter) Delay(a, b string, d time.Duration) { f.set(a, b, func(r *rule) { r.delay = d }) }

// Loss drops a share (0..1) of the packets between a and b, both ways.
func (f *Filter) Loss(a, b string, share float64) { f.set(a, b, func(r *rule) { r.loss = share }) }

// Heal restores the link between a and b.
func (f *Filter) Heal(a, b string) { f.set(a, b, func(r *rule) { *r = rule{} }) }

// Partition cuts every link between addresses in different groups.
func (f *Filter) Partition(groups ...[]string) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					f.Cut(a, b)
				}
			}
		}
	}
}

// HealAll restores every link.
func (f *Filter) HealAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.rules)
}

// verdict says whether to drop a packet and how long to hold it.
func (f *Filter) verdict(from, to string) (drop bool, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rules[link{from, to}]
	if !ok {
		return false, 0
	}
	return r.cut || (r.loss > 0 && f.rng.Float64() < r.loss), r.delay
}

type filteredConn struct {
	net.PacketConn
	f     *Filter
	local string

	mu     sync.Mutex
	closed bool
	timers map[*time.Timer]struct{}
}

func (c *filteredConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	drop, delay := c.f.verdict(c.local, addr.String())
	switch {
	case drop:
		return len(p), nil // lost on the wire, as far as the sender can tell
	case delay > 0:
		buf := append([]byte(nil), p...)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return 0, net.ErrClosed
		}
		if c.timers == nil {
			c.timers = make(map[*time.Timer]struct{})
		}
		var t *time.Timer
		t = time.AfterFunc(delay, func() {
			c.mu.Lock()
			delete(c.timers, t)
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.PacketConn.WriteTo(buf, addr)
			}
		})
		c.timers[t] = struct{}{}
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *filteredConn) Close() error {
	c.mu.Lock()
	c.closed = true
	for t := range c.timers {
		t.Stop()
	}
	c.timers = nil
	c.mu.Unlock()
	return c.PacketConn.Close()
}

// SetReadBuffer and SetWriteBuffer pass through to the socket, which quic-go
// sizes for throughput.
func (c *filteredConn) SetReadBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return nil
}

func (c *filteredConn) SetWriteBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return nil
}

// SyscallConn exposes the socket for quic-go's buffer checks.
func (c *filteredConn) SyscallConn() (syscall.RawConn, error) {
	if s, ok := c.PacketConn.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		return s.SyscallConn()
	}
	return nil, errors.New("not a socket")
}
