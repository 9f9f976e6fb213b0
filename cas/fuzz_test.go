package cas

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets for the two decoders that read what a peer sends: the
// request a server reads and the header a client reads. Neither may panic,
// read past its fixed size, or accept bytes that do not encode back to
// themselves; every error must be a protocol violation.

var update = flag.Bool("update", false, "rewrite the cas fuzz seed corpora under testdata/fuzz/cas")

// fuzzCorpus holds each target's seeds as raw *.bin files, in the top-level
// testdata/ with the project's other corpora; the targets add them
// explicitly. What the fuzzer finds still lands in cas/testdata/fuzz.
const fuzzCorpus = "../testdata/fuzz/cas"

func fuzzSeeds() map[string]map[string][]byte {
	d := sha256.Sum256([]byte("hello.wasm"))
	req := request{digest: d, offset: 1 << 20}.encode()
	withVersion := func(b []byte, v byte) []byte { b = bytes.Clone(b); b[0] = v; return b }
	requests := map[string][]byte{
		"valid-from-zero":   request{digest: d}.encode(),
		"valid-resume":      req,
		"valid-max-offset":  request{digest: d, offset: 1<<63 - 1}.encode(),
		"valid-trailing":    append(bytes.Clone(req), "more"...),
		"bad-empty":         {},
		"bad-short":         req[:20],
		"bad-one-short":     req[:requestSize-1],
		"bad-version":       withVersion(req, 2),
		"bad-version-zero":  withVersion(req, 0),
		"bad-offset-sign":   append(bytes.Clone(req[:33]), 0x80, 0, 0, 0, 0, 0, 0, 0),
		"bad-offset-all-ff": append(bytes.Clone(req[:33]), bytes.Repeat([]byte{0xff}, 8)...),
	}
	ok := response{status: statusOK, size: 5 << 20}.encode()
	withStatus := func(st byte, size uint64) []byte {
		b := bytes.Clone(ok)
		b[1] = st
		for i := range 8 {
			b[2+i] = byte(size >> (56 - 8*i))
		}
		return b
	}
	responses := map[string][]byte{
		"valid-ok":               ok,
		"valid-ok-empty":         response{status: statusOK}.encode(),
		"valid-not-found":        response{status: statusNotFound}.encode(),
		"valid-failed":           response{status: statusFailed}.encode(),
		"valid-beyond-end":       response{status: statusBeyondEnd, size: 10}.encode(),
		"valid-ok-then-body":     append(bytes.Clone(ok), "body bytes"...),
		"bad-empty":              {},
		"bad-short":              ok[:5],
		"bad-version":            withVersion(ok, 7),
		"bad-unknown-status":     withStatus(4, 0),
		"bad-status-ff":          withStatus(0xff, 1),
		"bad-not-found-has-size": withStatus(statusNotFound, 3),
		"bad-size-sign":          withStatus(statusOK, 1<<63),
	}
	return map[string]map[string][]byte{
		"FuzzBlobRequest":        requests,
		"FuzzBlobResponseHeader": responses,
	}
}

// TestCASFuzzCorpus keeps the stored corpora in step with fuzzSeeds;
// `go test ./cas -run TestCASFuzzCorpus -update` rewrites them.
func TestCASFuzzCorpus(t *testing.T) {
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join(fuzzCorpus, target)
		for name, b := range seeds {
			path := filepath.Join(dir, name+".bin")
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, b) {
				t.Errorf("%s is missing or stale; run 'go test ./cas -run TestCASFuzzCorpus -update'", path)
			}
		}
	}
}

// addCorpus adds a target's seeds and stored corpus.
func addCorpus(f *testing.F, target string) {
	for _, b := range fuzzSeeds()[target] {
		f.Add(b)
	}
	files, err := filepath.Glob(filepath.Join(fuzzCorpus, target, "*.bin"))
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
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

func FuzzBlobRequest(f *testing.F) {
	addCorpus(f, "FuzzBlobRequest")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{r: bytes.NewReader(data)}
		q, err := readRequest(r)
		if r.n > requestSize {
			t.Fatalf("read %d bytes of a %d-byte request", r.n, requestSize)
		}
		if err != nil {
			if !errors.Is(err, errBlobProtocol) {
				t.Fatalf("error %v is not a protocol violation", err)
			}
			return
		}
		if q.offset < 0 {
			t.Fatalf("accepted a negative offset %d", q.offset)
		}
		if !bytes.Equal(q.encode(), data[:requestSize]) {
			t.Fatal("an accepted request does not encode back to its bytes")
		}
	})
}

func FuzzBlobResponseHeader(f *testing.F) {
	addCorpus(f, "FuzzBlobResponseHeader")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{r: bytes.NewReader(data)}
		h, err := readResponse(r)
		if r.n > responseSize {
			t.Fatalf("read %d bytes of a %d-byte header", r.n, responseSize)
		}
		if err != nil {
			if !errors.Is(err, errBlobProtocol) {
				t.Fatalf("error %v is not a protocol violation", err)
			}
			return
		}
		switch {
		case h.status > statusBeyondEnd:
			t.Fatalf("accepted status %d", h.status)
		case h.size < 0:
			t.Fatalf("accepted a negative size %d", h.size)
		case (h.status == statusNotFound || h.status == statusFailed) && h.size != 0:
			t.Fatalf("accepted status %d with size %d", h.status, h.size)
		}
		if !bytes.Equal(h.encode(), data[:responseSize]) {
			t.Fatal("an accepted header does not encode back to its bytes")
		}
	})
}
