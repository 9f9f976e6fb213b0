package oplog

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// parse reads an op envelope strictly. The envelope has one fixed shape, so
// rather than decode generically and re-encode to prove the input canonical,
// it accepts exactly the bytes that fxamacker's core deterministic encoder
// writes for an Op — definite lengths, shortest heads, nothing after — and
// refuses the rest. FuzzDecodeMatchesReference holds it to that.
func parse(b []byte) (*Op, error) {
	p := parser{b: b}
	if p.byte() != 0x86 {
		return nil, p.fail("not a 6-element array")
	}
	op := new(Op)
	v := p.uint()
	if p.err == nil && v != Version {
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrVersion, v, Version)
	}
	op.V = Version
	k := p.uint()
	if p.err == nil && (k > 255 || !Kind(k).Valid()) {
		return nil, fmt.Errorf("%w: %d", ErrKind, k)
	}
	op.Kind = Kind(k)
	copy(op.Author[:], p.bytes(len(op.Author)))
	op.HLC = HLC(p.uint())
	op.Body = append([]byte{}, p.bytes(-1)...)
	copy(op.Sig[:], p.bytes(ed25519.SignatureSize))
	if p.err != nil {
		return nil, p.err
	}
	if p.i != len(b) {
		return nil, p.fail(fmt.Sprintf("%d trailing bytes", len(b)-p.i))
	}
	return op, nil
}

// parser walks CBOR items, remembering the first problem.
type parser struct {
	b   []byte
	i   int
	err error
}

func (p *parser) fail(what string) error {
	if p.err == nil {
		p.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, p.i)
	}
	return p.err
}

func (p *parser) noncanonical(what string) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: %s at byte %d", ErrNonCanonical, what, p.i)
	}
}

func (p *parser) byte() byte {
	if p.err != nil || p.i >= len(p.b) {
		p.fail("unexpected end")
		return 0
	}
	c := p.b[p.i]
	p.i++
	return c
}

// head reads an item head of the given major type and returns its argument,
// insisting on the shortest form.
func (p *parser) head(major byte) uint64 {
	c := p.byte()
	if p.err != nil {
		return 0
	}
	if c>>5 != major {
		p.fail(fmt.Sprintf("CBOR major type %d, want %d", c>>5, major))
		return 0
	}
	info := c & 0x1f
	var n int
	switch {
	case info < 24:
		return uint64(info)
	case info == 24:
		n = 1
	case info == 25:
		n = 2
	case info == 26:
		n = 4
	case info == 27:
		n = 8
	default:
		p.fail("indefinite or reserved length")
		return 0
	}
	if p.i+n > len(p.b) {
		p.fail("unexpected end")
		return 0
	}
	var v uint64
	switch n {
	case 1:
		v = uint64(p.b[p.i])
	case 2:
		v = uint64(binary.BigEndian.Uint16(p.b[p.i:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(p.b[p.i:]))
	case 8:
		v = binary.BigEndian.Uint64(p.b[p.i:])
	}
	p.i += n
	// Shortest form: the value must not fit a smaller head.
	if (n == 1 && v < 24) || (n == 2 && v <= 0xff) || (n == 4 && v <= 0xffff) || (n == 8 && v <= 0xffffffff) {
		p.noncanonical("integer or length in a longer form than needed")
	}
	return v
}

func (p *parser) uint() uint64 { return p.head(0) }

// bytes reads a byte string of length want (any length if want < 0).
func (p *parser) bytes(want int) []byte {
	n := p.head(2)
	if p.err != nil {
		return nil
	}
	if want >= 0 && n != uint64(want) {
		p.fail(fmt.Sprintf("byte string of %d bytes, want %d", n, want))
		return nil
	}
	if n > uint64(len(p.b)-p.i) {
		p.fail("unexpected end")
		return nil
	}
	s := p.b[p.i : p.i+int(n)]
	p.i += int(n)
	return s
}
