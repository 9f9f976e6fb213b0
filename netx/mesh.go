package netx

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Host is what the mesh needs from the node it serves.
type Host interface {
	// View returns the node's current view.
	View() *reducers.View
	// Ingest verifies, stores and folds ops that arrived from peer from. If
	// any op fails verification nothing is stored and an error returned.
	// The host hands newly stored ops back to Broadcast.
	Ingest(from oplog.Key, ops []*oplog.Op) ([]bool, error)
	// Ops returns the ops with these IDs that the host holds.
	Ops(ids []oplog.ID) []*oplog.Op
	// SyncSet is the set anti-entropy reconciles.
	SyncSet() SyncSet
	// AcceptJoin checks a joiner's ops (the token's chain and its
	// redemption, if any) against the view and stores them, or says why not.
	AcceptJoin(joiner oplog.Key, ops []*oplog.Op) error
	// Chain returns the grants that admit k, from the root down: what a
	// node that knows nothing else needs to let k in.
	Chain(k oplog.Key) []*oplog.Op
}

// Stream types: the first byte of every stream says what it carries.
// Later layers add call, tunnel, blob and relay with Handle.
const (
	StreamSync byte = 1 // bidirectional: range reconciliation, then the missing ops
	StreamPush byte = 2 // unidirectional: ops as they are accepted
	StreamJoin byte = 3 // bidirectional, on a join connection only
)

// Application error codes a connection closes with.
const (
	codeNormal   quic.ApplicationErrorCode = 0
	codeDenied   quic.ApplicationErrorCode = 1 // the peer is not (or no longer) a member
	codeProtocol quic.ApplicationErrorCode = 2 // the peer broke the protocol
	codeDup      quic.ApplicationErrorCode = 3 // a second connection to the same peer
)

// StreamHandler serves one stream a peer opened.
type StreamHandler func(ctx context.Context, peer oplog.Key, s *quic.Stream)

// Mesh is a node's QUIC endpoint and its links to peers.
type Mesh struct {
	cfg  Config
	self oplog.Key
	host Host
	log  *slog.Logger

	pc   net.PacketConn
	tr   *quic.Transport
	ln   *quic.Listener
	cert tls.Certificate
	qcfg *quic.Config

	mu        sync.Mutex
	peers     map[oplog.Key]*peer
	backoff   map[string]*backoff // by address
	bootstrap []string
	handlers  map[byte]StreamHandler
	coord     *vivaldi

	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	callStreams atomic.Int64 // call streams this node has opened
}

// New binds the node's UDP socket. Run starts serving on it.
func New(cfg Config, host Host) (*Mesh, error) {
	cfg = cfg.withDefaults()
	cert, err := certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another node using the port? pick one with --listen)", cfg.Listen, err)
	}
	var pc net.PacketConn = udp
	if cfg.Wrap != nil {
		pc = cfg.Wrap(udp)
	}
	m := &Mesh{
		cfg: cfg, self: oplog.KeyOf(cfg.Key), host: host, log: cfg.Logger,
		pc: pc, tr: &quic.Transport{Conn: pc}, cert: cert,
		peers: make(map[oplog.Key]*peer), backoff: make(map[string]*backoff),
		handlers: make(map[byte]StreamHandler), coord: newVivaldi(),
		qcfg: &quic.Config{
			MaxIdleTimeout:        cfg.IdleTimeout,
			KeepAlivePeriod:       cfg.IdleTimeout / 3,
			HandshakeIdleTimeout:  cfg.DialTimeout,
			MaxIncomingStreams:    1024,
			MaxIncomingUniStreams: 16,
		},
	}
	m.ln, err = m.tr.Listen(tlsConfig(cert, m.admit, protoMesh, protoJoin), m.qcfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	m.handlers[StreamSync] = m.serveSync
	return m, nil
}

// Addr returns the address the node listens on.
func (m *Mesh) Addr() net.Addr { return m.pc.LocalAddr() }

// Handle routes streams of type t to h. Call before Run.
func (m *Mesh) Handle(t byte, h StreamHandler) { m.handlers[t] = h }

// AddBootstrap adds addresses to dial until the node has a peer.
func (m *Mesh) AddBootstrap(addrs ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(m.bootstrap, a) {
			m.bootstrap = append(m.bootstrap, a)
		}
	}
}

// admit decides whether a key may speak the mesh protocol: it must be a
// node-tier member that is not denied and not expired. (Liveness is not
// required: a node back from a long sleep must be let in to report load.)
func (m *Mesh) admit(k oplog.Key) error {
	v := m.host.View()
	mem := v.Member(k)
	now := oplog.HLCAt(time.Now())
	switch {
	case mem == nil:
		return fmt.Errorf("key %s is not a member of this cluster", k.Short())
	case mem.Denied:
		return fmt.Errorf("key %s was denied", k.Short())
	case !mem.Active(now) || !mem.Tier.Node():
		return fmt.Errorf("key %s is not an active node", k.Short())
	}
	return nil
}

