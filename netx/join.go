package netx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// The join protocol. A joiner is not a member yet, so it connects with ALPN
// pln-join/1, on which a node accepts any key but serves nothing except one
// join stream: the joiner sends the ops that admit it (the token's chain of
// grants and, for an invite, its redemption signed by the invite key, naming
// the key it connects with); the node checks them against its view, stores
// them (and so pushes them on) or says why not, and replies with where its
// peers can be reached. The joiner then connects again as a member.

// joinTimeout bounds a join exchange once connected.
const joinTimeout = 10 * time.Second

// joinLinger is how long a node keeps a join connection open after its
// reply, for the reply to arrive.
const joinLinger = time.Second

// maxJoinFrame bounds a join request or reply.
const maxJoinFrame = 1 << 20

type joinRequest struct {
	Ops [][]byte `cbor:"1,keyasint"`
}

type joinReply struct {
	Error string   `cbor:"1,keyasint,omitempty"` // empty: admitted
	Addrs []string `cbor:"2,keyasint,omitempty"` // where members can be reached
	Ops   [][]byte `cbor:"3,keyasint,omitempty"` // the grants that admit them
}

// Welcome is what a cluster tells a node it has admitted: where members
// are, and the grants that admit those members, so that the joiner can let
// them in before it has synced anything.
type Welcome struct {
	Addrs []string
	Ops   []*oplog.Op
}

// serveJoin answers one join connection.
func (m *Mesh) serveJoin(conn *quic.Conn, joiner oplog.Key) {
	ctx, cancel := context.WithTimeout(m.ctx, joinTimeout)
	defer cancel()
	s, err := conn.AcceptStream(ctx)
	if err != nil {
		conn.CloseWithError(codeProtocol, "no join request")
		return
	}
	reply := m.handleJoin(s, joiner)
	b, _ := oplog.Marshal(reply)
	w := bufio.NewWriter(s)
	if writeFrame(w, b) == nil && w.Flush() == nil {
		s.Close()
		// Let the reply arrive before the connection goes: the joiner hangs
		// up when it has it.
		linger, stop := context.WithTimeout(ctx, joinLinger)
		defer stop()
		select {
		case <-conn.Context().Done():
		case <-linger.Done():
		}
	}
	conn.CloseWithError(codeNormal, "join done")
}

func (m *Mesh) handleJoin(s *quic.Stream, joiner oplog.Key) joinReply {
	ops, err := decodeJoinRequest(bufio.NewReader(s))
	if err != nil {
		return joinReply{Error: err.Error()}
	}
	if err := m.host.AcceptJoin(joiner, ops); err != nil {
		m.log.Info("refused a join", "joiner", joiner.Short(), "why", err)
		return joinReply{Error: err.Error()}
	}
	m.log.Info("admitted a joiner", "joiner", joiner.Short())
	return m.welcome()
}

// Bounds on a join: the ops a joiner may present (the token's chain and its
// redemption), the members a reply names, and what the reply may carry.
const (
	maxJoinOps      = 64
	maxWelcomePeers = 8
	maxWelcomeAddrs = 128
	maxWelcomeOps   = 512
)

