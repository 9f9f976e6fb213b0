package netx

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// sliceSet is a SyncSet over a sorted slice with prefix sums: Sum is O(1).
// It is the reference the tests and benchmarks reconcile; the store's
// SyncIndex answers the same four questions from chunks.
type sliceSet struct {
	items []item
	sums  [][4]uint64 // sums[k] is the sum of items[:k]
}

func newSliceSet(items []item) *sliceSet {
	items = slices.Clone(items)
	slices.SortFunc(items, compareItems)
	items = slices.Compact(items)
	s := &sliceSet{items: items, sums: make([][4]uint64, len(items)+1)}
	for k, it := range items {
		s.sums[k+1] = add256(s.sums[k], limbsOf(it.id))
	}
	return s
}

func (s *sliceSet) Len() int { return len(s.items) }

func (s *sliceSet) Rank(hlc oplog.HLC, id oplog.ID) int {
	b := item{hlc, id}
	return sort.Search(len(s.items), func(k int) bool { return compareItems(s.items[k], b) >= 0 })
}

func (s *sliceSet) At(i int) (oplog.HLC, oplog.ID) {
	it := s.items[i]
	return it.hlc, it.id
}

func (s *sliceSet) Sum(i, j int) [32]byte {
	d := sub256(s.sums[j], s.sums[i])
	var out [32]byte
	for k, l := range d {
		binary.LittleEndian.PutUint64(out[8*k:], l)
	}
	return out
}

func limbsOf(id oplog.ID) [4]uint64 {
	return [4]uint64{
		binary.LittleEndian.Uint64(id[0:]), binary.LittleEndian.Uint64(id[8:]),
		binary.LittleEndian.Uint64(id[16:]), binary.LittleEndian.Uint64(id[24:]),
	}
}

func add256(a, b [4]uint64) (s [4]uint64) {
	var c uint64
	for k := range a {
		s[k], c = bits.Add64(a[k], b[k], c)
	}
	return s
}

func sub256(a, b [4]uint64) (s [4]uint64) {
	var c uint64
	for k := range a {
		s[k], c = bits.Sub64(a[k], b[k], c)
	}
	return s
}

// genItems makes n items with HLCs that look like a busy log: a few tens of
// milliseconds apart, often within one millisecond (the counter), sometimes
// exactly equal (two nodes in the same tick) so that ID prefixes must break
// ties. tag keeps different calls' IDs apart.
func genItems(rng *rand.Rand, n int, tag uint64) []item {
	items := make([]item, n)
	wall, logical := int64(1_760_000_000_000), uint16(0)
	for k := range items {
		switch r := rng.IntN(100); {
		case r < 5: // same HLC as the previous op
		case r < 25:
			logical++
		default:
			wall += 1 + rng.Int64N(100)
			logical = 0
		}
		var seed [16]byte
		binary.LittleEndian.PutUint64(seed[:], tag)
		binary.LittleEndian.PutUint64(seed[8:], uint64(k))
		items[k] = item{oplog.NewHLC(wall, logical), sha256.Sum256(seed[:])}
	}
	return items
}

// exchange is one finished reconciliation between two sets.
type exchange struct {
	a, b       *Reconciler
	messages   int
	a2b, b2a   int // bytes
	largestMsg int
}

func (x exchange) roundTrips() int { return (x.messages + 1) / 2 }

// seededRand is a nonce source for tests: deterministic messages.
type seededRand struct{ rng *rand.Rand }

func (s seededRand) Read(b []byte) (int, error) {
	for k := range b {
		b[k] = byte(s.rng.Uint32())
	}
	return len(b), nil
}

func testConfig(seed uint64) ReconcileConfig {
	cfg := DefaultReconcileConfig()
	cfg.Rand = seededRand{rand.New(rand.NewPCG(seed, 99))}
	return cfg
}

