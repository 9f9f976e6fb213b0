package reducers

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// FuzzDecodeBody feeds DecodeBody any kind byte and any body bytes, as a
// peer could. It must never panic, and a body it accepts must be a fixed
// point after one re-encoding: encode, decode, encode again gives the same
// bytes and the same value. (The first re-encoding may differ from the input:
// the decoder accepts, say, an explicitly empty map where the encoder omits
// the field; both mean the same body.)
//
//	go test ./reducers -run '^$' -fuzz FuzzDecodeBody -fuzztime 1m
func FuzzDecodeBody(f *testing.F) {
	for _, b := range validBodies() {
		enc, err := EncodeBody(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(KindOf(b)), enc)
	}
	f.Add(byte(oplog.KindLoad), []byte{0xa0})
	f.Add(byte(oplog.KindSeed), encode(f, &Seed{Name: "x"})) // decodes, does not validate
	f.Add(byte(0), []byte{})
	f.Add(byte(200), []byte{0xa0})

	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		in := bytes.Clone(body)
		b, err := DecodeBody(&oplog.Op{Kind: oplog.Kind(kind), Body: body})
		if !bytes.Equal(body, in) {
			t.Fatal("DecodeBody changed its input")
		}
		if err != nil {
			if b != nil {
				t.Fatal("DecodeBody returned a body with an error")
			}
			return
		}
		if k := KindOf(b); k != oplog.Kind(kind) {
			t.Fatalf("a %s body decoded as %T", oplog.Kind(kind), b)
		}
		enc, err := EncodeBody(b)
		if err != nil {
			t.Fatalf("a body that decoded does not encode: %v\n%+v", err, b)
		}
		b2, err := DecodeBody(&oplog.Op{Kind: oplog.Kind(kind), Body: enc})
		if err != nil {
			t.Fatalf("our own encoding does not decode: %v\n%x", err, enc)
		}
		enc2, err := EncodeBody(b2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
		}
		b3, err := DecodeBody(&oplog.Op{Kind: oplog.Kind(kind), Body: enc2})
		if err != nil || !reflect.DeepEqual(b2, b3) {
			t.Fatalf("decode(encode(x)) is not a fixed point:\n%+v\n%+v (%v)", b2, b3, err)
		}
	})
}
