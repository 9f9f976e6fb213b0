package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// fileMode is the mode of a new store: it holds the node's settings.
const fileMode = 0o600

// Open opens the store at path, creating it if it does not exist (unless
// opts.ReadOnly). A file that is not a pln store, or is one from a newer
// build, is refused with an error wrapping ErrForeign or ErrCorrupt and is
// never written to. If another process holds the file for longer than
// opts.LockTimeout, the error wraps ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !opts.ReadOnly:
		if err := create(path, opts); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s read-only: %w (has a node ever run here? start one with 'pln up')", path, err)
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrForeign, path)
	case info.Size() == 0:
		// We never leave an empty file behind (create links a finished store
		// into place), so an empty file is someone else's.
		return nil, fmt.Errorf("%w: %s is an empty file (pln left it untouched; remove it to start a new store)", ErrForeign, path)
	}

	// Look before touching: a read-only bbolt open never writes, so a file that
	// turns out not to be ours stays exactly as it was.
	ro, err := openBolt(path, opts, true)
	if err != nil {
		return nil, err
	}
	s := &Store{db: ro, path: path}
	if err := s.check(); err != nil {
		ro.Close()
		return nil, err
	}
	if opts.ReadOnly {
		if err := s.loadSyncIndex(); err != nil {
			ro.Close()
			return nil, err
		}
		return s, nil
	}
	if err := ro.Close(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	rw, err := openBolt(path, opts, false)
	if err != nil {
		return nil, err
	}
	s = &Store{db: rw, path: path}
	if err := s.check(); err != nil { // the file may have changed in between
		rw.Close()
		return nil, err
	}
	if err := s.loadSyncIndex(); err != nil {
		rw.Close()
		return nil, err
	}
	return s, nil
}

func openBolt(path string, opts Options, readOnly bool) (db *bolt.DB, err error) {
	// bbolt can panic on a badly damaged file; report it as damage.
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	db, err = bolt.Open(path, fileMode, &bolt.Options{
		Timeout:      opts.LockTimeout + boltLockSlack,
		ReadOnly:     readOnly,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is in use by another process (is 'pln up' running?)", ErrLocked, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		if looksLikeBolt(path) {
			return nil, fmt.Errorf("%w: %s: the database header is unreadable (%v); pln left it untouched", ErrCorrupt, path, err)
		}
		return nil, fmt.Errorf("%w: %s is not a bbolt database; pln left it untouched (wrong file or data directory?)", ErrForeign, path)
	default:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
}

// boltLockSlack makes up for bbolt giving up one 50ms retry before its
// timeout, so Open waits about LockTimeout.
const boltLockSlack = 50 * time.Millisecond

// boltMagic marks a bbolt meta page; it follows the 16-byte page header.
const (
	boltMagic       = 0xED0CDAED
	boltMagicOffset = 16
)

// looksLikeBolt reports whether the file's first page carries the bbolt magic,
// to tell a damaged store from another program's file.
func looksLikeBolt(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], boltMagicOffset); err != nil && err != io.EOF {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) == boltMagic || binary.BigEndian.Uint32(b[:]) == boltMagic
}

// check confirms the open file is a pln store this build reads.
func (s *Store) check() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.corrupt("reading the store header: %v", r)
		}
	}()
	return s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: %s is a bbolt database but not a pln store (no %q bucket); pln left it untouched", ErrForeign, s.path, bucketMeta)
		}
		if f := meta.Get([]byte(keyFormat)); string(f) != formatName {
			return fmt.Errorf("%w: %s is a bbolt database but not a pln store (format %q, want %q); pln left it untouched", ErrForeign, s.path, f, formatName)
		}
		v := meta.Get([]byte(keyVersion))
		if len(v) != 8 {
			return s.corrupt("store version is %d bytes, want 8", len(v))
		}
		switch ver := binary.BigEndian.Uint64(v); {
		case ver > formatVersion:
			return fmt.Errorf("%w: %s has store format version %d, newer than this build reads (%d); upgrade pln", ErrForeign, s.path, ver, formatVersion)
		case ver == 0:
			return s.corrupt("store format version is 0")
		}
		for _, name := range [][]byte{bucketArrival, bucketOrder, bucketIDs, bucketSuperseded} {
			if tx.Bucket(name) == nil {
				return s.corrupt("bucket %q is missing", name)
			}
		}
		return nil
	})
}

// create builds an empty store under a temporary name and links it to path
// only once it is complete and synced, so path never names a half-made store.
// If another process creates path first, its store wins and ours is dropped.
func create(path string, opts Options) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("create store %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)

	db, err := bolt.Open(tmp, fileMode, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("create store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketArrival, bucketOrder, bucketIDs, bucketSuperseded, bucketMeta} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put([]byte(keyFormat), []byte(formatName)); err != nil {
			return err
		}
		return meta.Put([]byte(keyVersion), be64(formatVersion))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create store %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create store %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