// reconcile drives two Reconcilers to the end the way the sync stream does,
// checking the protocol's promises on the way: every message within the
// bound and well formed, done only when nothing more is owed, and an end
// within maxMessages.
func reconcile(t testing.TB, a, b SyncSet, cfg ReconcileConfig, maxMessages int) exchange {
	t.Helper()
	x := exchange{a: NewReconciler(a, cfg), b: NewReconciler(b, cfg)}
	msg, err := x.a.Initiate()
	if err != nil {
		t.Fatal(err)
	}
	from, to := x.a, x.b
	for {
		x.messages++
		if from == x.a {
			x.a2b += len(msg)
		} else {
			x.b2a += len(msg)
		}
		x.largestMsg = max(x.largestMsg, len(msg))
		if len(msg) > cfg.MaxMessageBytes {
			t.Fatalf("message %d is %d bytes, limit %d", x.messages, len(msg), cfg.MaxMessageBytes)
		}
		if x.messages > maxMessages {
			t.Fatalf("no end after %d messages", maxMessages)
		}
		out, done, err := to.Reconcile(msg)
		if err != nil {
			t.Fatalf("message %d: %v", x.messages, err)
		}
		if out == nil {
			if !done {
				t.Fatal("nothing to send, but not done")
			}
			if !from.done {
				t.Fatal("the receiver of a message that asks nothing is done, but its sender is not")
			}
			return x
		}
		if done {
			// The last message: it asks nothing, so its receiver says nothing.
			x.messages++
			if from == x.a {
				x.b2a += len(out)
			} else {
				x.a2b += len(out)
			}
			last, fin, err := from.Reconcile(out)
			if err != nil || last != nil || !fin {
				t.Fatalf("last message: reply %d bytes, done %v, err %v", len(last), fin, err)
			}
			return x
		}
		msg, from, to = out, to, from
	}
}

// minus returns the IDs of items in a but not b, in (HLC, ID) order.
func minus(a, b []item) []oplog.ID {
	in := map[item]bool{}
	for _, it := range b {
		in[it] = true
	}
	var ids []oplog.ID
	for _, it := range a {
		if !in[it] {
			ids = append(ids, it.id)
		}
	}
	return ids
}

func checkLearned(t *testing.T, x exchange, a, b *sliceSet) {
	t.Helper()
	aOnly, bOnly := minus(a.items, b.items), minus(b.items, a.items)
	for _, c := range []struct {
		name      string
		got, want []oplog.ID
	}{
		{"A.Have", x.a.Have(), aOnly},
		{"A.Need", x.a.Need(), bOnly},
		{"B.Have", x.b.Have(), bOnly},
		{"B.Need", x.b.Need(), aOnly},
	} {
		if len(c.got) != len(c.want) || (len(c.want) > 0 && !slices.Equal(c.got, c.want)) {
			t.Fatalf("%s: %d IDs, want %d", c.name, len(c.got), len(c.want))
		}
	}
}

// randomPair makes two overlapping sets: a shared part, and a part each.
func randomPair(rng *rand.Rand, size int) (a, b []item) {
	universe := genItems(rng, size, rng.Uint64())
	if rng.IntN(4) == 0 {
		// Squeeze the HLCs into a few values: ties everywhere.
		for k := range universe {
			universe[k].hlc = oplog.HLC(1_000_000 + rng.IntN(3))
		}
	}
	pA, pB := rng.Float64(), rng.Float64()
	for _, it := range universe {
		shared := rng.Float64() < 0.5
		if shared || rng.Float64() < pA {
			a = append(a, it)
		}
		if shared || rng.Float64() < pB {
			b = append(b, it)
		}
	}
	return a, b
}

