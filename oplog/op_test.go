package oplog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// testKey is a deterministic key pair; ed25519 signatures are deterministic
// too, so every op these tests build has the same bytes on every run.
func testKey(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

var (
	rootKey     = testKey(1)
	testCluster = ClusterOf(KeyOf(rootKey))
	testHLC     = NewHLC(1_763_730_000_000, 7) // 2025-11-21T12:20:00Z+7
)

// grantBody is a plausible CBOR body: a map, as the reducers will write.
// It is encoded with fxamacker directly because package variables are set
// before op.go's init builds the package's own encoder.
var grantBody = func() []byte {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	b, err := em.Marshal(map[string]any{"subject": bytes.Repeat([]byte{9}, 32), "tier": "member", "expiry": 1_800_000_000})
	if err != nil {
		panic(err)
	}
	return b
}()

func mustSign(t testing.TB, kind Kind, hlc HLC, body []byte) *Op {
	t.Helper()
	op, err := Sign(testCluster, rootKey, kind, hlc, body)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func TestSignDecodeVerifyRoundTrip(t *testing.T) {
	bodies := map[string][]byte{"nil": nil, "empty": {}, "map": grantBody, "1KiB": bytes.Repeat([]byte{0xa5}, 1024)}
	for _, kind := range Kinds() {
		for name, body := range bodies {
			op := mustSign(t, kind, testHLC, body)
			b := op.Bytes()
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("%s/%s: Decode: %v", kind, name, err)
			}
			if err := got.Verify(testCluster); err != nil {
				t.Errorf("%s/%s: Verify after Decode: %v", kind, name, err)
			}
			if got.V != Version || got.Kind != kind || got.Author != KeyOf(rootKey) || got.HLC != testHLC ||
				!bytes.Equal(got.Body, body) || got.Sig != op.Sig {
				t.Errorf("%s/%s: decoded %+v, signed %+v", kind, name, got, op)
			}
			if got.ID() != op.ID() || !bytes.Equal(got.Bytes(), b) {
				t.Errorf("%s/%s: ID or bytes changed across Decode", kind, name)
			}
		}
	}
}

// The ID is SHA-256 over [v, kind, author, hlc, body], encoded here with
// fxamacker's plain core deterministic mode rather than the package's own, so
// that the test does not just repeat the implementation.
func TestIDIsHashOfUnsignedEncoding(t *testing.T) {
	op := mustSign(t, KindSeed, testHLC, grantBody)
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := em.Marshal([]any{uint64(1), uint64(KindSeed), op.Author[:], uint64(testHLC), grantBody})
	if err != nil {
		t.Fatal(err)
	}
	want := ID(sha256.Sum256(unsigned))
	hand := &Op{V: op.V, Kind: op.Kind, Author: op.Author, HLC: op.HLC, Body: op.Body, Sig: op.Sig}
	again := mustSign(t, KindSeed, testHLC, grantBody)
	for name, got := range map[string]ID{"Sign": op.ID(), "built by hand": hand.ID(), "signed again": again.ID()} {
		if got != want {
			t.Errorf("ID of op from %s = %s, want sha256 of the unsigned encoding %s", name, got, want)
		}
	}
	// The signature is not covered: re-signing under another cluster keeps the ID.
	other, _ := Sign(ClusterID{0xff}, rootKey, KindSeed, testHLC, grantBody)
	if other.ID() != want || other.Sig == op.Sig {
		t.Error("ID must not depend on the cluster; the signature must")
	}
}

func TestVerifyRejectsAlteredOrReplayedOps(t *testing.T) {
	op := mustSign(t, KindGrant, testHLC, grantBody)
	b := op.Bytes()
	bodyAt := bytes.Index(b, grantBody)
	alter := map[string]func() *Op{
		"replayed into another cluster": func() *Op { return op },
		"flipped body byte": func() *Op {
			c := slices.Clone(b)
			c[bodyAt+len(grantBody)/2] ^= 1
			o, err := Decode(c) // still well formed: the body is opaque bytes
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		"flipped sig byte": func() *Op {
			c := slices.Clone(b)
			c[len(c)-1] ^= 0x80
			o, err := Decode(c)
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		"changed HLC":    func() *Op { o := *op; o.HLC++; return &o },
		"changed kind":   func() *Op { o := *op; o.Kind = KindDeny; return &o },
		"changed author": func() *Op { o := *op; o.Author = KeyOf(testKey(2)); return &o },
	}
	for name, f := range alter {
		cluster := testCluster
		if name == "replayed into another cluster" {
			cluster = ClusterOf(KeyOf(testKey(3)))
		}
		err := f().Verify(cluster)
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: Verify = %v, want ErrSignature", name, err)
		}
	}
	if err := op.Verify(testCluster); err != nil {
		t.Errorf("the unaltered op fails: %v", err)
	}
}

// head writes a minimal CBOR head by hand, so that tests can assemble
// exactly the malformed and non-canonical encodings the library never would.
func head(major byte, n uint64) []byte {
	switch {
	case n < 24:
		return []byte{major<<5 | byte(n)}
	case n <= 0xff:
		return []byte{major<<5 | 24, byte(n)}
	case n <= 0xffff:
		return []byte{major<<5 | 25, byte(n >> 8), byte(n)}
	case n <= 0xffffffff:
		return []byte{major<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{major<<5 | 27, byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func uintItem(n uint64) []byte { return head(0, n) }
func bstrItem(b []byte) []byte { return append(head(2, uint64(len(b))), b...) }
func arrayOf(items ...[]byte) []byte {
	return slices.Concat(append([][]byte{head(4, uint64(len(items)))}, items...)...)
}

// fields returns the six encoded fields of op, for tests to swap one out.
func fields(op *Op) [][]byte {
	return [][]byte{uintItem(uint64(op.V)), uintItem(uint64(op.Kind)), bstrItem(op.Author[:]), uintItem(uint64(op.HLC)), bstrItem(op.Body), bstrItem(op.Sig[:])}
}

func with(op *Op, i int, item []byte) []byte {
	f := fields(op)
	f[i] = item
	return arrayOf(f...)
}

func TestDecodeRejects(t *testing.T) {
	op := mustSign(t, KindGrant, testHLC, []byte{1, 2, 3})
	good := op.Bytes()
	early := mustSign(t, KindGrant, 1000, nil)
	if !bytes.Equal(arrayOf(fields(op)...), good) {
		t.Fatalf("the hand encoder disagrees with Bytes:\n%x\n%x", arrayOf(fields(op)...), good)
	}
	const (
		vField = iota
		kindField
		authorField
		hlcField
		bodyField
		sigField
	)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty input", nil, ErrMalformed},
		{"one trailing byte", append(slices.Clone(good), 0), ErrMalformed},
		{"a second op after the first", append(slices.Clone(good), good...), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"over MaxOpBytes", make([]byte, MaxOpBytes+1), ErrTooLarge},
		{"five fields", arrayOf(fields(op)[:5]...), ErrMalformed},
		{"seven fields", arrayOf(append(fields(op), uintItem(0))...), ErrMalformed},
		{"a map, not an array", append(head(5, 1), append(uintItem(0), uintItem(0)...)...), ErrMalformed},
		{"indefinite-length array", slices.Concat([]byte{0x9f}, slices.Concat(fields(op)...), []byte{0xff}), ErrMalformed},
		{"indefinite-length body", with(op, bodyField, []byte{0x5f, 0x43, 1, 2, 3, 0xff}), ErrMalformed},
		{"tagged op", append([]byte{0xc0 | 24, 55}, good...), ErrMalformed},
		{"text body", with(op, bodyField, []byte{0x63, 1, 2, 3}), ErrMalformed},
		{"kind 256 overflows", with(op, kindField, uintItem(256)), ErrKind},
		{"negative HLC", with(op, hlcField, []byte{0x20}), ErrMalformed},
		{"kind as two-byte integer", with(op, kindField, []byte{0x18, byte(KindGrant)}), ErrNonCanonical},
		{"HLC 1000 in four bytes, not two", with(early, hlcField, []byte{0x1a, 0, 0, 0x03, 0xe8}), ErrNonCanonical},
		{"version as eight-byte integer", with(op, vField, []byte{0x1b, 0, 0, 0, 0, 0, 0, 0, 1}), ErrNonCanonical},
		{"body length in a longer form", with(op, bodyField, []byte{0x58, 3, 1, 2, 3}), ErrNonCanonical},
		{"31-byte author", with(op, authorField, bstrItem(op.Author[:31])), ErrMalformed},
		{"33-byte author", with(op, authorField, bstrItem(append(op.Author[:], 0))), ErrMalformed},
		{"63-byte sig", with(op, sigField, bstrItem(op.Sig[:63])), ErrMalformed},
		{"null body", with(op, bodyField, []byte{0xf6}), ErrMalformed},
		{"null author", with(op, authorField, []byte{0xf6}), ErrMalformed},
		{"version 2", with(op, vField, uintItem(2)), ErrVersion},
		{"version 0", with(op, vField, uintItem(0)), ErrVersion},
		{"kind 0", with(op, kindField, uintItem(0)), ErrKind},
		{"kind 8", with(op, kindField, uintItem(8)), ErrKind},
		{"kind 255", with(op, kindField, uintItem(255)), ErrKind},
	}
	for _, c := range cases {
		got, err := Decode(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Decode = %v, want %v", c.name, err, c.want)
		}
		if got != nil {
			t.Errorf("%s: Decode returned an op with its error", c.name)
		}
	}
}

// The body is opaque bytes: a body whose own CBOR is not canonical (here a
// map with unsorted keys) is the body's business, not the envelope's.
func TestDecodeAcceptsNonCanonicalBody(t *testing.T) {
	unsorted := []byte{0xa2, 0x62, 'z', 'z', 0x01, 0x61, 'a', 0x02} // {"zz":1,"a":2}
	op := mustSign(t, KindLoad, testHLC, unsorted)
	got, err := Decode(op.Bytes())
	if err != nil || !bytes.Equal(got.Body, unsorted) {
		t.Fatalf("Decode = %v, %v", got, err)
	}
}

func TestSizeLimit(t *testing.T) {
	// An empty-body op is 1+1+1+34+9+1+66 = 113 bytes at this HLC; a body
	// of 256 to 65535 bytes has a 3-byte head instead of 1.
	overhead := len(mustSign(t, KindLoad, testHLC, []byte{}).Bytes()) + 2
	atLimit := make([]byte, MaxOpBytes-overhead)
	op, err := Sign(testCluster, rootKey, KindLoad, testHLC, atLimit)
	if err != nil {
		t.Fatalf("Sign refused an op of exactly MaxOpBytes: %v", err)
	}
	if n := len(op.Bytes()); n != MaxOpBytes {
		t.Fatalf("op is %d bytes, the test meant %d", n, MaxOpBytes)
	}
	if _, err := Decode(op.Bytes()); err != nil {
		t.Errorf("Decode refused an op of exactly MaxOpBytes: %v", err)
	}
	if _, err := Sign(testCluster, rootKey, KindLoad, testHLC, append(atLimit, 0)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Sign one byte over the limit = %v, want ErrTooLarge", err)
	}
	if _, err := Sign(testCluster, rootKey, Kind(0), testHLC, nil); !errors.Is(err, ErrKind) {
		t.Errorf("Sign of kind 0 = %v, want ErrKind", err)
	}
}

// The encoding is plain core deterministic CBOR: fxamacker's default
// decoder reads it, and its core deterministic encoder writes it back
// byte for byte. Other implementations can therefore check our ops.
func TestEncodingIsCoreDeterministicCBOR(t *testing.T) {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range Kinds() {
		b := mustSign(t, kind, testHLC, grantBody).Bytes()
		var generic any
		if err := cbor.Unmarshal(b, &generic); err != nil {
			t.Fatalf("%s: fxamacker's decoder refuses our op: %v", kind, err)
		}
		again, err := em.Marshal(generic)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoded with CoreDetEncOptions:\n%x\nours:\n%x", kind, again, b)
		}
		var op Op
		if err := cbor.Unmarshal(b, &op); err != nil || op.Kind != kind || op.HLC != testHLC {
			t.Errorf("%s: plain Unmarshal into Op = %+v, %v", kind, op, err)
		}
	}
}

// OrderKey is what the store sorts by; it must agree with Compare exactly,
// including the author and ID tie-breaks.
func TestOrderKeyAgreesWithCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	keys := []ed25519.PrivateKey{testKey(1), testKey(2), testKey(3)}
	ops := make([]*Op, 300)
	for i := range ops {
		hlc := NewHLC(1_763_730_000_000+r.Int64N(3), uint16(r.IntN(3)))
		body := []byte{byte(r.IntN(4))}
		op, err := Sign(testCluster, keys[r.IntN(len(keys))], Kinds()[r.IntN(len(Kinds()))], hlc, body)
		if err != nil {
			t.Fatal(err)
		}
		ops[i] = op
	}
	for _, a := range ops {
		for _, b := range ops {
			ka, kb := OrderKey(a, a.ID()), OrderKey(b, b.ID())
			if c, k := Compare(a, b, a.ID(), b.ID()), bytes.Compare(ka[:], kb[:]); c != k {
				t.Fatalf("Compare = %d, bytes.Compare of OrderKeys = %d\n%+v\n%+v", c, k, a, b)
			}
		}
	}
	// HLC decides before the author does.
	early, _ := Sign(testCluster, testKey(9), KindLoad, testHLC, nil)
	late, _ := Sign(testCluster, testKey(1), KindLoad, testHLC+1, nil)
	if Compare(early, late, early.ID(), late.ID()) != -1 {
		t.Error("an op with a smaller HLC does not order first")
	}
}
