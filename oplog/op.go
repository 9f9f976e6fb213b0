package oplog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Version is the only envelope version this code reads and writes.
const Version = 1

// MaxOpBytes bounds an encoded op. Larger ops are refused by Decode and never
// created by Sign: every frame, store value and fold input stays small.
const MaxOpBytes = 64 << 10

// sigDomain separates op signatures from every other use of a node's key.
const sigDomain = "pln/op/v1"

// Op is one signed, timestamped fact. Ops are immutable once signed; treat
// every field as read-only.
type Op struct {
	_      struct{} `cbor:",toarray"`
	V      uint8
	Kind   Kind
	Author Key
	HLC    HLC
	Body   []byte
	Sig    [ed25519.SignatureSize]byte

	id  ID     // set by Sign and Decode; zero for ops built by hand
	raw []byte // the canonical encoding, set by Sign and Decode
}

// unsigned is the part of an op that its ID and signature cover.
type unsigned struct {
	_      struct{} `cbor:",toarray"`
	V      uint8
	Kind   Kind
	Author Key
	HLC    HLC
	Body   []byte
}

// Errors returned by Decode and Verify; callers test them with errors.Is.
var (
	ErrMalformed    = errors.New("malformed op")
	ErrTooLarge     = errors.New("op too large")
	ErrNonCanonical = errors.New("op is not in canonical form")
	ErrVersion      = errors.New("unsupported op version")
	ErrKind         = errors.New("unknown op kind")
	ErrSignature    = errors.New("bad op signature")
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	eo := cbor.CoreDetEncOptions()
	eo.ByteArray = cbor.ByteArrayToByteSlice
	if encMode, err = eo.EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  1 << 16,
		MaxMapPairs:       1 << 16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v in CBOR core deterministic form. Op bodies use it so that
// equal bodies are equal bytes.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR strictly: no duplicate keys, no indefinite lengths,
// no tags, no unknown fields, no trailing bytes. Body decoders use it.
func Unmarshal(b []byte, v any) error { return decMode.Unmarshal(b, v) }

// Sign builds and signs an op. The body must already be encoded.
func Sign(cluster ClusterID, priv ed25519.PrivateKey, kind Kind, hlc HLC, body []byte) (*Op, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrKind, kind)
	}
	if body == nil {
		// CBOR encodes a nil slice as null, which Decode refuses: sign the
		// empty byte string instead, the one encoding of "no body".
		body = []byte{}
	}
	op := &Op{V: Version, Kind: kind, Author: KeyOf(priv), HLC: hlc, Body: body}
	msg, err := op.unsignedBytes()
	if err != nil {
		return nil, err
	}
	if len(msg)+2+ed25519.SignatureSize > MaxOpBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg)+2+ed25519.SignatureSize, MaxOpBytes)
	}
	copy(op.Sig[:], ed25519.Sign(priv, signedMessage(cluster, msg)))
	op.id = sha256.Sum256(msg)
	op.raw = op.encode()
	return op, nil
}

// Verify checks the op's signature against its author and cluster.
func (o *Op) Verify(cluster ClusterID) error {
	// From the fields, not cached bytes: what is checked is what is used.
	msg, err := o.marshalUnsigned()
	if err != nil {
		return err
	}
	if !ed25519.Verify(o.Author[:], signedMessage(cluster, msg), o.Sig[:]) {
		return fmt.Errorf("%w: %s op %s by %s (wrong cluster, or altered)", ErrSignature, o.Kind, o.ID().Short(), o.Author.Short())
	}
	return nil
}

// ID returns the op's identity: SHA-256 of its unsigned canonical encoding.
func (o *Op) ID() ID {
	if o.id != (ID{}) {
		return o.id
	}
	msg, err := o.unsignedBytes()
	if err != nil {
		// Only a Body too large for CBOR can fail, which Sign and Decode refuse.
		panic(err)
	}
	return sha256.Sum256(msg)
}

// Bytes returns the op's canonical encoding. The slice is shared: do not
// modify it.
func (o *Op) Bytes() []byte {
	if o.raw != nil {
		return o.raw
	}
	return o.encode()
}

func (o *Op) encode() []byte {
	b, err := encMode.Marshal(o)
	if err != nil {
		panic(err) // a valid Op always encodes
	}
	return b
}

// Decode reads one op. It refuses anything but exactly one canonical op of a
// known version and kind within MaxOpBytes; it does not check the signature.
func Decode(b []byte) (*Op, error) {
	if len(b) > MaxOpBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxOpBytes)
	}
	op, err := parse(b)
	if err != nil {
		return nil, err
	}
	op.raw = bytes.Clone(b)
	msg, _ := op.unsignedBytes()
	op.id = sha256.Sum256(msg)
	return op, nil
}

// sigTail is the length of the encoded signature that ends every op: a byte
// string head (0x58 0x40) and 64 bytes.
const sigTail = 2 + ed25519.SignatureSize

func (o *Op) unsignedBytes() ([]byte, error) {
	if o.raw != nil {
		// The canonical op is the 6-array [v, kind, author, hlc, body, sig];
		// the unsigned part is the 5-array of the same fields, so its encoding
		// is the op's with the array head 0x86 made 0x85 and the sig cut off.
		msg := make([]byte, len(o.raw)-sigTail)
		copy(msg, o.raw[:len(o.raw)-sigTail])
		msg[0] = 0x85
		return msg, nil
	}
	return o.marshalUnsigned()
}

func (o *Op) marshalUnsigned() ([]byte, error) {
	return encMode.Marshal(unsigned{V: o.V, Kind: o.Kind, Author: o.Author, HLC: o.HLC, Body: o.Body})
}

func signedMessage(cluster ClusterID, unsigned []byte) []byte {
	msg := make([]byte, 0, len(sigDomain)+len(cluster)+len(unsigned))
	msg = append(msg, sigDomain...)
	msg = append(msg, cluster[:]...)
	return append(msg, unsigned...)
}

// Compare orders ops totally by (hlc, author, ID): the order every node folds
// in, whatever order the ops arrived in.
func Compare(a, b *Op, aID, bID ID) int {
	switch {
	case a.HLC < b.HLC:
		return -1
	case a.HLC > b.HLC:
		return 1
	}
	if c := bytes.Compare(a.Author[:], b.Author[:]); c != 0 {
		return c
	}
	return bytes.Compare(aID[:], bID[:])
}

// OrderKeyLen is the length of an order key.
const OrderKeyLen = 8 + len(Key{}) + len(ID{})

// OrderKey is the op's position in the total order as bytes: big-endian HLC,
// author, ID. Comparing keys with bytes.Compare agrees with Compare.
func OrderKey(o *Op, id ID) [OrderKeyLen]byte {
	var k [OrderKeyLen]byte
	h := uint64(o.HLC)
	for i := 7; i >= 0; i-- {
		k[i] = byte(h)
		h >>= 8
	}
	copy(k[8:], o.Author[:])
	copy(k[8+len(o.Author):], id[:])
	return k
}