// Both sides learn exactly the symmetric difference, for sets of every
// shape: empty, one side empty, identical, disjoint, tied HLCs, small and
// large differences; and with small messages, which forces the summaries.
func TestReconcileLearnsSymmetricDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type pair struct {
		name string
		a, b []item
	}
	var pairs []pair
	one := genItems(rng, 3000, 1)
	pairs = append(pairs,
		pair{"both empty", nil, nil},
		pair{"A empty", nil, genItems(rng, 5000, 2)},
		pair{"B empty", genItems(rng, 5000, 3), nil},
		pair{"identical", one, one},
		pair{"one item each", genItems(rng, 1, 4), genItems(rng, 1, 5)},
		pair{"disjoint", genItems(rng, 2000, 6), genItems(rng, 2500, 7)},
		pair{"A has one more", one, one[:len(one)-1]},
		pair{"B has one more in the middle", slices.Delete(slices.Clone(one), 1500, 1501), one},
	)
	for k := range 60 {
		a, b := randomPair(rng, rng.IntN(5001))
		pairs = append(pairs, pair{fmt.Sprintf("random %d", k), a, b})
	}
	configs := map[string]func(*ReconcileConfig){
		"default": func(*ReconcileConfig) {},
		"small messages": func(c *ReconcileConfig) {
			c.MaxMessageBytes = MinMessageBytes
			c.FirstFanout = 64
			c.ListThreshold = 4
		},
		"narrow": func(c *ReconcileConfig) {
			c.FirstFanout, c.MaxFanout, c.ListThreshold, c.TargetRoundTrips = 2, 2, 2, 1
		},
	}
	for cname, tweak := range configs {
		for k, p := range pairs {
			t.Run(cname+"/"+p.name, func(t *testing.T) {
				cfg := testConfig(uint64(k))
				tweak(&cfg)
				a, b := newSliceSet(p.a), newSliceSet(p.b)
				diff := len(minus(a.items, b.items)) + len(minus(b.items, a.items))
				x := reconcile(t, a, b, cfg, messageBound(cfg, max(a.Len(), b.Len()), diff))
				checkLearned(t, x, a, b)
				if slices.Equal(a.items, b.items) && x.messages != 2 {
					t.Fatalf("equal sets took %d messages, want 2 (one round trip)", x.messages)
				}
			})
		}
	}
}

// messageBound is the most messages an exchange may take: the rounds the
// splitting aims for, the depth of halving the larger set down to single
// items (the worst fanout), and four messages' worth for every difference
// listed and answered, as if each item cost the largest list entry twice.
func messageBound(cfg ReconcileConfig, n, diff int) int {
	c, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	return 2*(2*c.TargetRoundTrips+bits.Len(uint(n))+4) + 4*diff*2*maxItemBytes/c.MaxMessageBytes
}

// Two sets in sync: one round trip, well under 200 bytes, whatever the size.
func TestReconcileInSyncIsOneRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 8, 9, 1000, 100_000} {
		s := newSliceSet(genItems(rng, n, 11))
		x := reconcile(t, s, s, testConfig(1), 2)
		if x.messages != 2 || x.a2b+x.b2a >= 200 {
			t.Errorf("n=%d: %d messages, %d bytes; want 2 messages under 200 bytes", n, x.messages, x.a2b+x.b2a)
		}
		if len(x.a.Have())+len(x.a.Need())+len(x.b.Have())+len(x.b.Need()) != 0 {
			t.Errorf("n=%d: equal sets found differences", n)
		}
	}
}

// changingSet is a SyncSet that changes under the exchange, as the store's
// live index would if a caller forgot the snapshot: every few calls it gains
// or loses an item, up to changes times. No exchange can settle while the
// sets keep changing; once they stop, it must, and it must never fail or
// send a bad message on the way. What it learns may be off.
type changingSet struct {
	rng     *rand.Rand
	items   []item
	calls   int
	changes int
}

func (c *changingSet) churn() {
	c.calls++
	if c.calls%3 != 0 || c.changes == 0 {
		return
	}
	c.changes--
	if len(c.items) > 0 && c.rng.IntN(2) == 0 {
		k := c.rng.IntN(len(c.items))
		c.items = slices.Delete(c.items, k, k+1)
		return
	}
	it := genItems(c.rng, 1, c.rng.Uint64())[0]
	if len(c.items) > 0 {
		it.hlc = c.items[c.rng.IntN(len(c.items))].hlc
	}
	k, found := slices.BinarySearchFunc(c.items, it, compareItems)
	if !found {
		c.items = slices.Insert(c.items, k, it)
	}
}

func (c *changingSet) Len() int { c.churn(); return len(c.items) }

func (c *changingSet) Rank(hlc oplog.HLC, id oplog.ID) int {
	c.churn()
	k, _ := slices.BinarySearchFunc(c.items, item{hlc, id}, compareItems)
	return k
}

