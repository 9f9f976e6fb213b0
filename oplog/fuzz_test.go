package oplog

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the FuzzDecode seed corpus under testdata/")

// corpusDir holds FuzzDecode's seed corpus as raw *.bin files. It lives in
// the top-level testdata/ with the project's other corpora, not where go test
// looks by itself, so FuzzDecode adds the files explicitly. Inputs the fuzzer
// finds still land in oplog/testdata/fuzz/FuzzDecode, as usual.
const corpusDir = "../testdata/fuzz/oplog/FuzzDecode"

// decodeSeeds are the inputs FuzzDecode starts from: a valid op of every
// kind, and one of each way an op can be malformed, so the fuzzer begins at
// every branch of Decode.
func decodeSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, kind := range Kinds() {
		seeds["valid-"+kind.String()] = mustSign(t, kind, testHLC, grantBody).Bytes()
	}
	op := mustSign(t, KindLoad, 1000, []byte{1, 2, 3})
	seeds["valid-empty-body"] = mustSign(t, KindClaim, testHLC, nil).Bytes()
	seeds["valid-1KiB-body"] = mustSign(t, KindSeed, testHLC, bytes.Repeat([]byte{0xa5}, 1024)).Bytes()
	seeds["valid-small-hlc"] = op.Bytes()
	seeds["bad-trailing-byte"] = append(op.Bytes(), 0)
	seeds["bad-truncated"] = op.Bytes()[:50]
	seeds["bad-indefinite-array"] = slices.Concat([]byte{0x9f}, slices.Concat(fields(op)...), []byte{0xff})
	seeds["bad-five-fields"] = arrayOf(fields(op)[:5]...)
	seeds["bad-null-body"] = with(op, 4, []byte{0xf6})
	seeds["bad-31-byte-author"] = with(op, 2, bstrItem(op.Author[:31]))
	seeds["bad-long-hlc"] = with(op, 3, []byte{0x1a, 0, 0, 0x03, 0xe8})
	seeds["bad-version-2"] = with(op, 0, uintItem(2))
	seeds["bad-kind-0"] = with(op, 1, uintItem(0))
	seeds["bad-kind-8"] = with(op, 1, uintItem(8))
	seeds["bad-tagged"] = append([]byte{0xd8, 55}, op.Bytes()...)
	return seeds
}

// TestFuzzDecodeCorpus keeps the stored corpus in step with decodeSeeds;
// `go test ./oplog -run TestFuzzDecodeCorpus -update` rewrites it.
func TestFuzzDecodeCorpus(t *testing.T) {
	for name, b := range decodeSeeds(t) {
		path := filepath.Join(corpusDir, name+".bin")
		if *update {
			if err := os.MkdirAll(corpusDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is missing or stale; run 'go test ./oplog -run TestFuzzDecodeCorpus -update'", path)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.bin"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := slices.Clone(data) // Decode must not keep or change its input
		op, err := Decode(data)
		if err != nil {
			if op != nil {
				t.Fatal("Decode returned an op with an error")
			}
			for _, sentinel := range []error{ErrMalformed, ErrTooLarge, ErrNonCanonical, ErrVersion, ErrKind} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("Decode error wraps no sentinel: %v", err)
		}
		// One op, one encoding.
		b := op.Bytes()
		if !bytes.Equal(b, in) {
			t.Fatalf("accepted input does not re-encode to itself:\nin  %x\nout %x", in, b)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decoding our own encoding: %v", err)
		}
		if again.V != op.V || again.Kind != op.Kind || again.Author != op.Author || again.HLC != op.HLC ||
			!bytes.Equal(again.Body, op.Body) || again.Sig != op.Sig {
			t.Fatalf("re-decoded op differs:\n%+v\n%+v", again, op)
		}
		// The ID is a function of the fields alone, cached or not.
		hand := &Op{V: op.V, Kind: op.Kind, Author: op.Author, HLC: op.HLC, Body: slices.Clone(op.Body), Sig: op.Sig}
		if again.ID() != op.ID() || hand.ID() != op.ID() {
			t.Fatalf("ID is not deterministic: %s %s %s", op.ID(), again.ID(), hand.ID())
		}
		for i := range data {
			data[i] ^= 0xff
		}
		if !bytes.Equal(op.Bytes(), in) {
			t.Fatal("the decoded op shares memory with its input")
		}
		_ = op.Verify(testCluster) // must not panic on any decodable op
	})
}

func FuzzParseHLC(f *testing.F) {
	for _, s := range []string{
		testHLC.String(), strconv.FormatUint(uint64(testHLC), 10), "0", "18446744073709551615",
		"2026-11-21T13:00:00Z", "2026-11-21T13:00:00.123456789-07:00", "2026-11-21T13:00:00Z+65535",
		"2026-11-21T13:00:00Z+65536", "", "+", "garbage", "9999-12-31T23:59:59.999Z+1",
	} {
		f.Add(s)
	}
	// The largest wall time String can print in a form ParseHLC reads back:
	// RFC 3339 has four-digit years, the 48-bit wall part reaches 10889.
	maxRFC3339 := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHLC(s)
		if err != nil {
			if !strings.Contains(err.Error(), "RFC 3339") {
				t.Fatalf("error does not say what is expected: %v", err)
			}
			return
		}
		raw := strconv.FormatUint(uint64(h), 10)
		if got, err := ParseHLC(raw); err != nil || got != h {
			t.Fatalf("ParseHLC(%q) = %d; its integer form %s reads back as %d, %v", s, uint64(h), raw, uint64(got), err)
		}
		// A raw integer HLC may have a wall time beyond year 9999, which
		// String cannot print as RFC 3339.
		if h.Wall() > maxRFC3339 {
			return
		}
		if got, err := ParseHLC(h.String()); err != nil || got != h {
			t.Fatalf("ParseHLC(%q) = %v; String does not read back: %v, %v", s, h, got, err)
		}
	})
}

// FuzzDecodeMatchesReference holds the hand-written envelope parser to the
// definition in DESIGN.md: an op is accepted exactly when fxamacker's strict
// decoder reads it and its core deterministic encoder writes it back
// unchanged (with a known version and kind, and a body that is not null).
func FuzzDecodeMatchesReference(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		ref := new(Op)
		refOK := decMode.Unmarshal(b, ref) == nil && ref.V == Version && ref.Kind.Valid() &&
			ref.Body != nil && len(b) <= MaxOpBytes && bytes.Equal(ref.encode(), b)
		if (err == nil) != refOK {
			t.Fatalf("Decode(%x): err=%v, reference accepts=%v", b, err, refOK)
		}
		if err == nil && (got.Kind != ref.Kind || got.Author != ref.Author || got.HLC != ref.HLC ||
			!bytes.Equal(got.Body, ref.Body) || got.Sig != ref.Sig) {
			t.Fatalf("Decode(%x) = %+v, reference %+v", b, got, ref)
		}
	})
}
