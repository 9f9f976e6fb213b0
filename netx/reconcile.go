package netx

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Anti-entropy (DESIGN.md §5): range-based set reconciliation, after Aljoscha
// Meyer's "Range-Based Set Reconciliation" and the negentropy protocol, over
// each node's sync set ordered by (HLC, ID). The two sides exchange
// fingerprints of ranges, split the ranges whose fingerprints differ, and
// list the items of small ranges; the answer to a list settles its range.
// Work grows with the difference, not with the log.
//
// Reconciler is the protocol alone: bytes in, bytes out, no I/O, no clock, no
// goroutines. The sync stream (or a test) carries the messages:
//
//	a := NewReconciler(ourSnapshot, cfg)   b := NewReconciler(theirs, cfg)
//	msg, _ := a.Initiate()
//	for {                                  // the sides take turns
//	    reply, done, err := b.Reconcile(msg)
//	    ... send reply if non-nil; stop when done ...
//	}
//
// Then a.Have() are the ops a holds that b lacks, a.Need() those b holds that
// a lacks, and b's are the mirror image: each side sends the ops in its Have.
//
// Messages are stateless, as negentropy's are: each covers the whole key
// space, and a Reconciler keeps no ranges between messages, only what it has
// learned. A reply with no room for all its answers hands the ranges left over
// back to the peer as fingerprints (see process), so MaxMessageBytes bounds
// every message and only the number of rounds grows.
//
// Round trips. Two sets in sync take one: the initiator sends one
// fingerprint (18 bytes), the responder answers with an empty message (1
// byte). Otherwise the splitting is aimed to reach ranges of ListThreshold/2
// items by the last message that can still send lists within
// TargetRoundTrips: the first split of the whole set makes FirstFanout parts
// (paid once, not per difference), and every later split makes the fewest
// parts that still get there in the messages left, because each part costs
// about 11 bytes per differing range at every level, while a listed item
// costs 35. With a million items the splits go 64, 8, 8, 8, 8: ranges of
// about four items at the seventh message, their lists in it, the replies in
// the eighth; ten differences cost about 6 KB in all. Where differences are
// dense, each split is narrowed so all of a message's splits fit in it.

// SyncSet is what reconciliation reads: a set of items ordered by (HLC, then
// ID bytes), addressed by rank. *store.SyncIndex implements it.
//
// Pass a set that holds still for the whole exchange: a snapshot,
// store.SyncIndex().Snapshot(), taken per exchange. Ranks address items, and
// a list reply addresses the items we listed by position, so a set that
// changes under the exchange gives a Have and Need that may miss or wrongly
// include the ops that moved (the next exchange repairs that). It never makes
// a message invalid or an exchange fail: the Reconciler checks what it reads.
type SyncSet interface {
	// Len returns the number of items.
	Len() int
	// Rank returns how many items order before (hlc, id); id may be a
	// zero-padded prefix.
	Rank(hlc oplog.HLC, id oplog.ID) int
	// At returns the item of rank i, 0 <= i < Len(). A set that may change
	// should answer a rank past its end with its last item, not panic.
	At(i int) (oplog.HLC, oplog.ID)
	// Sum returns the sum of the IDs of the items of rank i to j-1, each read
	// as a 256-bit little-endian integer, modulo 2^256, little-endian. Both
	// sides of an exchange must agree on this: it is part of the protocol. A
	// set that may change should clamp ranks past its end, not panic.
	Sum(i, j int) [32]byte
}

// ReconcileStats counts one side's traffic in an exchange.
type ReconcileStats struct {
	MessagesSent, MessagesReceived int
	BytesSent, BytesReceived       int
}

type role int

const (
	roleNone role = iota
	roleInitiator
	roleResponder
)

// Reconciler runs one side of one anti-entropy exchange. It is not safe for
// concurrent use, and it is used once: make a new one per exchange.
type Reconciler struct {
	set   SyncSet
	cfg   ReconcileConfig
	err   error // a bad config, reported by the first call
	role  role
	nonce [NonceBytes]byte
	done  bool
	stats ReconcileStats

	have map[oplog.ID]oplog.HLC // ours, the peer lacks
	need map[oplog.ID]oplog.HLC // the peer's, we lack
}

