package store

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// The sync index is the sync set (stored ops that are not superseded) held in
// memory in the order anti-entropy reconciles it, (HLC, ID), with what range-
// based set reconciliation asks of it cheap at a million ops: the rank of a
// bound, the item at a rank, and the sum of the IDs between two ranks.
//
// It is a sorted list of chunks of at most syncChunkMax items, each chunk
// caching the sum of its IDs. A range sum adds the cached sums of the chunks
// inside the range and at most half of each of the two chunks at its ends, so
// it costs O(n/syncChunkMax + syncChunkMax); an insert or removal copies
// within one chunk and shifts one int per later chunk. Ops mostly arrive with
// new HLCs, so most inserts land in the last chunk.
//
// Chunks are copy-on-write between an index and its snapshots: Snapshot copies
// only the chunk list, and whichever side next writes to a shared chunk copies
// that chunk first. A reconciliation runs over a snapshot, so the set holds
// still for the whole exchange while the store keeps appending.

const (
	// syncChunkMax is the most items a chunk holds (40 bytes each: 20 KiB).
	// It bounds the partial-chunk work of a range sum and the copy of an insert.
	syncChunkMax = 512
	// syncChunkMin is the size below which a chunk left by removals merges
	// with a neighbour that has room, so chunks stay few.
	syncChunkMin = syncChunkMax / 4
)

// SyncItem is one op of the sync set as reconciliation sees it. Items order
// by HLC, then by ID bytes.
type SyncItem struct {
	HLC oplog.HLC
	ID  oplog.ID
}

// Compare orders items by HLC, then by ID bytes.
func (a SyncItem) Compare(b SyncItem) int {
	switch {
	case a.HLC < b.HLC:
		return -1
	case a.HLC > b.HLC:
		return 1
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

func compareSyncItems(a, b SyncItem) int { return a.Compare(b) }

// SyncIndex is an ordered, in-memory set of SyncItems with cheap range sums.
// It is safe for concurrent use. The Store keeps one in step with its sync set
// (Store.SyncIndex); a reconciliation should run over a Snapshot of it.
//
// The sum of a range is the sum of its items' IDs, each read as a 256-bit
// little-endian integer, modulo 2^256, written back little-endian. Addition
// rather than XOR: a range cannot be made to look like another by choosing a
// few IDs that cancel out.
type SyncIndex struct {
	mu     sync.RWMutex
	chunks []*syncChunk // sorted; none empty
	starts []int        // starts[c] is the rank of chunks[c].items[0]
	n      int
	gen    uint64 // chunks with this owner are ours alone to modify in place
}

type syncChunk struct {
	items []SyncItem
	sum   sum256
	owner uint64
}

// syncGen hands out generations: each index, and each index after it takes a
// snapshot, gets a fresh one, so no two indexes ever write to the same chunk.
var syncGen atomic.Uint64

// NewSyncIndex returns an empty index.
func NewSyncIndex() *SyncIndex { return &SyncIndex{gen: syncGen.Add(1)} }

// newSyncIndexSorted builds an index from items sorted by Compare, dropping
// repeats. It owns items afterwards.
func newSyncIndexSorted(items []SyncItem) *SyncIndex {
	items = slices.CompactFunc(items, func(a, b SyncItem) bool { return a.ID == b.ID && a.HLC == b.HLC })
	x := NewSyncIndex()
	for i := 0; i < len(items); i += syncChunkMax {
		part := items[i:min(i+syncChunkMax, len(items))]
		x.chunks = append(x.chunks, x.newChunk(slices.Clone(part)))
		x.starts = append(x.starts, i)
	}
	x.n = len(items)
	return x
}

// Snapshot returns an index holding the same items that later changes to
// either index do not affect. It costs a copy of the chunk list (about 16
// bytes per 512 items), not of the items.
func (x *SyncIndex) Snapshot() *SyncIndex {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen = syncGen.Add(1) // every chunk is shared now: the next write copies it
	return &SyncIndex{
		chunks: slices.Clone(x.chunks),
		starts: slices.Clone(x.starts),
		n:      x.n,
		gen:    syncGen.Add(1),
	}
}

// Len returns the number of items.
func (x *SyncIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Add inserts it and reports whether it was new.
func (x *SyncIndex) Add(it SyncItem) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.chunks) == 0 {
		x.chunks = []*syncChunk{x.newChunk([]SyncItem{it})}
		x.starts = []int{0}
		x.n = 1
		return true
	}
	c := x.chunkFor(it)
	ch := x.chunks[c]
	i, found := slices.BinarySearchFunc(ch.items, it, compareSyncItems)
	if found {
		return false
	}
	if last := len(x.chunks) - 1; c == last && i == len(ch.items) && len(ch.items) >= syncChunkMax {
		// A log grows at its end: start a new chunk rather than split a full
		// one in half, so chunks of an append-only log stay full.
		x.chunks = append(x.chunks, x.newChunk([]SyncItem{it}))
		x.starts = append(x.starts, x.n)
		x.n++
		return true
	}
	ch = x.writable(c)
	ch.items = slices.Insert(ch.items, i, it)
	ch.sum.add(&it.ID)
	x.shift(c+1, 1)
	x.n++
	if len(ch.items) > syncChunkMax {
		x.split(c)
	}
	return true
}

// Remove deletes it and reports whether it was there.
func (x *SyncIndex) Remove(it SyncItem) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.chunks) == 0 {
		return false
	}
	c := x.chunkFor(it)
	i, found := slices.BinarySearchFunc(x.chunks[c].items, it, compareSyncItems)
	if !found {
		return false
	}
	ch := x.writable(c)
	ch.items = slices.Delete(ch.items, i, i+1)
	ch.sum.sub(&it.ID)
	x.shift(c+1, -1)
	x.n--
	switch {
	case len(ch.items) == 0:
		x.chunks = slices.Delete(x.chunks, c, c+1)
		x.starts = slices.Delete(x.starts, c, c+1)
	case len(ch.items) < syncChunkMin:
		if c+1 < len(x.chunks) && len(ch.items)+len(x.chunks[c+1].items) <= syncChunkMax {
			x.merge(c)
		} else if c > 0 && len(ch.items)+len(x.chunks[c-1].items) <= syncChunkMax {
			x.merge(c - 1)
		}
	}
	return true
}

