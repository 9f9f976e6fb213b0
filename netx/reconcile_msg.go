package netx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/pln-mesh/pln/oplog"
)

// The reconcile message format. A message covers the whole key space, (HLC,
// ID) from the lowest key to +∞, as consecutive ranges; each entry names the
// upper bound of its range (the lower bound is where the previous entry
// ended, or the lowest key) and says one thing about it. Whatever follows the
// last entry is Skip.
//
//	message = header entry*
//	header  = 0x11 nonce[8]        the initiator's first message
//	        | 0x12                 every later message
//	entry   = tag bound payload    tag = form<<2 | mode
//
// The bound is written relative to the previous entry's bound p (the lowest
// key, HLC 0 and a zero ID, before the first entry):
//
//	form 0..61  uvarint v: HLC = ((p.HLC >> form) + v) << form, ID zero.
//	            A split point needs only to fall between two items; the
//	            encoder picks the HLC with the most trailing zero bits there,
//	            so v is small: one or two bytes where a plain delta of
//	            millisecond HLCs takes four.
//	form 62     uvarint d, byte n, n bytes: HLC = p.HLC + d, ID = the n-byte
//	            prefix (1 <= n <= 32, last byte non-zero) zero-padded. Used
//	            only to separate two items with the same HLC.
//	form 63     +∞; nothing may follow this entry.
//
// Bounds strictly increase. The payload depends on the mode:
//
//	0 Skip         nothing: the range matches, or there is nothing to say.
//	1 Fingerprint  fp[8]: the sender's fingerprint of its items in the range.
//	2 IdList       items: every item the sender holds in the range.
//	3 ListReply    uvarint c, ceil(c/8) bytes of bitmap, items. The answer to
//	               an IdList: bit i (least significant first) set means the
//	               sender lacks the i-th listed item; c counts the listed items
//	               inside this range. items are the sender's items in the
//	               range that the list lacks.
//	items = uvarint count, count × (uvarint HLC delta, ID[32]); each delta
//	        from the previous item's HLC, the first from the range's lower
//	        bound; items strictly increase and lie inside the range.
//
// A fingerprint is the first FingerprintBytes of SHA-256(fpDomain ‖ nonce ‖
// sum ‖ count), where sum is SyncSet.Sum of the range and count its number of
// items as 8 little-endian bytes. The nonce, chosen at random by the
// initiator, makes the truncated hash a new function every session: nobody
// can prepare two op sets whose fingerprints collide, so 8 bytes suffice
// where an unkeyed fingerprint would need 16.

const (
	// NonceBytes is the size of the initiator's per-session nonce.
	NonceBytes = 8
	// FingerprintBytes is the size of a transmitted fingerprint: a random
	// false match has probability 2^-64 per comparison.
	FingerprintBytes = 8

	msgFirst = 0x11 // version 1, first message (carries the nonce)
	msgNext  = 0x12 // version 1, any later message

	formMaxShift = 61
	formPrefix   = 62
	formInfinity = 63

	// maxBoundBytes is the largest encoded bound after the tag: a 10-byte
	// uvarint, the prefix length and a whole ID.
	maxBoundBytes = binary.MaxVarintLen64 + 1 + len(oplog.ID{})
	// maxItemBytes is the largest encoded list item.
	maxItemBytes = binary.MaxVarintLen64 + len(oplog.ID{})
	// minItemBytes is the smallest: a one-byte delta and the ID.
	minItemBytes = 1 + len(oplog.ID{})
)

const fpDomain = "pln/rbsr/v1"

type mode byte

const (
	modeSkip mode = iota
	modeFingerprint
	modeIdList
	modeListReply
)

// Errors from Reconcile; callers test them with errors.Is. Either means the
// peer is broken or hostile: drop the connection and fold nothing it sent in
// this exchange.
var (
	ErrReconcileMalformed = errors.New("malformed reconcile message")
	ErrReconcileOutOfTurn = errors.New("reconcile message out of turn")
)