// NewReconciler returns a Reconciler over set (see SyncSet: pass a
// snapshot). If cfg is invalid, Initiate and Reconcile say why.
func NewReconciler(set SyncSet, cfg ReconcileConfig) *Reconciler {
	cfg, err := cfg.withDefaults()
	return &Reconciler{set: set, cfg: cfg, err: err, have: map[oplog.ID]oplog.HLC{}, need: map[oplog.ID]oplog.HLC{}}
}

// Initiate returns the first message of an exchange, which makes this side
// the initiator. It draws the exchange's nonce from cfg.Rand: the nonce keys
// the fingerprints, so nobody can prepare ops that collide with them.
func (r *Reconciler) Initiate() ([]byte, error) {
	switch {
	case r.err != nil:
		return nil, r.err
	case r.role != roleNone:
		return nil, fmt.Errorf("%w: Initiate on a reconciler that has already started", ErrReconcileOutOfTurn)
	}
	if _, err := io.ReadFull(r.cfg.Rand, r.nonce[:]); err != nil {
		return nil, fmt.Errorf("reconcile: drawing a nonce: %w", err)
	}
	r.role = roleInitiator
	o := r.newOutput(true)
	if n := r.set.Len(); n == 0 {
		// Nothing to fingerprint: say so, and the peer lists all it has.
		o.entry(lowest, infinity, modeIdList, appendItems(nil, lowest, nil))
	} else {
		// In sync is the common case, and costs this one fingerprint.
		o.entry(lowest, infinity, modeFingerprint, r.fingerprint(0, n))
	}
	return r.send(o), nil
}

// Reconcile reads the peer's message and returns the reply. out is nil when
// there is nothing to send. done means this side has nothing more to say and
// expects nothing more: send out (if any), then the exchange is over and
// Have and Need are complete. An error means the peer sent a bad message;
// drop it.
func (r *Reconciler) Reconcile(in []byte) (out []byte, done bool, err error) {
	switch {
	case r.err != nil:
		return nil, true, r.err
	case r.done:
		return nil, true, fmt.Errorf("%w: the exchange is over", ErrReconcileOutOfTurn)
	case len(in) > r.cfg.MaxMessageBytes:
		r.done = true
		return nil, true, fmt.Errorf("%w: %d bytes, limit %d", ErrReconcileMalformed, len(in), r.cfg.MaxMessageBytes)
	}
	msg, err := decodeMessage(in)
	if err == nil {
		err = r.checkTurn(msg)
	}
	if err == nil {
		r.stats.MessagesReceived++
		r.stats.BytesReceived += len(in)
		out = r.process(msg)
	}
	if err != nil {
		r.done = true
		return nil, true, err
	}
	return out, r.done, nil
}

// checkTurn checks the message fits the exchange so far.
func (r *Reconciler) checkTurn(msg *message) error {
	switch {
	case r.role == roleNone && !msg.first:
		return fmt.Errorf("%w: the first message of an exchange must carry the initiator's nonce", ErrReconcileOutOfTurn)
	case r.role == roleNone:
		r.role, r.nonce = roleResponder, msg.nonce
	case msg.first:
		return fmt.Errorf("%w: a first message in the middle of an exchange", ErrReconcileOutOfTurn)
	}
	return nil
}

// Have returns the IDs of the ops this side holds and the peer lacks, in
// (HLC, ID) order. It is complete once the exchange is done.
func (r *Reconciler) Have() []oplog.ID { return sortedIDs(r.have) }

// Need returns the IDs of the ops the peer holds and this side lacks, in
// (HLC, ID) order. It is complete once the exchange is done.
func (r *Reconciler) Need() []oplog.ID { return sortedIDs(r.need) }

// Stats returns this side's traffic so far.
func (r *Reconciler) Stats() ReconcileStats { return r.stats }