// Has reports whether it is in the index.
func (x *SyncIndex) Has(it SyncItem) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.chunks) == 0 {
		return false
	}
	_, found := slices.BinarySearchFunc(x.chunks[x.chunkFor(it)].items, it, compareSyncItems)
	return found
}

// Rank returns how many items order before (hlc, id). A bound that is an ID
// prefix is passed zero-padded: Rank then counts the items before every ID
// with that prefix.
func (x *SyncIndex) Rank(hlc oplog.HLC, id oplog.ID) int {
	it := SyncItem{hlc, id}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.chunks) == 0 {
		return 0
	}
	c := x.chunkFor(it)
	i, _ := slices.BinarySearchFunc(x.chunks[c].items, it, compareSyncItems)
	return x.starts[c] + i
}

// At returns the item of rank i. A rank outside [0, Len()) is clamped into
// it, because the index may have changed since the caller read Len; an empty
// index returns the zero item.
func (x *SyncIndex) At(i int) (oplog.HLC, oplog.ID) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.n == 0 {
		return 0, oplog.ID{}
	}
	i = min(max(i, 0), x.n-1)
	c := x.chunkAt(i)
	it := x.chunks[c].items[i-x.starts[c]]
	return it.HLC, it.ID
}

// Sum returns the sum of the IDs of the items of rank i to j-1 (see
// SyncIndex). Ranks are clamped into [0, Len()], as for At; if j <= i the
// sum is zero.
func (x *SyncIndex) Sum(i, j int) [32]byte {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, j = min(max(i, 0), x.n), min(max(j, 0), x.n)
	var s sum256
	if i >= j {
		return s.bytes()
	}
	ci, cj := x.chunkAt(i), x.chunkAt(j-1)
	if ci == cj {
		x.chunks[ci].addPart(&s, i-x.starts[ci], j-x.starts[ci])
		return s.bytes()
	}
	first := x.chunks[ci]
	first.addPart(&s, i-x.starts[ci], len(first.items))
	for _, ch := range x.chunks[ci+1 : cj] {
		s.plus(&ch.sum)
	}
	x.chunks[cj].addPart(&s, 0, j-x.starts[cj])
	return s.bytes()
}

// chunkFor returns the chunk that holds it or would: the first whose last
// item is not before it, or the last chunk. There must be a chunk.
func (x *SyncIndex) chunkFor(it SyncItem) int {
	c := sort.Search(len(x.chunks), func(c int) bool {
		items := x.chunks[c].items
		return items[len(items)-1].Compare(it) >= 0
	})
	return min(c, len(x.chunks)-1)
}

// chunkAt returns the chunk holding rank i, 0 <= i < n.
func (x *SyncIndex) chunkAt(i int) int {
	return sort.Search(len(x.starts), func(c int) bool { return x.starts[c] > i }) - 1
}

func (x *SyncIndex) newChunk(items []SyncItem) *syncChunk {
	ch := &syncChunk{items: items, owner: x.gen}
	for k := range items {
		ch.sum.add(&items[k].ID)
	}
	return ch
}

// writable returns chunk c, first replacing it with a private copy if a
// snapshot shares it.
func (x *SyncIndex) writable(c int) *syncChunk {
	ch := x.chunks[c]
	if ch.owner == x.gen {
		return ch
	}
	items := make([]SyncItem, len(ch.items), syncChunkMax+1)
	copy(items, ch.items)
	ch = &syncChunk{items: items, sum: ch.sum, owner: x.gen}
	x.chunks[c] = ch
	return ch
}