// item is one element of a sync set.
type item struct {
	hlc oplog.HLC
	id  oplog.ID
}

// bound is a position in the key space: the items at or after it. id holds
// an ID prefix, zero-padded, of plen bytes.
type bound struct {
	hlc  oplog.HLC
	id   oplog.ID
	plen int
	inf  bool
}

var (
	lowest   = bound{}
	infinity = bound{inf: true}
)

func compareItems(a, b item) int {
	switch {
	case a.hlc < b.hlc:
		return -1
	case a.hlc > b.hlc:
		return 1
	}
	return bytes.Compare(a.id[:], b.id[:])
}

func (b bound) compare(c bound) int {
	switch {
	case b.inf || c.inf:
		return boolInt(b.inf) - boolInt(c.inf)
	case b.hlc < c.hlc:
		return -1
	case b.hlc > c.hlc:
		return 1
	}
	return bytes.Compare(b.id[:], c.id[:])
}

// below reports whether it orders before the bound.
func (it item) below(b bound) bool {
	return b.inf || it.hlc < b.hlc || it.hlc == b.hlc && bytes.Compare(it.id[:], b.id[:]) < 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// separator returns the bound between a and the next item b (a < b) that is
// cheapest to write: an HLC with as many trailing zero bits as fit between
// them, or, if they share an HLC, the shortest prefix of b's ID that a lacks.
func separator(a, b item) bound {
	if a.hlc < b.hlc {
		t := 63 - bits.LeadingZeros64(uint64(a.hlc^b.hlc)) // highest bit where they differ: b has it
		return bound{hlc: b.hlc &^ (1<<t - 1)}
	}
	n := 0
	for a.id[n] == b.id[n] {
		n++
	}
	s := bound{hlc: b.hlc, plen: n + 1}
	copy(s.id[:n+1], b.id[:n+1])
	return s
}

func appendBound(buf []byte, m mode, prev, b bound) []byte {
	switch {
	case b.inf:
		return append(buf, formInfinity<<2|byte(m))
	case b.plen == 0:
		s := min(bits.TrailingZeros64(uint64(b.hlc)), formMaxShift)
		buf = append(buf, byte(s)<<2|byte(m))
		return binary.AppendUvarint(buf, uint64(b.hlc>>s-prev.hlc>>s))
	default:
		buf = append(buf, formPrefix<<2|byte(m))
		buf = binary.AppendUvarint(buf, uint64(b.hlc-prev.hlc))
		buf = append(buf, byte(b.plen))
		return append(buf, b.id[:b.plen]...)
	}
}

// boundBytes is the size appendBound writes, tag included.
func boundBytes(prev, b bound) int {
	switch {
	case b.inf:
		return 1
	case b.plen == 0:
		s := min(bits.TrailingZeros64(uint64(b.hlc)), formMaxShift)
		return 1 + uvarintLen(uint64(b.hlc>>s-prev.hlc>>s))
	default:
		return 2 + uvarintLen(uint64(b.hlc-prev.hlc)) + b.plen
	}
}

func appendItems(buf []byte, lo bound, items []item) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(items)))
	prev := lo.hlc
	for _, it := range items {
		buf = binary.AppendUvarint(buf, uint64(it.hlc-prev))
		buf = append(buf, it.id[:]...)
		prev = it.hlc
	}
	return buf
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// entry is one decoded range of a peer's message.
type entry struct {
	upper  bound
	mode   mode
	fp     [FingerprintBytes]byte
	items  []item // IdList: the list; ListReply: the sender's extras
	count  int    // ListReply: listed items the bitmap covers
	bitmap []byte // ListReply; aliases the message
}

// message is a decoded peer message.
type message struct {
	first   bool
	nonce   [NonceBytes]byte
	entries []entry
}

