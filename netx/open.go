package netx

import (
	"context"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// StreamBlob carries one content fetch: a digest and an offset, then the
// bytes from there to the end. Package cas owns the protocol; this package
// only routes the stream.
const StreamBlob byte = 6

// OpenStream opens a bidirectional stream of type t to a linked peer, for
// protocols that live above this package (cas's blob fetch). It writes the
// type byte; the caller owns the stream from then on. It never dials: a
// peer the node has no link to is an error, and the caller tries another.
func (m *Mesh) OpenStream(ctx context.Context, peer oplog.Key, t byte) (*quic.Stream, error) {
	if t == StreamPush || t == StreamJoin {
		// Neither may open a bidirectional mesh stream: the peer would take
		// it for a broken protocol and drop the link.
		return nil, fmt.Errorf("stream type %d cannot be opened with OpenStream", t)
	}
	m.mu.Lock()
	p := m.peers[peer]
	m.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("no link to peer %s", peer.Short())
	}
	s, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open a stream to %s: %w", peer.Short(), err)
	}
	if _, err := s.Write([]byte{t}); err != nil {
		s.CancelRead(0)
		s.CancelWrite(0)
		return nil, fmt.Errorf("open a stream to %s: %w", peer.Short(), err)
	}
	return s, nil
}