// shift adds delta to the start of every chunk from c on.
func (x *SyncIndex) shift(c, delta int) {
	for k := c; k < len(x.starts); k++ {
		x.starts[k] += delta
	}
}

// split cuts an overfull chunk c in two halves.
func (x *SyncIndex) split(c int) {
	ch := x.chunks[c] // writable: split follows an insert
	h := len(ch.items) / 2
	right := x.newChunk(slices.Clone(ch.items[h:]))
	clear(ch.items[h:])
	ch.items = ch.items[:h]
	ch.sum.minus(&right.sum)
	x.chunks = slices.Insert(x.chunks, c+1, right)
	x.starts = slices.Insert(x.starts, c+1, x.starts[c]+h)
}

// merge moves chunk c+1's items into chunk c.
func (x *SyncIndex) merge(c int) {
	ch := x.writable(c)
	next := x.chunks[c+1]
	ch.items = append(ch.items, next.items...)
	ch.sum.plus(&next.sum)
	x.chunks = slices.Delete(x.chunks, c+1, c+2)
	x.starts = slices.Delete(x.starts, c+1, c+2)
}

// addPart adds the IDs of items[a:b] to s, from whichever side touches fewer
// items: directly, or as the chunk's sum less the items outside.
func (ch *syncChunk) addPart(s *sum256, a, b int) {
	if b-a <= len(ch.items)/2 {
		for k := a; k < b; k++ {
			s.add(&ch.items[k].ID)
		}
		return
	}
	s.plus(&ch.sum)
	for k := 0; k < a; k++ {
		s.sub(&ch.items[k].ID)
	}
	for k := b; k < len(ch.items); k++ {
		s.sub(&ch.items[k].ID)
	}
}

// sum256 is a 256-bit integer as four little-endian 64-bit limbs; all its
// arithmetic is modulo 2^256.
type sum256 [4]uint64

func limbs(id *oplog.ID) sum256 {
	return sum256{
		binary.LittleEndian.Uint64(id[0:]),
		binary.LittleEndian.Uint64(id[8:]),
		binary.LittleEndian.Uint64(id[16:]),
		binary.LittleEndian.Uint64(id[24:]),
	}
}

func (s *sum256) add(id *oplog.ID) { v := limbs(id); s.plus(&v) }
func (s *sum256) sub(id *oplog.ID) { v := limbs(id); s.minus(&v) }

func (s *sum256) plus(v *sum256) {
	var c uint64
	s[0], c = bits.Add64(s[0], v[0], 0)
	s[1], c = bits.Add64(s[1], v[1], c)
	s[2], c = bits.Add64(s[2], v[2], c)
	s[3], _ = bits.Add64(s[3], v[3], c)
}

func (s *sum256) minus(v *sum256) {
	var b uint64
	s[0], b = bits.Sub64(s[0], v[0], 0)
	s[1], b = bits.Sub64(s[1], v[1], b)
	s[2], b = bits.Sub64(s[2], v[2], b)
	s[3], _ = bits.Sub64(s[3], v[3], b)
}

func (s *sum256) bytes() (b [32]byte) {
	for k, l := range s {
		binary.LittleEndian.PutUint64(b[8*k:], l)
	}
	return b
}

// SyncIndex returns the index of the store's sync set. The store keeps it in
// step: Append adds new ops, MarkSuperseded removes ops as they leave the
// sync set. Take a Snapshot of it for each reconciliation.
func (s *Store) SyncIndex() *SyncIndex { return s.syncIdx }

// loadSyncIndex builds the sync index from the file: every op in the order
// bucket that the superseded bucket does not name. It reads keys only; no op
// is decoded.
func (s *Store) loadSyncIndex() error {
	var items []SyncItem
	err := s.view(func(tx *bolt.Tx) error {
		n, err := s.counter(tx, keyOps)
		if err != nil {
			return err
		}
		items = make([]SyncItem, 0, min(n, 1<<24))
		sup := tx.Bucket(bucketSuperseded)
		c := tx.Bucket(bucketOrder).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != oplog.OrderKeyLen {
				return s.corrupt("order bucket holds a %d-byte key, want %d", len(k), oplog.OrderKeyLen)
			}
			if sup.Get(k[orderKeyIDStart:]) != nil {
				continue
			}
			items = append(items, SyncItem{
				HLC: oplog.HLC(binary.BigEndian.Uint64(k[:hlcLen])),
				ID:  oplog.ID(k[orderKeyIDStart:]),
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The order bucket sorts by author before ID within one HLC: nearly sorted.
	slices.SortFunc(items, compareSyncItems)
	s.syncIdx = newSyncIndexSorted(items)
	return nil
}
