package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// Errors returned by the store; callers test them with errors.Is. Every error
// also names the file.
var (
	// ErrLocked: another process (or another Store in this one) has the file open.
	ErrLocked = errors.New("pln store is locked")
	// ErrCorrupt: the file is a pln store but something in it is damaged.
	ErrCorrupt = errors.New("pln store is damaged")
	// ErrForeign: the file is not a pln store this build can use (another
	// program's file, or a store written by a newer pln). It is left untouched.
	ErrForeign = errors.New("unusable store file")
	// ErrNotFound: Get was asked for an op the store does not hold.
	ErrNotFound = errors.New("op not found")
)

// DefaultLockTimeout is how long Open waits for another holder of the file.
const DefaultLockTimeout = 200 * time.Millisecond

// Options tune Open. Start from DefaultOptions.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file before failing with ErrLocked. Zero means DefaultLockTimeout; Open
	// never waits forever.
	LockTimeout time.Duration
	// ReadOnly opens an existing store for reading only; it shares the file
	// with other readers but not with a writer. Default false.
	ReadOnly bool
	// NoSync skips fsync on commit, so acknowledged ops can be lost on a crash.
	// For tests and benchmarks only. Default false.
	NoSync bool
}

// DefaultOptions returns the options a node runs with.
func DefaultOptions() Options {
	return Options{LockTimeout: DefaultLockTimeout}
}

// Store is a node's op log on disk. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string

	// Group commit (append.go): Appends that arrive while a commit is in
	// flight queue here and go out together in the next transaction.
	mu         sync.Mutex
	queue      []*appendReq
	committing bool

	// The sync set in memory (syncindex.go). syncMu is held across each write
	// transaction that changes the sync set and the index update after it, so
	// the index applies changes in the order the file committed them.
	syncMu  sync.Mutex
	syncIdx *SyncIndex
}

// Bucket names. They are part of the file format.
var (
	bucketArrival    = []byte("arrival")
	bucketOrder      = []byte("order")
	bucketIDs        = []byte("ids")
	bucketSuperseded = []byte("superseded")
	bucketMeta       = []byte("meta")
)

// Bookkeeping keys in the meta bucket. Callers' keys may not use this prefix.
const (
	reservedPrefix  = "store."
	keyFormat       = reservedPrefix + "format"     // formatName
	keyVersion      = reservedPrefix + "version"    // 8-byte big-endian formatVersion
	keyOps          = reservedPrefix + "ops"        // 8-byte count of stored ops
	keySupersededN  = reservedPrefix + "superseded" // 8-byte count of superseded stored ops
	formatName      = "pln-store"
	formatVersion   = 1
	arrivalFill     = 1.0 // arrival keys only ever grow, so pack its pages full
	seqLen          = 8
	hlcLen          = 8
	orderKeyIDStart = oplog.OrderKeyLen - len(oplog.ID{})
)

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Close releases the file. It waits for running transactions to finish.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Meta returns a setting stored with SetMeta; ok is false if there is none.
func (s *Store) Meta(key string) (val []byte, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(key)); v != nil {
			val, ok = bytes.Clone(v), true
		}
		return nil
	})
	return val, ok, err
}

// SetMeta stores a small setting durably. Keys starting with "store." belong to
// the store itself and are refused.
func (s *Store) SetMeta(key string, val []byte) error {
	if key == "" || strings.HasPrefix(key, reservedPrefix) {
		return fmt.Errorf("store %s: meta key %q is empty or reserved (keys starting with %q belong to the store)", s.path, key, reservedPrefix)
	}
	if val == nil {
		val = []byte{}
	}
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), val)
	})
}