// needsReply reports whether the message asks anything of its receiver.
func (m *message) needsReply() bool {
	for i := range m.entries {
		if md := m.entries[i].mode; md == modeFingerprint || md == modeIdList {
			return true
		}
	}
	return false
}

// decoder reads a message, checking every length against what is left before
// allocating, so a message of n bytes never costs more than a few n of memory.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d of %d: %s", ErrReconcileMalformed, d.off, len(d.b), fmt.Sprintf(format, args...))
}

func (d *decoder) left() int { return len(d.b) - d.off }

func (d *decoder) byte() (byte, error) {
	if d.left() < 1 {
		return 0, d.fail("cut short")
	}
	d.off++
	return d.b[d.off-1], nil
}

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		return 0, d.fail("bad varint")
	}
	d.off += n
	return v, nil
}

func (d *decoder) bytes(n int) ([]byte, error) {
	if n < 0 || d.left() < n {
		return nil, d.fail("cut short: %d bytes wanted, %d left", n, d.left())
	}
	d.off += n
	return d.b[d.off-n : d.off], nil
}

// decodeMessage parses and checks a peer message. It validates structure
// only; whether the ranges make sense against our set is the caller's check.
func decodeMessage(in []byte) (*message, error) {
	d := &decoder{b: in}
	h, err := d.byte()
	if err != nil {
		return nil, err
	}
	m := &message{}
	switch h {
	case msgFirst:
		m.first = true
		nonce, err := d.bytes(NonceBytes)
		if err != nil {
			return nil, err
		}
		copy(m.nonce[:], nonce)
	case msgNext:
	default:
		return nil, d.fail("header %#02x is not a pln reconcile v1 message", h)
	}
	prev := lowest
	for d.left() > 0 {
		if prev.inf {
			return nil, d.fail("entry after the +∞ bound")
		}
		tag, _ := d.byte()
		e := entry{mode: mode(tag & 3)}
		if e.upper, err = d.bound(tag>>2, prev); err != nil {
			return nil, err
		}
		if e.upper.compare(prev) <= 0 {
			return nil, d.fail("bounds do not increase")
		}
		switch e.mode {
		case modeFingerprint:
			fp, err := d.bytes(FingerprintBytes)
			if err != nil {
				return nil, err
			}
			copy(e.fp[:], fp)
		case modeIdList:
			if e.items, err = d.items(prev, e.upper); err != nil {
				return nil, err
			}
		case modeListReply:
			c, err := d.uvarint()
			if err != nil {
				return nil, err
			}
			if c > uint64(d.left())*8 {
				return nil, d.fail("bitmap of %d bits in %d bytes", c, d.left())
			}
			e.count = int(c)
			if e.bitmap, err = d.bytes((e.count + 7) / 8); err != nil {
				return nil, err
			}
			if e.count%8 != 0 && e.bitmap[len(e.bitmap)-1]>>(e.count%8) != 0 {
				return nil, d.fail("bitmap has bits set past its %d items", e.count)
			}
			if e.items, err = d.items(prev, e.upper); err != nil {
				return nil, err
			}
		}
		m.entries = append(m.entries, e)
		prev = e.upper
	}
	return m, nil
}

func (d *decoder) bound(form byte, prev bound) (bound, error) {
	switch {
	case form == formInfinity:
		return infinity, nil
	case form == formPrefix:
		delta, err := d.uvarint()
		if err != nil {
			return bound{}, err
		}
		if delta > math.MaxUint64-uint64(prev.hlc) {
			return bound{}, d.fail("HLC overflows")
		}
		n, err := d.byte()
		if err != nil {
			return bound{}, err
		}
		if n < 1 || int(n) > len(oplog.ID{}) {
			return bound{}, d.fail("ID prefix of %d bytes", n)
		}
		p, err := d.bytes(int(n))
		if err != nil {
			return bound{}, err
		}
		if p[n-1] == 0 {
			return bound{}, d.fail("ID prefix ends in a zero byte")
		}
		b := bound{hlc: prev.hlc + oplog.HLC(delta), plen: int(n)}
		copy(b.id[:], p)
		return b, nil
	default:
		v, err := d.uvarint()
		if err != nil {
			return bound{}, err
		}
		base := uint64(prev.hlc) >> form
		if v > math.MaxUint64>>form-base {
			return bound{}, d.fail("HLC overflows")
		}
		return bound{hlc: oplog.HLC((base + v) << form)}, nil
	}
}

