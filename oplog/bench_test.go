package oplog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Each hot path is measured beside its floor: the bare library call it cannot
// beat. The gap between the two is what the envelope costs. The body is 256
// bytes, the size of a typical load report.

var benchBody = bytes.Repeat([]byte{0xa5}, 256)

func benchOp(b *testing.B) *Op {
	return mustSign(b, KindLoad, testHLC, benchBody)
}

// opsPerSec reports throughput alongside ns/op, for the README.
func opsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkSign(b *testing.B) {
	for b.Loop() {
		if _, err := Sign(testCluster, rootKey, KindLoad, testHLC, benchBody); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkFloorEd25519Sign(b *testing.B) {
	msg := signedMessage(testCluster, must(benchOp(b).unsignedBytes()))
	for b.Loop() {
		ed25519.Sign(rootKey, msg)
	}
	opsPerSec(b)
}

func BenchmarkVerify(b *testing.B) {
	op := benchOp(b)
	for b.Loop() {
		if err := op.Verify(testCluster); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkFloorEd25519Verify(b *testing.B) {
	op := benchOp(b)
	msg := signedMessage(testCluster, must(op.unsignedBytes()))
	for b.Loop() {
		if !ed25519.Verify(op.Author[:], msg, op.Sig[:]) {
			b.Fatal("bad signature")
		}
	}
	opsPerSec(b)
}

func BenchmarkDecode(b *testing.B) {
	data := benchOp(b).Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

// BenchmarkFloorCBORUnmarshal is fxamacker's default decoder on the same
// bytes into the same struct, with none of Decode's checks.
func BenchmarkFloorCBORUnmarshal(b *testing.B) {
	data := benchOp(b).Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var op Op
		if err := cbor.Unmarshal(data, &op); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkEncode(b *testing.B) {
	op := benchOp(b)
	for b.Loop() {
		op.Bytes()
	}
	opsPerSec(b)
}

// BenchmarkID measures an op whose ID is not cached, such as one built by
// hand; Sign and Decode cache it, making ID() free afterwards.
func BenchmarkID(b *testing.B) {
	op := *benchOp(b)
	op.id = ID{}
	for b.Loop() {
		op.ID()
	}
	opsPerSec(b)
}

func BenchmarkFloorSHA256(b *testing.B) {
	msg := must(benchOp(b).unsignedBytes())
	for b.Loop() {
		sha256.Sum256(msg)
	}
	opsPerSec(b)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