func (c *changingSet) At(i int) (oplog.HLC, oplog.ID) {
	c.churn()
	if len(c.items) == 0 {
		return 0, oplog.ID{}
	}
	it := c.items[min(max(i, 0), len(c.items)-1)]
	return it.hlc, it.id
}

func (c *changingSet) Sum(i, j int) [32]byte {
	c.churn()
	i, j = min(max(i, 0), len(c.items)), min(max(j, 0), len(c.items))
	var s [4]uint64
	for k := i; k < j; k++ {
		s = add256(s, limbsOf(c.items[k].id))
	}
	var out [32]byte
	for k, l := range s {
		binary.LittleEndian.PutUint64(out[8*k:], l)
	}
	return out
}

func TestReconcileSurvivesAChangingSet(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 12))
		a, b := randomPair(rng, 600)
		slices.SortFunc(a, compareItems)
		slices.SortFunc(b, compareItems)
		ca := &changingSet{rng: rand.New(rand.NewPCG(seed, 13)), items: slices.Compact(a), changes: 200}
		cb := &changingSet{rng: rand.New(rand.NewPCG(seed, 14)), items: slices.Compact(b), changes: 200}
		cfg := testConfig(seed)
		cfg.MaxMessageBytes = MinMessageBytes
		reconcile(t, ca, cb, cfg, 2000)
	}
}

// The exchange against a peer that sends garbage stops with an error that
// says the message was bad.
func TestReconcileRefusesMalformedMessages(t *testing.T) {
	var nonce [NonceBytes]byte
	first := append([]byte{msgFirst}, nonce[:]...)
	next := []byte{msgNext}
	id := bytes.Repeat([]byte{0xab}, 32)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tag := func(form byte, m mode) []byte { return []byte{form<<2 | byte(m)} }
	inf := func(m mode) []byte { return tag(formInfinity, m) }
	for _, c := range []struct {
		name      string
		msg       []byte
		responder bool
	}{
		{"empty", nil, true},
		{"unknown header", []byte{0x21}, true},
		{"first message cut short", first[:5], true},
		{"entry after +∞", cat(first, inf(modeSkip), inf(modeSkip)), true},
		{"fingerprint cut short", cat(first, inf(modeFingerprint), []byte{1, 2, 3}), true},
		{"bad varint", cat(first, tag(0, modeSkip), bytes.Repeat([]byte{0xff}, 11)), true},
		{"bound does not increase", cat(first, tag(0, modeSkip), []byte{5}, tag(0, modeSkip), []byte{0}), true},
		{"zero bound", cat(first, tag(0, modeSkip), []byte{0}), true},
		{"HLC overflow", cat(first, tag(0, modeSkip), binary.AppendUvarint(nil, 1<<63), tag(0, modeSkip), binary.AppendUvarint(nil, 1<<63)), true},
		{"shifted HLC overflow", cat(first, tag(61, modeSkip), []byte{9}), true},
		{"prefix of 0 bytes", cat(first, tag(formPrefix, modeSkip), []byte{1, 0}), true},
		{"prefix of 33 bytes", cat(first, tag(formPrefix, modeSkip), []byte{1, 33}, bytes.Repeat([]byte{1}, 33)), true},
		{"prefix ends in zero", cat(first, tag(formPrefix, modeSkip), []byte{1, 2, 7, 0}), true},
		{"list count past the message", cat(first, inf(modeIdList), binary.AppendUvarint(nil, 1<<60)), true},
		{"list item cut short", cat(first, inf(modeIdList), []byte{1, 5}, id[:10]), true},
		{"list items out of order", cat(first, inf(modeIdList), []byte{2, 5}, id, []byte{0}, id), true},
		{"list item past its range", cat(first, tag(0, modeIdList), []byte{4, 1, 9}, id), true},
		{"bitmap past the message", cat(first, inf(modeListReply), binary.AppendUvarint(nil, 1<<40)), true},
		{"bitmap with stray bits", cat(first, inf(modeListReply), []byte{3, 0xf0, 0}), true},
		{"later message first", next, true},
		{"first message twice", first, false},
		{"too large", cat(first, make([]byte, DefaultMaxMessageBytes)), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := newSliceSet(genItems(rand.New(rand.NewPCG(1, 1)), 100, 1))
			r := NewReconciler(set, testConfig(1))
			if !c.responder {
				if _, err := r.Initiate(); err != nil {
					t.Fatal(err)
				}
			}
			out, done, err := r.Reconcile(c.msg)
			if !errors.Is(err, ErrReconcileMalformed) && !errors.Is(err, ErrReconcileOutOfTurn) {
				t.Fatalf("err = %v, want a malformed or out-of-turn error", err)
			}
			if out != nil || !done {
				t.Fatalf("after an error: %d bytes out, done %v", len(out), done)
			}
			if _, _, err := r.Reconcile([]byte{msgNext}); err == nil {
				t.Fatal("a reconciler that failed takes more messages")
			}
		})
	}
}

