package cas

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
)

// testNet is a few blob servers on loopback QUIC and one client linked to
// each of them: an Opener, as a node's mesh would be, without a mesh or a
// view. Each server runs the real serve on a stream that records the
// requests it reads and can be told to end a response early.
type testNet struct {
	tb     testing.TB
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	peers  map[oplog.Key]*testPeer
}

// testPeer is one server and the client's connection to it.
type testPeer struct {
	key   oplog.Key
	store *Store
	ln    *quic.Listener
	conn  *quic.Conn // the client's end

	mu      sync.Mutex
	offsets []int64 // the offset of every request it read, in order
	cuts    []int64 // end each next ok response after this many body bytes
	down    bool    // the client cannot open streams to it
	opened  int     // streams the client opened to it
}

func newTestNet(tb testing.TB) *testNet {
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNet{tb: tb, ctx: ctx, cancel: cancel, peers: map[oplog.Key]*testPeer{}}
	tb.Cleanup(func() {
		cancel()
		for _, p := range n.peers {
			p.conn.CloseWithError(0, "test over")
			p.ln.Close()
		}
		n.wg.Wait()
	})
	return n
}

var testQUIC = &quic.Config{MaxIdleTimeout: 5 * time.Second}

const testALPN = "pln-cas-test"

// addPeer starts a server over store and links the client to it.
func (n *testNet) addPeer(store *Store) *testPeer {
	n.tb.Helper()
	key, srvTLS, cliTLS := testTLS(n.tb)
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, testQUIC)
	if err != nil {
		n.tb.Fatal(err)
	}
	p := &testPeer{key: key, store: store, ln: ln}
	n.wg.Go(func() { n.acceptLoop(p) })
	p.conn, err = quic.DialAddr(n.ctx, ln.Addr().String(), cliTLS, testQUIC)
	if err != nil {
		ln.Close()
		n.tb.Fatal(err)
	}
	n.peers[p.key] = p
	return p
}

// testTLS makes a server identity and the TLS configurations for both
// ends: self-signed, as the mesh's are, with nothing checked but the ALPN.
func testTLS(tb testing.TB) (oplog.Key, *tls.Config, *tls.Config) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{testALPN}}
	cli := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{testALPN}}
	return oplog.Key(pub), srv, cli
}

func (n *testNet) acceptLoop(p *testPeer) {
	for {
		conn, err := p.ln.Accept(n.ctx)
		if err != nil {
			return
		}
		n.wg.Go(func() {
			for {
				st, err := conn.AcceptStream(n.ctx)
				if err != nil {
					return
				}
				n.wg.Go(func() { n.serveStream(p, st) })
			}
		})
	}
}

// serveStream does what the mesh does with a stream (read its type, hand
// it to the handler) with the handler's stream tapped.
func (n *testNet) serveStream(p *testPeer, st *quic.Stream) {
	var t [1]byte
	if _, err := st.Read(t[:]); err != nil || t[0] != netx.StreamBlob {
		st.CancelRead(0)
		st.CancelWrite(0)
		return
	}
	p.mu.Lock()
	cut := int64(-1)
	if len(p.cuts) > 0 {
		cut, p.cuts = p.cuts[0], p.cuts[1:]
	}
	p.mu.Unlock()
	serve(n.ctx, p.store, &tappedStream{Stream: st, peer: p, cut: cut})
}

// OpenStream is the Opener the client fetches with.
func (n *testNet) OpenStream(ctx context.Context, peer oplog.Key, t byte) (*quic.Stream, error) {
	p := n.peers[peer]
	if p == nil {
		return nil, fmt.Errorf("no link to peer %s", peer.Short())
	}
	p.mu.Lock()
	down := p.down
	p.opened++
	p.mu.Unlock()
	if down {
		return nil, errors.New("link is down")
	}
	st, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write([]byte{t}); err != nil {
		st.CancelWrite(0)
		st.CancelRead(0)
		return nil, err
	}
	return st, nil
}

func (p *testPeer) requests() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.offsets...)
}

func (p *testPeer) streams() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

func (p *testPeer) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// tappedStream records the request the server reads and, if cut is not
// negative, ends the response cleanly (a FIN, so that exactly cut body
// bytes arrive) after cut bytes of body: a transfer broken midway.
type tappedStream struct {
	*quic.Stream
	peer *testPeer
	req  []byte

	cut     int64
	written int64 // including the header
	isCut   bool
}

var errCut = errors.New("cut by the test")

func (s *tappedStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if len(s.req) < requestSize {
		s.req = append(s.req, b[:min(n, requestSize-len(s.req))]...)
		if len(s.req) == requestSize {
			if q, err := readRequest(bytes.NewReader(s.req)); err == nil {
				s.peer.mu.Lock()
				s.peer.offsets = append(s.peer.offsets, q.offset)
				s.peer.mu.Unlock()
			}
		}
	}
	return n, err
}

func (s *tappedStream) Write(b []byte) (int, error) {
	if s.cut < 0 {
		return s.Stream.Write(b)
	}
	room := int64(responseSize) + s.cut - s.written
	if int64(len(b)) <= room {
		n, err := s.Stream.Write(b)
		s.written += int64(n)
		return n, err
	}
	n, _ := s.Stream.Write(b[:max(room, 0)])
	s.written += int64(n)
	s.isCut = true
	s.Stream.Close()
	return n, errCut
}

// CancelWrite after a cut would reset the stream and lose what was sent.
func (s *tappedStream) CancelWrite(code quic.StreamErrorCode) {
	if !s.isCut {
		s.Stream.CancelWrite(code)
	}
}

// randomBytes returns n bytes from seed, the same on every run.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	mrand.NewChaCha8(key).Read(b)
	return b
}

// noLeaks fails the test if goroutines of this package or of quic-go that
// started during it outlive it. Call it first, so that its check runs after
// every other cleanup.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				var ours []string
				for _, g := range strings.Split(string(buf), "\n\n") {
					if (strings.Contains(g, "quic-go") || strings.Contains(g, "pln/cas.")) && !strings.Contains(g, "noLeaks") {
						ours = append(ours, g)
					}
				}
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), strings.Join(ours, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
