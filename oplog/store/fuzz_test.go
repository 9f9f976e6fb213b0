package store

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

var update = flag.Bool("update", false, "rewrite the FuzzLogReader seed corpus in "+seedDir)

// seedDir holds FuzzLogReader's seeds as plain files, shared with other tools.
const seedDir = "../../testdata/fuzz/store/FuzzLogReader"

// seedLogs are the log files FuzzLogReader starts from: one of each shape the
// reader must handle. They are deterministic (ed25519 signing is).
func seedLogs(t testing.TB) map[string][]byte {
	ops := manyOps(3)
	var valid bytes.Buffer
	lw, err := NewLogWriter(&valid, LogHeader{Cluster: testCluster, Node: ops[0].Author, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		lw.Write(op)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	v := valid.Bytes()
	var empty bytes.Buffer
	lw, _ = NewLogWriter(&empty, LogHeader{Cluster: testCluster})
	lw.Close()
	hdr := empty.Len()
	damaged := bytes.Clone(v)
	damaged[hdr+60] ^= 0xff
	newer := bytes.Replace(bytes.Clone(v), []byte("pln-log/1"), []byte("pln-log/2"), 1)
	return map[string][]byte{
		"valid.bin":        v,
		"empty-log.bin":    empty.Bytes(),
		"cut.bin":          v[:len(v)-7],
		"damaged-op.bin":   damaged,
		"trailing.bin":     append(bytes.Clone(v), 0x40),
		"huge-frame.bin":   append(bytes.Clone(v[:hdr]), 0x5b, 0, 0, 0, 1, 0, 0, 0, 0),
		"newer-format.bin": newer,
	}
}

// The checked-in seeds match what seedLogs makes; -update rewrites them.
func TestFuzzSeedsAreCurrent(t *testing.T) {
	for name, want := range seedLogs(t) {
		path := filepath.Join(seedDir, name)
		if *update {
			if err := os.MkdirAll(seedDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("seed %s is missing or stale (%v); run: go test ./oplog/store -run TestFuzzSeedsAreCurrent -update", path, err)
		}
	}
}

// FuzzLogReader: any byte string, however hostile, gives frames within bounds
// or an ErrBadLog, never a panic, and costs memory in proportion to its length
// plus one frame, whatever lengths it claims.
func FuzzLogReader(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join(seedDir, "*.bin"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in %s (%v); run TestFuzzSeedsAreCurrent with -update", seedDir, err)
	}
	for _, path := range seeds {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		lr, err := NewLogReader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadLog) {
				t.Fatalf("header error %v does not wrap ErrBadLog", err)
			}
			return
		}
		for i := 1; ; i++ {
			pos, raw, err := lr.Next()
			if err == io.EOF {
				if uint64(i-1) != lr.Header().Count {
					t.Fatalf("clean end after %d ops, header says %d", i-1, lr.Header().Count)
				}
				break
			}
			if err != nil {
				if !errors.Is(err, ErrBadLog) {
					t.Fatalf("frame error %v does not wrap ErrBadLog", err)
				}
				break
			}
			if pos != i || len(raw) > oplog.MaxOpBytes+16 || lr.Offset() > int64(len(data)) {
				t.Fatalf("frame %d: pos %d, %d bytes, offset %d of %d", i, pos, len(raw), lr.Offset(), len(data))
			}
		}
		runtime.ReadMemStats(&after)
		if grew, limit := after.TotalAlloc-before.TotalAlloc, uint64(2*len(data)+256<<10); grew > limit {
			t.Fatalf("reading %d bytes allocated %d (limit %d)", len(data), grew, limit)
		}
	})
}