// Has reports whether the op is stored.
func (s *Store) Has(id oplog.ID) (bool, error) {
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketIDs).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// Get returns a stored op and its arrival sequence, or an error wrapping
// ErrNotFound.
func (s *Store) Get(id oplog.ID) (*oplog.Op, uint64, error) {
	var (
		op  *oplog.Op
		seq uint64
	)
	err := s.view(func(tx *bolt.Tx) error {
		sv := tx.Bucket(bucketIDs).Get(id[:])
		if sv == nil {
			return fmt.Errorf("%w: %s in %s", ErrNotFound, id.Short(), s.path)
		}
		var err error
		if seq, err = s.seq(sv, "ids"); err != nil {
			return err
		}
		raw := tx.Bucket(bucketArrival).Get(sv)
		if raw == nil {
			return s.corrupt("op %s: index names seq %d, which is missing", id.Short(), seq)
		}
		if op, err = s.decode(seq, raw); err != nil {
			return err
		}
		if op.ID() != id {
			return s.corrupt("seq %d holds op %s, but the index says %s", seq, op.ID().Short(), id.Short())
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return op, seq, nil
}

// Count returns how many ops are stored, superseded ones included.
func (s *Store) Count() (int, error) {
	var n uint64
	err := s.view(func(tx *bolt.Tx) (err error) {
		n, err = s.counter(tx, keyOps)
		return err
	})
	return int(n), err
}

// SyncCount returns how many stored ops are in the sync set: not superseded.
func (s *Store) SyncCount() (int, error) {
	var ops, sup uint64
	err := s.view(func(tx *bolt.Tx) (err error) {
		if ops, err = s.counter(tx, keyOps); err != nil {
			return err
		}
		sup, err = s.counter(tx, keySupersededN)
		return err
	})
	if err == nil && sup > ops {
		err = s.corrupt("%d ops superseded but only %d stored", sup, ops)
	}
	if err != nil {
		return 0, err
	}
	return int(ops - sup), nil
}

// LastSeq returns the highest arrival sequence ever assigned (0 if none). It
// does not go down when compaction deletes the op that had it.
func (s *Store) LastSeq() (uint64, error) {
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketArrival).Sequence()
		return nil
	})
	return n, err
}

// update runs a write transaction, turning a bbolt panic (a damaged page) into
// ErrCorrupt; bbolt has rolled the transaction back by then.
func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.corrupt("write failed: %v", r)
		}
	}()
	return s.wrap(s.db.Update(fn))
}

// view is update's read-only twin.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.corrupt("read failed: %v", r)
		}
	}()
	return s.wrap(s.db.View(fn))
}

// decode reads an op back from the file. Our own bytes should always decode;
// when they do not, the file is damaged and the caller hears where.
func (s *Store) decode(seq uint64, raw []byte) (*oplog.Op, error) {
	op, err := oplog.Decode(raw)
	if err != nil {
		return nil, s.corrupt("op at seq %d does not decode: %v", seq, err)
	}
	return op, nil
}

// seq reads an 8-byte sequence value from the named bucket.
func (s *Store) seq(v []byte, bucket string) (uint64, error) {
	if len(v) != seqLen {
		return 0, s.corrupt("%s bucket holds a %d-byte sequence, want %d", bucket, len(v), seqLen)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (s *Store) counter(tx *bolt.Tx, key string) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get([]byte(key))
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, s.corrupt("meta %s is %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// addCounter adds delta (which may be negative) to a bookkeeping counter.
func (s *Store) addCounter(tx *bolt.Tx, key string, delta int64) error {
	if delta == 0 {
		return nil
	}
	n, err := s.counter(tx, key)
	if err != nil {
		return err
	}
	if delta < 0 && uint64(-delta) > n {
		return s.corrupt("meta %s would go below zero (%d%+d)", key, n, delta)
	}
	return tx.Bucket(bucketMeta).Put([]byte(key), be64(uint64(int64(n)+delta)))
}

// corrupt builds an ErrCorrupt error naming the file.
func (s *Store) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, s.path, fmt.Sprintf(format, args...))
}

// wrap names the file on errors that do not already come from this package.
func (s *Store) wrap(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrForeign) || errors.Is(err, ErrLocked) {
		return err
	}
	return fmt.Errorf("store %s: %w", s.path, err)
}

func be64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}