// A message of n bytes costs a bounded amount of memory to refuse, however
// large the counts it claims: a few kilobytes here, where believing the count
// would take 2^62 items.
func TestReconcileDecodeAllocatesLittle(t *testing.T) {
	var nonce [NonceBytes]byte
	msg := append([]byte{msgFirst}, nonce[:]...)
	msg = append(msg, formInfinity<<2|byte(modeIdList))
	msg = binary.AppendUvarint(msg, 1<<62)
	msg = append(msg, make([]byte, 4000)...)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := decodeMessage(msg); err == nil {
			t.Fatal("decoded a list of 2^62 items")
		}
	}
	runtime.ReadMemStats(&after)
	// Other tests' goroutines may allocate meanwhile: the bound is loose.
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 64<<10 {
		t.Fatalf("%d bytes allocated refusing one message of %d bytes", per, len(msg))
	}
}

// Separators fall strictly after one item and at or before the next, and
// survive encoding.
func TestSeparatorAndBoundEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	items := genItems(rng, 5000, 1)
	slices.SortFunc(items, compareItems)
	prev := lowest
	var buf []byte
	var bounds []bound
	for k := 1; k < len(items); k++ {
		s := separator(items[k-1], items[k])
		if items[k-1].below(s) == false || items[k].below(s) {
			t.Fatalf("separator %+v is not between items %d and %d", s, k-1, k)
		}
		if s.compare(prev) <= 0 {
			continue
		}
		if n := len(buf); len(appendBound(buf, modeSkip, prev, s))-n != boundBytes(prev, s) {
			t.Fatal("boundBytes disagrees with appendBound")
		}
		buf = appendBound(buf, modeSkip, prev, s)
		bounds = append(bounds, s)
		prev = s
	}
	buf = appendBound(buf, modeSkip, prev, infinity)
	m, err := decodeMessage(append([]byte{msgNext}, buf...))
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range m.entries[:len(bounds)] {
		if e.upper != bounds[k] {
			t.Fatalf("bound %d: decoded %+v, wrote %+v", k, e.upper, bounds[k])
		}
	}
	if avg := float64(len(buf)) / float64(len(bounds)); avg > 3 {
		t.Errorf("bounds between neighbours average %.1f bytes, want at most 3", avg)
	}
}

func TestReconcileConfigChecks(t *testing.T) {
	for _, tweak := range []func(*ReconcileConfig){
		func(c *ReconcileConfig) { c.MaxMessageBytes = 100 },
		func(c *ReconcileConfig) { c.FirstFanout = 1000 },
		func(c *ReconcileConfig) { c.MaxFanout = 1 },
		func(c *ReconcileConfig) { c.ListThreshold = 1 },
		func(c *ReconcileConfig) { c.ListThreshold = 1000 },
		func(c *ReconcileConfig) { c.TargetRoundTrips = -1 },
	} {
		cfg := DefaultReconcileConfig()
		tweak(&cfg)
		r := NewReconciler(newSliceSet(nil), cfg)
		if _, err := r.Initiate(); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := NewReconciler(newSliceSet(nil), ReconcileConfig{}).Initiate(); err != nil {
		t.Fatalf("the zero config (all defaults) is refused: %v", err)
	}
}