func sortedIDs(m map[oplog.ID]oplog.HLC) []oplog.ID {
	items := make([]item, 0, len(m))
	for id, hlc := range m {
		items = append(items, item{hlc, id})
	}
	slices.SortFunc(items, compareItems)
	ids := make([]oplog.ID, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	return ids
}

// process answers every range of the peer's message.
//
// Each range that needs an answer gets one of three: the real answer (a
// split, our list, or a reply to the peer's list); if that does not fit, an
// echo, our fingerprint of the range, which hands the range back for the peer
// to work on next round with a fresh message (about 12 bytes, where cutting
// the message short would make the peer restart the descent over all the
// rest); and if not even the echoes fit, a summary of everything left. Room
// for the echoes of the ranges still to come is kept while answering, but
// never more than a quarter of the message (more starves the real work: with
// 1 KiB messages, half costs 30% more bytes and messages), and none for the
// first range, which gets the whole message: every round does real work on
// the leftmost ranges, so the exchange ends.
func (r *Reconciler) process(msg *message) []byte {
	if !msg.needsReply() {
		// Only answers: take them in, and the exchange is over.
		lo := lowest
		for k := range msg.entries {
			if e := &msg.entries[k]; e.mode == modeListReply {
				r.takeReply(lo, e)
			}
			lo = msg.entries[k].upper
		}
		r.done = true
		return nil
	}
	o := r.newOutput(false)
	p := r.plan(o, msg)
	pending := p.work
	answered := false
	lo := lowest
	for k := range msg.entries {
		e, pr := &msg.entries[k], p.ranges[k]
		switch {
		case e.mode == modeListReply:
			r.takeReply(lo, e)
		case !pr.work || o.full:
		default:
			pending--
			o.reserve = 0
			if answered {
				o.reserve = min(pending*planEchoBytes, o.limit/4)
			}
			var ok bool
			if e.mode == modeFingerprint {
				ok = r.split(o, lo, e.upper, pr.i, pr.j, p.maxFanout)
			} else {
				ok = r.answerList(o, lo, e.upper, pr.i, pr.j, e.items)
			}
			if ok {
				answered = true
			} else {
				r.echo(o, lo, e.upper, pr.i, pr.j)
			}
		}
		lo = e.upper
	}
	out := r.send(o)
	r.done = !o.asks
	return out
}

// A plan is a first pass over a peer's message: which ranges need an answer,
// and how many parts each split may make so that all of them fit in this one
// reply. Where the difference is dense, smaller splits cost fewer bytes per
// difference than handing ranges back.
type plan struct {
	ranges    []plannedRange // by entry
	work      int            // ranges that need an answer
	maxFanout int
}

type plannedRange struct {
	i, j int  // our ranks
	work bool // a fingerprint that differs from ours, or a list
}

// Sizes a plan reckons with, in bytes: a fingerprint entry (tag, a bound of a
// byte or two, the fingerprint), a list item, and a Skip entry before an
// entry; an echo is a Skip and a fingerprint.
const (
	planFingerprintBytes = 1 + 3 + FingerprintBytes
	planItemBytes        = 2 + len(oplog.ID{})
	planSkipBytes        = 4
	planEchoBytes        = planSkipBytes + planFingerprintBytes
)

func (r *Reconciler) plan(o *output, msg *message) plan {
	p := plan{ranges: make([]plannedRange, len(msg.entries))}
	splits, reserved := 0, 0
	lo := lowest
	for k := range msg.entries {
		e := &msg.entries[k]
		i, j := r.span(lo, e.upper)
		pr := plannedRange{i: i, j: j}
		switch e.mode {
		case modeFingerprint:
			pr.work = string(r.fingerprint(i, j)) != string(e.fp[:])
			switch {
			case !pr.work:
			case j-i <= r.listLimit():
				reserved += planSkipBytes + 2 + (j-i)*planItemBytes
			default:
				splits++
			}
		case modeIdList:
			pr.work = true
			reserved += planSkipBytes + 4 + len(e.items)/8 + planItemBytes
		}
		if pr.work {
			p.work++
		}
		p.ranges[k] = pr
		lo = e.upper
	}
	p.maxFanout = max(2, (o.limit-len(o.buf)-reserved)/max(1, splits)/planFingerprintBytes-1)
	return p
}

func (r *Reconciler) send(o *output) []byte {
	r.stats.MessagesSent++
	r.stats.BytesSent += len(o.buf)
	return o.buf
}

// rank returns the rank of the first of our items at or after b.
func (r *Reconciler) rank(b bound) int {
	if b.inf {
		return r.set.Len()
	}
	return r.set.Rank(b.hlc, b.id)
}

func (r *Reconciler) at(i int) item {
	hlc, id := r.set.At(i)
	return item{hlc, id}
}

// span returns the ranks of our items in [lo, hi).
func (r *Reconciler) span(lo, hi bound) (i, j int) {
	i, j = r.rank(lo), r.rank(hi)
	return i, max(i, j) // j < i only if the set changed in between
}

// inRange reports whether it belongs next in a list of [lo, hi) whose last
// item so far is last (nil for none). Over a set that holds still every item
// read does; over one that changes, what was read out of place is dropped, so
// no message we send is ever out of order.
func inRange(it item, lo, hi bound, last *item) bool {
	return !it.below(lo) && it.below(hi) && (last == nil || compareItems(*last, it) < 0)
}

// itemsIn returns our items of ranks [i, j) in [lo, hi), in order.
func (r *Reconciler) itemsIn(lo, hi bound, i, j int) []item {
	items := make([]item, 0, j-i)
	for t := i; t < j; t++ {
		var last *item
		if len(items) > 0 {
			last = &items[len(items)-1]
		}
		if it := r.at(t); inRange(it, lo, hi, last) {
			items = append(items, it)
		}
	}
	return items
}

// fingerprint keys, hashes and truncates the sum and count of ranks [i, j).
func (r *Reconciler) fingerprint(i, j int) []byte {
	var b [len(fpDomain) + NonceBytes + 32 + 8]byte
	n := copy(b[:], fpDomain)
	n += copy(b[n:], r.nonce[:])
	sum := r.set.Sum(i, j)
	n += copy(b[n:], sum[:])
	binary.LittleEndian.PutUint64(b[n:], uint64(j-i))
	h := sha256.Sum256(b[:])
	return h[:FingerprintBytes]
}

// echo hands [lo, hi) back to the peer as our fingerprint of it.
func (r *Reconciler) echo(o *output, lo, hi bound, i, j int) {
	o.reserve = 0
	if !o.entry(lo, hi, modeFingerprint, r.fingerprint(i, j)) {
		o.summariseFrom(lo)
	}
}

// split answers a peer's fingerprint of [lo, hi) that differs from ours (our
// items there being ranks [i, j)): our list if we hold few items there, else
// our fingerprints of at most maxFanout parts. It reports false, writing
// nothing, if the answer does not fit.
func (r *Reconciler) split(o *output, lo, hi bound, i, j, maxFanout int) bool {
	if j-i <= r.listLimit() {
		return o.entry(lo, hi, modeIdList, appendItems(nil, lo, r.itemsIn(lo, hi, i, j)))
	}
	k := min(r.fanout(j-i, lo == lowest && hi.inf), maxFanout)
	uppers := make([]bound, 0, k)
	ends := make([]int, 0, k)
	size := 0
	from := lo
	for p := 1; p < k; p++ {
		end := i + (j-i)*p/k
		a, b := r.at(end-1), r.at(end)
		if compareItems(a, b) >= 0 {
			return false // the set changed under us
		}
		upper := separator(a, b)
		if upper.compare(from) <= 0 || upper.compare(hi) >= 0 {
			return false
		}
		size += boundBytes(from, upper) + FingerprintBytes
		uppers, ends, from = append(uppers, upper), append(ends, end), upper
	}
	uppers, ends = append(uppers, hi), append(ends, j)
	if size+boundBytes(from, hi)+FingerprintBytes > o.room(lo) {
		return false
	}
	from, start := lo, i
	for p, upper := range uppers {
		o.entry(from, upper, modeFingerprint, r.fingerprint(start, ends[p]))
		from, start = upper, ends[p]
	}
	return true
}

// fanout decides how many parts to split m items into; see the top of the
// file for why.
func (r *Reconciler) fanout(m int, whole bool) int {
	aim := r.aim()
	worth := (m + aim - 1) / aim // parts of aim items; more is waste
	k := r.cfg.MaxFanout
	if whole {
		k = r.cfg.FirstFanout
	} else if left := r.listMessage() - r.msgIndex(); left >= 1 {
		k = min(k, int(math.Ceil(math.Pow(float64(m)/float64(aim), 1/float64(left)))))
	}
	return max(2, min(k, worth))
}

// aim is the size of range the splitting aims for: half ListThreshold, so
// that a range that gained a few items on the other side can still be listed.
func (r *Reconciler) aim() int { return r.cfg.ListThreshold / 2 }

// listLimit is the most items a range may hold to be listed rather than
// split. While split levels remain it is aim: a listed item costs about three
// fingerprints, so splitting on is cheaper. After, it is ListThreshold.
func (r *Reconciler) listLimit() int {
	if r.listMessage()-r.msgIndex() >= 1 {
		return r.aim()
	}
	return r.cfg.ListThreshold
}

// msgIndex is the number of the message being written: 1 for the first.
func (r *Reconciler) msgIndex() int { return r.stats.MessagesSent + r.stats.MessagesReceived + 1 }

// listMessage is the last message in which a split can still be answered by
// lists and those by replies within TargetRoundTrips.
func (r *Reconciler) listMessage() int { return 2*r.cfg.TargetRoundTrips - 1 }

// answerList answers a peer's list of its items in [lo, hi) (ours being
// ranks [i, j)): which of them we lack, and which of ours it lacks. If not all
// of ours fit, it answers for a first part of the range and echoes the rest.
// It reports false, writing nothing, if not even one of ours fits.
func (r *Reconciler) answerList(o *output, lo, hi bound, i, j int, theirs []item) bool {
	room := o.room(lo) - 1 - maxBoundBytes - 2*binary.MaxVarintLen64 - (len(theirs)+7)/8 - planEchoBytes
	if room < 0 {
		return false
	}
	var (
		extras []item // ours, not theirs
		lacks  = make([]bool, len(theirs))
		cut    = hi  // where this answer ends
		last   *item // our last item walked
		used   int
		q      int
	)
	for t := i; t < j; t++ {
		it := r.at(t)
		if !inRange(it, lo, hi, last) {
			continue
		}
		for q < len(theirs) && compareItems(theirs[q], it) < 0 {
			lacks[q] = true
			q++
		}
		if q < len(theirs) && theirs[q] == it {
			q++
			last = &it
			continue
		}
		prev := lo.hlc
		if len(extras) > 0 {
			prev = extras[len(extras)-1].hlc
		}
		size := uvarintLen(uint64(it.hlc-prev)) + len(it.id)
		if used+size > room {
			if last == nil {
				return false
			}
			cut = separator(*last, it)
			break
		}
		used += size
		extras = append(extras, it)
		last = &it
	}
	for ; q < len(theirs); q++ {
		lacks[q] = true
	}
	// The answer covers those of their items below the cut.
	covered, _ := slices.BinarySearchFunc(theirs, cut, func(it item, b bound) int {
		if it.below(b) {
			return -1
		}
		return 1
	})
	bitmap := make([]byte, (covered+7)/8)
	for k := range covered {
		if lacks[k] {
			bitmap[k/8] |= 1 << (k % 8)
		}
	}
	if len(extras) > 0 || slices.ContainsFunc(bitmap, func(b byte) bool { return b != 0 }) {
		payload := binary.AppendUvarint(nil, uint64(covered))
		payload = append(payload, bitmap...)
		payload = appendItems(payload, lo, extras)
		if !o.entry(lo, cut, modeListReply, payload) {
			return false // room was reckoned for it: only a changing set gets here
		}
	}
	// What the peer will learn from the reply, we know now.
	for k := range covered {
		if lacks[k] {
			r.need[theirs[k].id] = theirs[k].hlc
		}
	}
	for _, it := range extras {
		r.have[it.id] = it.hlc
	}
	if cut != hi {
		r.echo(o, cut, hi, r.rank(cut), j)
	}
	return true
}

// takeReply takes in the peer's answer to our list of [lo, e.upper).
func (r *Reconciler) takeReply(lo bound, e *entry) {
	// The bitmap addresses the items we listed by position. If we no longer
	// hold as many there (the set changed, or the peer is confused), it
	// cannot be read; the next exchange will find those ops again.
	if i, j := r.span(lo, e.upper); j-i == e.count {
		for k := range e.count {
			if e.bitmap[k/8]>>(k%8)&1 != 0 {
				it := r.at(i + k)
				r.have[it.id] = it.hlc
			}
		}
	}
	for _, it := range e.items {
		if k := r.rank(bound{hlc: it.hlc, id: it.id}); k < r.set.Len() && r.at(k) == it {
			continue // we hold it after all
		}
		r.need[it.id] = it.hlc
	}
}