// decodeJoinRequest reads a join stream: its type, one bounded frame, and
// a strict CBOR request of 1 to maxJoinOps ops, each of which must decode.
func decodeJoinRequest(r *bufio.Reader) ([]*oplog.Op, error) {
	if t, err := r.ReadByte(); err != nil || t != StreamJoin {
		return nil, errors.New("expected a join stream")
	}
	raw, err := readFrame(r, maxJoinFrame)
	if err != nil {
		return nil, err
	}
	var req joinRequest
	if err := oplog.Unmarshal(raw, &req); err != nil || len(req.Ops) == 0 || len(req.Ops) > maxJoinOps {
		return nil, errors.New("malformed join request")
	}
	ops := make([]*oplog.Op, 0, len(req.Ops))
	for i, b := range req.Ops {
		op, err := oplog.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("join op %d: %w", i+1, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// decodeWelcome reads a node's answer to a join: a welcome, or the node's
// reason for refusing.
func decodeWelcome(raw []byte) (w *Welcome, refusal string, err error) {
	var reply joinReply
	if err := oplog.Unmarshal(raw, &reply); err != nil {
		return nil, "", fmt.Errorf("garbled answer to the join: %w", err)
	}
	if reply.Error != "" {
		return nil, reply.Error, nil
	}
	if len(reply.Addrs) > maxWelcomeAddrs || len(reply.Ops) > maxWelcomeOps {
		return nil, "", errors.New("oversized answer to the join")
	}
	w = &Welcome{Addrs: reply.Addrs}
	for _, b := range reply.Ops {
		op, err := oplog.Decode(b)
		if err != nil {
			return nil, "", fmt.Errorf("garbled answer to the join: %w", err)
		}
		w.Ops = append(w.Ops, op)
	}
	return w, "", nil
}

// welcome names this node and some of its peers, with their grants.
func (m *Mesh) welcome() joinReply {
	v := m.host.View()
	r := joinReply{Addrs: LocalAddrs(m.Addr())}
	keys := []oplog.Key{m.self}
	for _, p := range m.Peers() {
		if l := v.Loads[p.Key]; l != nil && len(l.Addrs) > 0 && len(keys) < maxWelcomePeers {
			r.Addrs = append(r.Addrs, l.Addrs...)
			keys = append(keys, p.Key)
		}
	}
	seen := make(map[oplog.ID]bool)
	for _, k := range keys {
		for _, op := range m.host.Chain(k) {
			if !seen[op.ID()] {
				seen[op.ID()] = true
				r.Ops = append(r.Ops, op.Bytes())
			}
		}
	}
	return r
}

// ErrJoinRefused is wrapped when a node answered and refused the join.
var ErrJoinRefused = errors.New("join refused")

// Join presents ops to the first reachable address in addrs, as the holder
// of key, and returns where members are and the grants that admit them. A
// refusal is final (the invite is used, expired, or for another cluster);
// unreachable addresses are tried in turn. The ops it returns are decoded,
// not verified: the joiner's store verifies them as it takes them in.
func Join(ctx context.Context, cfg Config, addrs []string, ops []*oplog.Op) (*Welcome, error) {
	cfg = cfg.withDefaults()
	if len(addrs) == 0 {
		return nil, errors.New("the token names no address to join through; ask for a token from a running node")
	}
	cert, err := certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn = udp
	if cfg.Wrap != nil {
		pc = cfg.Wrap(udp)
	}
	tr := &quic.Transport{Conn: pc}
	defer pc.Close()
	defer tr.Close()
	req := joinRequest{}
	for _, op := range ops {
		req.Ops = append(req.Ops, op.Bytes())
	}
	body, err := oplog.Marshal(req)
	if err != nil {
		return nil, err
	}
	anyKey := func(oplog.Key) error { return nil } // the joiner cannot judge the cluster's keys yet; every op it receives is verified
	var problems []string
	for _, a := range addrs {
		w, refusal, err := joinOnce(ctx, tr, a, tlsConfig(cert, anyKey, protoJoin), cfg, body)
		if refusal != "" {
			return nil, fmt.Errorf("%w by %s: %s", ErrJoinRefused, a, refusal)
		}
		if err == nil {
			return w, nil
		}
		problems = append(problems, fmt.Sprintf("%s (%v)", a, err))
	}
	return nil, fmt.Errorf("could not reach the cluster at any address in the token: %s", strings.Join(problems, "; "))
}

func joinOnce(ctx context.Context, tr *quic.Transport, addr string, tc *tls.Config, cfg Config, body []byte) (*Welcome, string, error) {
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+joinTimeout)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer dcancel()
	conn, err := tr.Dial(dctx, udp, tc, &quic.Config{HandshakeIdleTimeout: cfg.DialTimeout, MaxIdleTimeout: joinTimeout})
	if err != nil {
		return nil, "", fmt.Errorf("unreachable: %w", err)
	}
	defer conn.CloseWithError(codeNormal, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, "", err
	}
	w := bufio.NewWriter(s)
	w.WriteByte(StreamJoin)
	if err := writeFrame(w, body); err != nil {
		return nil, "", err
	}
	if err := w.Flush(); err != nil {
		return nil, "", err
	}
	raw, err := readFrame(bufio.NewReader(s), maxJoinFrame)
	if err != nil {
		return nil, "", fmt.Errorf("no answer to the join: %w", err)
	}
	return decodeWelcome(raw)
}
