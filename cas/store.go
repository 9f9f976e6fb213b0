package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// Errors the store returns, wrapped with the digest they concern.
var (
	// ErrNotFound: the store does not hold the object.
	ErrNotFound = errors.New("not in the content store")
	// ErrDigestMismatch: the bytes do not hash to the digest they were
	// offered under. They were not stored.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrTooLarge: the object is larger than the caller's limit.
	ErrTooLarge = errors.New("object too large")
	// ErrBusy: another download of the same digest is in progress in this
	// process.
	ErrBusy = errors.New("a download of it is already in progress")
)

// Store layout under <dir>/cas, and housekeeping.
const (
	tmpDirName     = "tmp"     // Put's temp files, before they are renamed into place
	partialDirName = "partial" // downloads in progress, kept across restarts
	// staleTempAge is how long a temp file must have gone unwritten before
	// Open deletes it. A temp file is written continuously while its Put
	// runs, so an hour of silence means its writer is gone; a younger one
	// may belong to another process putting into the same directory.
	staleTempAge = time.Hour
	// copyBufferBytes is the buffer objects are streamed through.
	copyBufferBytes = 256 << 10
)

// Store is a directory of objects named by their SHA-256. It is safe for
// concurrent use, also by several processes, except that only one process
// may run downloads (Partial) into it.
type Store struct {
	root string // <dir>/cas

	mu   sync.Mutex
	busy map[oplog.Digest]chan struct{} // partials open; closed when let go
}

// Open opens the store in dir (the node's data directory), creating
// <dir>/cas if need be, and deletes temp files left by puts that died.
// Partial downloads are kept: they resume.
func Open(dir string) (*Store, error) {
	s := &Store{root: filepath.Join(dir, "cas"), busy: make(map[oplog.Digest]chan struct{})}
	for _, d := range []string{s.root, s.tmpDir(), s.partialDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create the content store: %w", err)
		}
	}
	if err := s.sweepTemps(time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) tmpDir() string     { return filepath.Join(s.root, tmpDirName) }
func (s *Store) partialDir() string { return filepath.Join(s.root, partialDirName) }

// path is where d lives once stored.
func (s *Store) path(d oplog.Digest) string {
	h := d.String()
	return filepath.Join(s.root, h[:2], h)
}

// sweepTemps deletes temp files older than staleTempAge.
func (s *Store) sweepTemps(now time.Time) error {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("read the content store: %w", err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < staleTempAge {
			continue
		}
		if err := os.Remove(filepath.Join(s.tmpDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clean the content store: %w", err)
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferBytes); return &b }}

// copyBuf copies src to dst through a pooled buffer. It hides src's
// WriterTo and dst's ReaderFrom, so that every object streams through the
// same bounded buffer whatever the reader is.
func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
}

// Put stores what r yields and returns its digest and size. It streams r to
// a temp file while hashing it and renames the file into place only once it
// is durable, so no reader ever sees part of an object. Putting an object
// the store already holds changes nothing.
func (s *Store) Put(r io.Reader) (oplog.Digest, int64, error) {
	return s.put(r, nil)
}

// PutExpect is Put for content that must hash to want; if it does not,
// nothing is stored and the error wraps ErrDigestMismatch.
func (s *Store) PutExpect(r io.Reader, want oplog.Digest) (int64, error) {
	_, n, err := s.put(r, &want)
	return n, err
}

func (s *Store) put(r io.Reader, want *oplog.Digest) (d oplog.Digest, n int64, err error) {
	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return d, 0, fmt.Errorf("store: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err = copyBuf(io.MultiWriter(f, h), r)
	if err != nil {
		return d, n, fmt.Errorf("store: %w", err)
	}
	h.Sum(d[:0])
	if want != nil && d != *want {
		return d, n, fmt.Errorf("store %s: %w (got %s)", want.Short(), ErrDigestMismatch, d.Short())
	}
	if s.Has(d) {
		return d, n, nil
	}
	if err := f.Sync(); err != nil {
		return d, n, fmt.Errorf("store %s: %w", d.Short(), err)
	}
	if err := f.Close(); err != nil {
		return d, n, fmt.Errorf("store %s: %w", d.Short(), err)
	}
	placed = true
	if err := s.place(f.Name(), d); err != nil {
		os.Remove(f.Name())
		return d, n, err
	}
	return d, n, nil
}

// place renames a complete, synced file into place as d and makes the
// rename durable. Renaming over an existing copy is harmless: both hold
// the same bytes, and readers of the old one keep it until they close it.
func (s *Store) place(from string, d oplog.Digest) error {
	to := s.path(d)
	dir := filepath.Dir(to)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store %s: %w", d.Short(), err)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("store %s: %w", d.Short(), err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("store %s: %w", d.Short(), err)
	}
	return nil
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Has reports whether the store holds d.
func (s *Store) Has(d oplog.Digest) bool {
	info, err := os.Stat(s.path(d))
	return err == nil && info.Mode().IsRegular()
}

// Open opens the object d for reading and returns its size. The caller
// closes the file. The error wraps ErrNotFound if the store lacks d.
func (s *Store) Open(d oplog.Digest) (*os.File, int64, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", d.Short(), err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open %s: %w", d.Short(), err)
	}
	return f, info.Size(), nil
}

// ReadAll returns the whole of a small object (a WASM artifact), checked
// against its digest. It refuses objects over max bytes with ErrTooLarge.
// A stored copy that no longer matches its digest (a bad disk, a hand
// edit) is deleted, so that the node fetches it again, and the error wraps
// ErrDigestMismatch.
func (s *Store) ReadAll(d oplog.Digest, max int64) ([]byte, error) {
	f, size, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d: %w", d.Short(), size, max, ErrTooLarge)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Short(), err)
	}
	if sha256.Sum256(b) != d {
		os.Remove(s.path(d))
		return nil, fmt.Errorf("stored copy of %s: %w; it has been deleted and will be fetched again", d.Short(), ErrDigestMismatch)
	}
	return b, nil
}

// List returns the digests of every stored object, in order.
func (s *Store) List() ([]oplog.Digest, error) {
	shards, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list the content store: %w", err)
	}
	var out []oplog.Digest
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(s.root, sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("list the content store: %w", err)
		}
		for _, e := range ents {
			d, ok := parseName(e.Name())
			if ok && e.Type().IsRegular() && e.Name()[:2] == sh.Name() {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// parseName reads a file name that is a digest in lower-case hex.
func parseName(name string) (oplog.Digest, bool) {
	var d oplog.Digest
	if len(name) != 2*len(d) {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(name)); err != nil || d.String() != name {
		return d, false
	}
	return d, true
}

// Remove deletes the object d. The error wraps ErrNotFound if the store
// did not hold it. Readers that have it open keep reading it.
func (s *Store) Remove(d oplog.Digest) error {
	err := os.Remove(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", d.Short(), err)
	}
	return nil
}
