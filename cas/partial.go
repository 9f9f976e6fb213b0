package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/pln-mesh/pln/oplog"
)

// Partial is a download of one object in progress: an append-only file
// under <dir>/cas/partial that outlives the process, so that a transfer
// that breaks resumes from Len. It hashes as it goes (the bytes already on
// disk when it was opened, then every Write), so Commit checks the whole
// file without reading it again.
//
// A Partial is not safe for concurrent use. The store hands out one per
// digest at a time; Close, Commit or Discard lets it go.
type Partial struct {
	s    *Store
	d    oplog.Digest
	path string
	f    *os.File
	h    hash.Hash
	n    int64
	err  error // a failed write: the file may hold bytes the hash lacks
	done bool
}

// Partial opens the download of d, creating it empty or resuming what an
// earlier attempt (in this process or before a restart) left. It fails
// with ErrBusy while another Partial for d is open.
func (s *Store) Partial(d oplog.Digest) (*Partial, error) {
	if wait := s.claim(d); wait != nil {
		return nil, fmt.Errorf("%s: %w", d.Short(), ErrBusy)
	}
	p, err := s.openPartial(d)
	if err != nil {
		s.release(d)
		return nil, err
	}
	return p, nil
}

// partialWait is Partial that waits, as long as ctx allows, for another
// download of d to finish. It returns nil and no error if, once it may go
// ahead, the store already holds d.
func (s *Store) partialWait(ctx context.Context, d oplog.Digest) (*Partial, error) {
	for {
		if s.Has(d) {
			return nil, nil
		}
		wait := s.claim(d)
		if wait == nil {
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.Has(d) { // stored between the check and the claim
		s.release(d)
		return nil, nil
	}
	p, err := s.openPartial(d)
	if err != nil {
		s.release(d)
		return nil, err
	}
	return p, nil
}

// claim marks d's partial as taken and returns nil, or, if it already is,
// returns a channel that is closed when it is let go.
func (s *Store) claim(d oplog.Digest) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.busy[d]; ok {
		return ch
	}
	s.busy[d] = make(chan struct{})
	return nil
}

func (s *Store) release(d oplog.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.busy[d]; ok {
		close(ch)
		delete(s.busy, d)
	}
}

func (s *Store) openPartial(d oplog.Digest) (*Partial, error) {
	path := filepath.Join(s.partialDir(), d.String())
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", d.Short(), err)
	}
	h := sha256.New()
	n, err := copyBuf(h, f) // what an earlier attempt left
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("download %s: %w", d.Short(), err)
	}
	return &Partial{s: s, d: d, path: path, f: f, h: h, n: n}, nil
}

var errFinished = errors.New("download already committed, discarded or closed")

// Len is how many bytes the download holds: the offset to resume from.
func (p *Partial) Len() int64 { return p.n }

// Write appends b.
func (p *Partial) Write(b []byte) (int, error) {
	if p.done {
		return 0, errFinished
	}
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.f.Write(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	if err != nil {
		p.err = fmt.Errorf("download %s: %w", p.d.Short(), err)
		return n, p.err
	}
	return n, nil
}

// Commit checks that the download hashes to its digest and, if it does,
// makes it durable and moves it into the store. If it does not, the
// download is deleted and the error wraps ErrDigestMismatch. Either way the
// Partial is finished.
func (p *Partial) Commit() error {
	if p.done {
		return errFinished
	}
	if p.err != nil {
		// The file may hold bytes the hash never saw; it cannot be trusted.
		p.Discard()
		return p.err
	}
	var got oplog.Digest
	p.h.Sum(got[:0])
	if got != p.d {
		p.Discard()
		return fmt.Errorf("download of %s (%d bytes): %w (got %s)", p.d.Short(), p.n, ErrDigestMismatch, got.Short())
	}
	p.done = true
	defer p.s.release(p.d)
	if err := p.f.Sync(); err != nil {
		p.f.Close()
		return fmt.Errorf("download %s: %w", p.d.Short(), err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("download %s: %w", p.d.Short(), err)
	}
	return p.s.place(p.path, p.d)
}

// Close lets the download go, keeping what it holds for the next attempt
// (an empty one is deleted). It is a no-op on a finished Partial.
func (p *Partial) Close() error {
	if p.done {
		return nil
	}
	if p.n == 0 && p.err == nil {
		return p.Discard()
	}
	p.done = true
	defer p.s.release(p.d)
	return p.f.Close()
}

// Discard deletes the download and lets it go.
func (p *Partial) Discard() error {
	if p.done {
		return nil
	}
	p.done = true
	defer p.s.release(p.d)
	p.f.Close()
	if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard the download of %s: %w", p.d.Short(), err)
	}
	return nil
}

var _ io.Writer = (*Partial)(nil)
