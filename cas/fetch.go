package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
)

// Opener opens a stream of type t to a linked peer and writes the type
// byte. *netx.Mesh is one.
type Opener interface {
	OpenStream(ctx context.Context, peer oplog.Key, t byte) (*quic.Stream, error)
}

var _ Opener = (*netx.Mesh)(nil)

// maxAttemptsPerPeer bounds how often Fetch asks one peer in a row. It asks
// again only after an attempt that brought bytes and then broke, resuming
// where it broke; an attempt that brought nothing moves on to the next peer.
const maxAttemptsPerPeer = 4

// Errors of one attempt that say what to do next.
var (
	errPeerFailed = errors.New("it holds the object but could not read it")
	errBeyondEnd  = errors.New("the download so far is longer than the object")
)

// Fetch gets d from the first of peers that has it and stores it. It
// resumes whatever an earlier attempt left (a broken stream, a fetch that
// failed, a restart) and goes back to a peer whose stream broke after
// bringing something. It refuses objects over maxSize bytes before any of
// their bytes arrive, and stores nothing that does not hash to d: bytes
// that do not are deleted, the peer that sent them is not asked again, and
// the next peer starts from zero. progress, if not nil, is told the bytes
// held so far and the object's size as they arrive, on Fetch's goroutine.
//
// Fetch returns nil at once if the store already holds d, and waits for a
// fetch of d already running in this process rather than start another.
// Its error, when every peer failed, wraps each peer's reason: ErrNotFound,
// ErrTooLarge, ErrDigestMismatch or what broke.
func Fetch(ctx context.Context, o Opener, s *Store, d oplog.Digest, peers []oplog.Key, maxSize int64, progress func(done, total int64)) error {
	p, err := s.partialWait(ctx, d)
	if p == nil {
		return err // stored already, or ctx ended
	}
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	// restart throws away what the download holds and starts it again.
	restart := func(discard bool) error {
		if discard {
			p.Discard()
		}
		p, err = s.partialWait(ctx, d)
		return err
	}

	fail := &FetchError{Digest: d}
	for _, peer := range peers {
		// Whether this peer served every byte the download holds: if it did
		// and they are wrong, it lied.
		sole := p.Len() == 0
		for attempt := 1; attempt <= maxAttemptsPerPeer; attempt++ {
			if p.Len() > maxSize {
				if err := restart(true); p == nil {
					return err
				}
				sole = true
			}
			got, err := fetchOnce(ctx, o, p, peer, maxSize, progress)
			if err == nil {
				err = p.Commit()
				if err == nil {
					return nil
				}
				if !errors.Is(err, ErrDigestMismatch) {
					return err // this node's disk, not the peer
				}
				fail.add(peer, err)
				if err := restart(false); p == nil { // Commit discarded it
					return err
				}
				if sole {
					break
				}
				sole = true // its bytes were mixed with older ones: one clean try
				continue
			}
			if ctx.Err() != nil {
				return fmt.Errorf("fetch %s: %w", d.Short(), context.Cause(ctx))
			}
			if p.err != nil {
				return p.err // this node's disk, not the peer
			}
			fail.add(peer, err)
			if errors.Is(err, errBeyondEnd) {
				if err := restart(true); p == nil {
					return err
				}
				sole = true
				continue
			}
			if got == 0 {
				break
			}
		}
	}
	return fail
}

// FetchError is the error of a Fetch that no peer could serve. It wraps
// each peer's reason, so errors.Is finds ErrNotFound, ErrTooLarge or
// ErrDigestMismatch in it.
type FetchError struct {
	Digest oplog.Digest
	Peers  []oplog.Key // in the order they were tried, once per attempt
	Errs   []error     // what each attempt ended with
}

func (e *FetchError) add(peer oplog.Key, err error) {
	e.Peers = append(e.Peers, peer)
	e.Errs = append(e.Errs, err)
}

func (e *FetchError) Error() string {
	if len(e.Errs) == 0 {
		return fmt.Sprintf("fetch %s: no peer to fetch it from (no live node claims it)", e.Digest.Short())
	}
	var why []string
	for i, err := range e.Errs {
		why = append(why, fmt.Sprintf("%s: %v", e.Peers[i].Short(), err))
	}
	return fmt.Sprintf("fetch %s: no peer could serve it (%s)", e.Digest.Short(), strings.Join(why, "; "))
}

// Unwrap returns each attempt's error; with no peers to ask, ErrNotFound.
func (e *FetchError) Unwrap() []error {
	if len(e.Errs) == 0 {
		return []error{ErrNotFound}
	}
	return e.Errs
}

// fetchOnce asks peer for what p lacks and appends what arrives. It returns
// nil once p holds the whole object (not yet checked), and how many bytes
// it brought either way.
func fetchOnce(ctx context.Context, o Opener, p *Partial, peer oplog.Key, maxSize int64, progress func(done, total int64)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := o.OpenStream(ctx, peer, netx.StreamBlob)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead(0)
		st.CancelWrite(0)
	})
	defer stop()
	defer st.CancelRead(0) // the rest, if any, is not wanted

	off := p.Len()
	st.SetWriteDeadline(time.Now().Add(stallTimeout))
	if _, err := st.Write(request{digest: p.d, offset: off}.encode()); err != nil {
		return 0, err
	}
	st.Close()
	st.SetReadDeadline(time.Now().Add(stallTimeout))
	h, err := readResponse(st)
	if err != nil {
		return 0, err
	}
	switch {
	case h.status == statusNotFound:
		return 0, ErrNotFound
	case h.status == statusFailed:
		return 0, errPeerFailed
	case h.status == statusBeyondEnd:
		return 0, fmt.Errorf("%w: %d bytes held, the object is %d", errBeyondEnd, off, h.size)
	case h.size > maxSize:
		return 0, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, h.size, maxSize)
	case off > h.size:
		return 0, fmt.Errorf("%w: offset %d past the end (%d) but answered ok", errBlobProtocol, off, h.size)
	}
	var w io.Writer = p
	if progress != nil {
		progress(off, h.size)
		w = &progressWriter{p: p, total: h.size, fn: progress}
	}
	want := h.size - off
	got, err := copyBuf(w, io.LimitReader(&stallReader{st: st}, want))
	if err != nil {
		return got, err
	}
	if got < want {
		return got, fmt.Errorf("stream ended after %d of %d bytes", off+got, h.size)
	}
	return got, nil
}

// progressWriter tells fn how far a download has come after every write.
type progressWriter struct {
	p     *Partial
	total int64
	fn    func(done, total int64)
}

func (w *progressWriter) Write(b []byte) (int, error) {
	n, err := w.p.Write(b)
	if n > 0 {
		w.fn(w.p.Len(), w.total)
	}
	return n, err
}