// Run serves until ctx is done, then closes every link and the socket.
func (m *Mesh) Run(ctx context.Context) error {
	m.ctx, m.stop = context.WithCancel(ctx)
	m.wg.Go(m.acceptLoop)
	m.wg.Go(m.dialLoop)
	m.wg.Go(m.syncLoop)
	m.wg.Go(m.rttLoop)
	<-m.ctx.Done()
	m.ln.Close()
	m.mu.Lock()
	for _, p := range m.peers {
		p.conn.CloseWithError(codeNormal, "node shutting down")
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.tr.Close()
	return m.pc.Close()
}

func (m *Mesh) acceptLoop() {
	for {
		conn, err := m.ln.Accept(m.ctx)
		if err != nil {
			return
		}
		m.wg.Go(func() { m.serveConn(conn, false) })
	}
}

// serveConn runs one connection until it closes.
func (m *Mesh) serveConn(conn *quic.Conn, outbound bool) {
	cs := conn.ConnectionState().TLS
	key, err := peerKey(cs)
	if err != nil {
		conn.CloseWithError(codeProtocol, err.Error())
		return
	}
	if cs.NegotiatedProtocol == protoJoin {
		m.serveJoin(conn, key)
		return
	}
	if key == m.self {
		conn.CloseWithError(codeNormal, "that is me")
		return
	}
	p := m.register(conn, key, outbound)
	if p == nil {
		return
	}
	m.log.Info("peer connected", "peer", key.Short(), "addr", conn.RemoteAddr().String(), "outbound", outbound)
	m.wg.Go(func() { p.pushLoop(m) })
	m.wg.Go(func() { m.acceptStreams(p) })
	m.wg.Go(func() { m.acceptUniStreams(p) })
	if outbound {
		m.wg.Go(func() { m.syncWith(p) })
	}
	// A link registered just after Run's shutdown sweep would be closed by
	// no one: every link also watches the mesh itself.
	select {
	case <-conn.Context().Done():
	case <-m.ctx.Done():
		conn.CloseWithError(codeNormal, "node shutting down")
		<-conn.Context().Done()
	}
	m.unregister(p)
	m.log.Info("peer disconnected", "peer", key.Short(), "reason", context.Cause(conn.Context()))
}

// register records a new link, resolving two links to one peer (both sides
// dialled at once): the link dialled by the smaller key wins, on both sides.
func (m *Mesh) register(conn *quic.Conn, key oplog.Key, outbound bool) *peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.peers[key]; ok && old.conn.Context().Err() == nil {
		dialer := key
		if outbound {
			dialer = m.self
		}
		oldDialer := key
		if old.outbound {
			oldDialer = m.self
		}
		if bytes.Compare(dialer[:], oldDialer[:]) >= 0 {
			conn.CloseWithError(codeDup, "already connected")
			return nil
		}
		old.conn.CloseWithError(codeDup, "replaced by a newer link")
	}
	p := newPeer(key, conn, outbound)
	m.peers[key] = p
	return p
}

func (m *Mesh) unregister(p *peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers[p.key] == p {
		delete(m.peers, p.key)
	}
	p.close()
}

func (m *Mesh) acceptStreams(p *peer) {
	for {
		s, err := p.conn.AcceptStream(m.ctx)
		if err != nil {
			return
		}
		m.wg.Go(func() {
			var t [1]byte
			if _, err := s.Read(t[:]); err != nil {
				s.CancelRead(0)
				s.CancelWrite(0)
				return
			}
			h := m.handlers[t[0]]
			if h == nil {
				m.protocolError(p, fmt.Errorf("unknown stream type %d", t[0]))
				s.CancelRead(0)
				s.CancelWrite(0)
				return
			}
			h(m.ctx, p.key, s)
		})
	}
}

func (m *Mesh) acceptUniStreams(p *peer) {
	for {
		s, err := p.conn.AcceptUniStream(m.ctx)
		if err != nil {
			return
		}
		m.wg.Go(func() { m.receivePush(p, s) })
	}
}

// protocolError disconnects a peer that broke the protocol.
func (m *Mesh) protocolError(p *peer, err error) {
	m.log.Warn("disconnecting peer that broke the protocol", "peer", p.key.Short(), "err", err)
	p.conn.CloseWithError(codeProtocol, err.Error())
}

// Recheck closes links to keys the view no longer admits: a deny or an
// expiry takes effect on every node as soon as it is folded. The link goes
// once what is queued for it has been sent, so that the subject hears of
// its own deny.
func (m *Mesh) Recheck() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range m.peers {
		if err := m.admit(k); err != nil && p.startClosing() {
			m.log.Info("closing link to a key that is no longer a member", "peer", k.Short(), "why", err)
			m.wg.Go(func() { p.drainThenClose(codeDenied, err.Error()) })
		}
	}
}

// closeAll closes every link at once.
func (m *Mesh) closeAll(code quic.ApplicationErrorCode, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.peers {
		p.conn.CloseWithError(code, reason)
	}
}

// PeerInfo describes one link.
type PeerInfo struct {
	Key      oplog.Key     `json:"key"`
	Addr     string        `json:"addr"`
	Outbound bool          `json:"outbound"`
	RTT      time.Duration `json:"rtt"`
	Since    time.Time     `json:"since"`
}

// Peers lists the current links, sorted by key.
func (m *Mesh) Peers() []PeerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PeerInfo, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, PeerInfo{Key: p.key, Addr: p.conn.RemoteAddr().String(), Outbound: p.outbound,
			RTT: p.conn.ConnectionStats().SmoothedRTT, Since: p.since})
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return out
}

// Connected reports whether there is a link to k.
func (m *Mesh) Connected(k oplog.Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.peers[k]
	return ok
}
