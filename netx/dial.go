package netx

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// backoff spaces out dials to an address that keeps failing.
type backoff struct {
	next    time.Time     // no dial before this
	wait    time.Duration // the wait after the next failure
	dialing bool
}

// target is a peer the node should be linked to, and where to find it.
type target struct {
	key   oplog.Key // zero for a bootstrap address
	addrs []string
}

// dialLoop keeps the node linked to the peers it should have, and to no
// others, every DialInterval, with per-address backoff.
func (m *Mesh) dialLoop() {
	t := time.NewTicker(m.cfg.DialInterval)
	defer t.Stop()
	for {
		m.Recheck() // grants also lapse by expiry, with no op to say so
		if err := m.admit(m.self); err != nil {
			// Denied or expired ourselves: every member would refuse us.
			m.closeAll(codeDenied, "this node is no longer a member")
		} else {
			for _, tg := range m.targets() {
				m.maybeDial(tg)
			}
		}
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// targets lists the peers this node should be linked to and is not: every
// active node in a small cluster, a bounded deterministic set in a large one
// (reducers.Neighbours), and the bootstrap addresses while it has no peer.
func (m *Mesh) targets() []target {
	v := m.host.View()
	now := oplog.HLCAt(time.Now())
	want := reducers.Neighbours(v, m.self, now, m.cfg.FullMesh)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []target
	for _, k := range want {
		if _, linked := m.peers[k]; linked {
			continue
		}
		if l := v.Loads[k]; l != nil && len(l.Addrs) > 0 {
			out = append(out, target{key: k, addrs: l.Addrs})
		}
	}
	if len(m.peers) == 0 {
		for _, a := range m.bootstrap {
			out = append(out, target{addrs: []string{a}})
		}
	}
	return out
}

// maybeDial dials the first address of tg that is not backing off.
func (m *Mesh) maybeDial(tg target) {
	now := time.Now()
	m.mu.Lock()
	var addr string
	for _, a := range tg.addrs {
		b := m.backoff[a]
		if b == nil {
			b = &backoff{wait: m.cfg.BackoffMin}
			m.backoff[a] = b
		}
		if !b.dialing && !now.Before(b.next) {
			addr, b.dialing = a, true
			break
		}
	}
	m.mu.Unlock()
	if addr == "" {
		return
	}
	m.wg.Go(func() {
		// A dial is good only once its link has lasted: with TLS 1.3 our
		// handshake completes before the peer has judged our certificate,
		// so a refusal arrives as a link that dies at once.
		start := time.Now()
		conn, err := m.dial(addr)
		if err == nil {
			m.serveConn(conn, true)
			if time.Since(start) < healthyLink {
				err = errors.New("the link closed at once")
			}
		}
		m.mu.Lock()
		b := m.backoff[addr]
		b.dialing = false
		if err != nil {
			b.next = time.Now().Add(b.wait)
			b.wait = min(2*b.wait, m.cfg.BackoffMax)
		} else {
			b.wait, b.next = m.cfg.BackoffMin, time.Time{}
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Debug("dial failed", "addr", addr, "peer", tg.key.Short(), "err", err)
		}
	})
}

// healthyLink is how long a link must last for its dial to count as good.
const healthyLink = 2 * time.Second

// dial makes a link to addr.
func (m *Mesh) dial(addr string) (*quic.Conn, error) {
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
	defer cancel()
	return m.tr.Dial(ctx, udp, tlsConfig(m.cert, m.admit, protoMesh), m.qcfg)
}

// LocalAddrs lists the addresses a node listening on listen can be reached
// at: the listen address itself if it names a host, else every unicast
// address of this machine's interfaces, loopback last.
func LocalAddrs(listen net.Addr) []string {
	ua, ok := listen.(*net.UDPAddr)
	if !ok {
		return []string{listen.String()}
	}
	if !ua.IP.IsUnspecified() {
		return []string{ua.String()}
	}
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out, loop []string
	for _, a := range ifs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsMulticast() {
			continue
		}
		s := net.JoinHostPort(ipn.IP.String(), strconv.Itoa(ua.Port))
		if ipn.IP.IsLoopback() {
			loop = append(loop, s)
		} else {
			out = append(out, s)
		}
	}
	out = append(out, loop...)
	if len(out) > reducers.MaxLoadAddrs {
		out = out[:reducers.MaxLoadAddrs]
	}
	return slices.Clip(out)
}

// Public reports whether addr (host:port) is a global unicast address that
// is not private: one any machine on the internet can dial.
func Public(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsGlobalUnicast() && !ip.IsPrivate()
}