// items reads a list of items that must lie in [lo, hi) in increasing order.
func (d *decoder) items(lo, hi bound) ([]item, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(d.left()/minItemBytes) {
		return nil, d.fail("%d items cannot fit in %d bytes", n, d.left())
	}
	items := make([]item, n)
	hlc := lo.hlc
	for i := range items {
		delta, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		if delta > math.MaxUint64-uint64(hlc) {
			return nil, d.fail("HLC overflows")
		}
		hlc += oplog.HLC(delta)
		id, err := d.bytes(len(oplog.ID{}))
		if err != nil {
			return nil, err
		}
		items[i] = item{hlc: hlc, id: oplog.ID(id)}
		switch {
		case i == 0 && items[i].below(lo):
			return nil, d.fail("item before its range")
		case i > 0 && compareItems(items[i-1], items[i]) >= 0:
			return nil, d.fail("items do not increase")
		case !items[i].below(hi):
			return nil, d.fail("item past its range")
		}
	}
	return items, nil
}

// output builds one message within MaxMessageBytes. Ranges nobody writes an
// entry for are Skip: a Skip entry is written only where a later entry needs
// its range to start.
type output struct {
	r       *Reconciler
	buf     []byte
	limit   int   // bytes entries may use; the rest is kept for summariseFrom
	reserve int   // bytes entries may not use, kept for echoes to come
	prev    bound // the upper bound of the last entry written
	asks    bool  // an entry needs an answer
	full    bool  // summariseFrom has run: the rest of the space is covered
}

// summaryBytes is kept free in every message for summariseFrom: a Skip entry
// up to where the summary starts, and a fingerprint to +∞.
const summaryBytes = 1 + maxBoundBytes + 1 + FingerprintBytes

func (r *Reconciler) newOutput(first bool) *output {
	o := &output{r: r, limit: r.cfg.MaxMessageBytes - summaryBytes}
	if first {
		o.buf = append(o.buf, msgFirst)
		o.buf = append(o.buf, r.nonce[:]...)
	} else {
		o.buf = append(o.buf, msgNext)
	}
	return o
}

// room is how many bytes an entry starting at lo may take, bound included.
func (o *output) room(lo bound) int {
	n := o.limit - o.reserve - len(o.buf)
	if lo != o.prev {
		n -= boundBytes(o.prev, lo)
	}
	return n
}

// entry writes [lo, hi) with a payload, after a Skip entry up to lo if
// needed. It reports false, writing nothing, if that does not fit.
func (o *output) entry(lo, hi bound, m mode, payload []byte) bool {
	if o.full || boundBytes(lo, hi)+len(payload) > o.room(lo) {
		return false
	}
	if lo != o.prev {
		o.buf = appendBound(o.buf, modeSkip, o.prev, lo)
	}
	o.buf = appendBound(o.buf, m, lo, hi)
	o.buf = append(o.buf, payload...)
	o.prev = hi
	o.asks = o.asks || m == modeFingerprint || m == modeIdList
	return true
}

// summariseFrom ends the message's real work at lo: the rest of the space
// goes as one fingerprint of our items there, to be split again next round.
// The room was kept for it.
func (o *output) summariseFrom(lo bound) {
	if o.full {
		return
	}
	o.limit += summaryBytes
	o.reserve = 0
	o.entry(lo, infinity, modeFingerprint, o.r.fingerprint(o.r.rank(lo), o.r.set.Len()))
	o.full = true
}
