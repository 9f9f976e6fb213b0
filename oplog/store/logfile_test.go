package store

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// readAll drains a log reader, decoding and verifying each op the way an
// importer does: bad ops are skipped and reported by position.
func readAll(t *testing.T, log []byte) (h LogHeader, good []*oplog.Op, bad []int, err error) {
	t.Helper()
	lr, err := NewLogReader(bytes.NewReader(log))
	if err != nil {
		return h, nil, nil, err
	}
	h = lr.Header()
	for {
		pos, raw, err := lr.Next()
		if err == io.EOF {
			return h, good, bad, nil
		}
		if err != nil {
			return h, good, bad, err
		}
		op, derr := oplog.Decode(raw)
		if derr == nil {
			derr = op.Verify(h.Cluster)
		}
		if derr != nil {
			bad = append(bad, pos)
			continue
		}
		good = append(good, op)
	}
}

// exportOf makes a store holding ops and returns its export.
func exportOf(t *testing.T, ops []*oplog.Op) []byte {
	t.Helper()
	s := openTemp(t, true)
	mustAppend(t, s, ops...)
	var buf bytes.Buffer
	n, err := s.Export(&buf, LogHeader{Cluster: testCluster, Node: oplog.KeyOf(testKey(1)), Count: 999})
	if err != nil || n != len(ops) {
		t.Fatalf("Export = %d, %v; want %d ops", n, err, len(ops))
	}
	return buf.Bytes()
}

func TestLogExportImportRoundTrip(t *testing.T) {
	ops := manyOps(50)
	// Arrival order differs from total order here, and must be kept.
	shuffled := append(slices.Clone(ops[25:]), ops[:25]...)
	log := exportOf(t, shuffled)

	h, good, bad, err := readAll(t, log)
	if err != nil || len(bad) != 0 {
		t.Fatalf("reading the export: %v, bad ops %v", err, bad)
	}
	if h.Cluster != testCluster || h.Node != oplog.KeyOf(testKey(1)) || h.Count != 50 {
		t.Errorf("header = %+v; want the cluster, node 1 and count 50", h)
	}
	if !slices.Equal(idsOf(good), idsOf(shuffled)) {
		t.Fatal("ops read back differ from the ops exported, or their order does")
	}

	imported := openTemp(t, true)
	mustAppend(t, imported, good...)
	if got, _ := arrivalIDs(t, imported, 1); !slices.Equal(got, idsOf(shuffled)) {
		t.Error("imported store's arrival order differs from the source's")
	}
	var again bytes.Buffer
	if _, err := imported.Export(&again, h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), log) {
		t.Error("export → import → export is not byte-identical")
	}
}

func TestLogWriterChecksCount(t *testing.T) {
	ops := manyOps(2)
	lw, err := NewLogWriter(io.Discard, LogHeader{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	lw.Write(ops[0])
	if err := lw.Close(); err == nil {
		t.Error("Close after 1 of 2 announced ops succeeded")
	}
	lw, _ = NewLogWriter(io.Discard, LogHeader{Count: 1})
	lw.Write(ops[0])
	if err := lw.Write(ops[1]); err == nil {
		t.Error("writing a 2nd op into a log announced as 1 op succeeded")
	}
}

// Cut anywhere, a log reads as far as it is intact and then says where it
// ends; the ops before the cut are still delivered.
func TestLogCutShort(t *testing.T) {
	ops := manyOps(5)
	log := exportOf(t, ops)
	frame := (len(log) - headerLen(t, log)) / 5 // all ops here are the same size
	hdr := headerLen(t, log)
	for _, cut := range []int{1, hdr / 2, hdr, hdr + 1, hdr + 2, hdr + frame, hdr + 2*frame + 40, len(log) - 1} {
		_, good, _, err := readAll(t, log[:cut])
		if !errors.Is(err, ErrBadLog) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: error %v, want ErrBadLog and io.ErrUnexpectedEOF", cut, err)
			continue
		}
		if cut > hdr && !strings.Contains(err.Error(), "byte") {
			t.Errorf("cut at %d: error %q should give the byte offset", cut, err)
		}
		var le *LogError
		if cut > hdr && (!errors.As(err, &le) || le.Pos != len(good)+1) {
			t.Errorf("cut at %d: error %v, want a *LogError at op %d", cut, err, len(good)+1)
		}
		if wantGood := max(0, cut-hdr) / frame; len(good) != wantGood {
			t.Errorf("cut at %d: %d ops delivered before the cut, want %d", cut, len(good), wantGood)
		}
	}
	_, _, _, err := readAll(t, log[:hdr+2*frame])
	if err == nil || !strings.Contains(err.Error(), "after 2 of 5 ops") {
		t.Errorf("cut between ops 2 and 3: error %v, want one saying it ends after 2 of 5 ops", err)
	}
}

func headerLen(t *testing.T, log []byte) int {
	lr, err := NewLogReader(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	return int(lr.Offset())
}

// One op's bytes damaged inside its frame: the framing still holds, so the
// reader hands over every frame and the caller drops just that op.
func TestLogDamagedOpIsSkippable(t *testing.T) {
	ops := manyOps(5)
	log := exportOf(t, ops)
	hdr := headerLen(t, log)
	frame := (len(log) - hdr) / 5
	for _, at := range []int{10, 60, frame - 1} { // author, body, signature
		damaged := bytes.Clone(log)
		damaged[hdr+2*frame+at] ^= 0x01
		_, good, bad, err := readAll(t, damaged)
		if err != nil {
			t.Fatalf("byte %d of op 3 flipped: reader failed: %v", at, err)
		}
		if !slices.Equal(bad, []int{3}) || !slices.Equal(idsOf(good), idsOf(slices.Delete(slices.Clone(ops), 2, 3))) {
			t.Errorf("byte %d of op 3 flipped: bad %v and %d good; want bad [3] and the other 4", at, bad, len(good))
		}
	}
}

func TestLogDamagedFraming(t *testing.T) {
	log := exportOf(t, manyOps(3))
	hdr := headerLen(t, log)
	frame := (len(log) - hdr) / 3
	for name, damage := range map[string]func(b []byte) []byte{
		"text string frame": func(b []byte) []byte { b[hdr+frame] = 0x79; return b },
		"indefinite length": func(b []byte) []byte { b[hdr+frame] = 0x5f; return b },
		"trailing data":     func(b []byte) []byte { return append(b, 0x40) },
		"huge declared frame": func(b []byte) []byte {
			return append(b[:hdr+frame], 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		},
	} {
		lr, err := NewLogReader(bytes.NewReader(damage(bytes.Clone(log))))
		if err != nil {
			t.Fatal(err)
		}
		var ferr error
		for range 5 {
			if _, _, ferr = lr.Next(); ferr != nil {
				break
			}
		}
		var le *LogError
		if !errors.As(ferr, &le) || le.Pos != 2 && name != "trailing data" || !strings.Contains(ferr.Error(), "byte") {
			t.Errorf("%s: error %v, want a *LogError at op 2 giving the byte offset", name, ferr)
		}
		if _, _, again := lr.Next(); again != ferr {
			t.Errorf("%s: error not sticky: then %v", name, again)
		}
	}
}

// A frame that claims to be huge is refused before anything is allocated for
// it.
func TestLogHugeFrameAllocatesNothing(t *testing.T) {
	log := exportOf(t, manyOps(1))
	hdr := headerLen(t, log)
	huge := append(bytes.Clone(log[:hdr]), 0x5a, 0x7f, 0xff, 0xff, 0xff) // 2 GiB byte string
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, _, err := readAll(t, huge)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadLog) || !strings.Contains(err.Error(), "larger than any op") {
		t.Errorf("error %v, want one about a frame larger than any op", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("reading a 2 GiB frame header allocated %d bytes", grew)
	}
}

func TestLogHeaderProblems(t *testing.T) {
	enc := func(v any) []byte {
		b, err := logEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	zero := make([]byte, 32)
	for name, tc := range map[string]struct {
		file []byte
		want string
	}{
		"empty":              {nil, "not a pln log file"},
		"text":               {[]byte("hello\n"), "not a pln log file"},
		"cbor array":         {enc([]int{1, 2}), "not a pln log file"},
		"other format":       {enc(logHeaderWire{Format: "tar", Cluster: zero, Node: zero}), `not a pln log file: format "tar"`},
		"newer format":       {enc(logHeaderWire{Format: "pln-log/2", Cluster: zero, Node: zero}), "log format pln-log/2 is newer than this build"},
		"short key":          {enc(logHeaderWire{Format: logFormat, Cluster: zero[:5], Node: zero}), "not a pln log file"},
		"cut header":         {enc(logHeaderWire{Format: logFormat, Cluster: zero, Node: zero, Count: new(uint64)})[:40], "cut short"},
		"newer, other shape": {enc(map[string]any{"format": "pln-log/3", "count": "many"}), "log format pln-log/3 is newer"},
		"no count":           {enc(logHeaderWire{Format: logFormat, Cluster: zero, Node: zero}), "no count"},
		"oversized header": {append(enc(map[string]any{"format": logFormat, "pad": strings.Repeat("x", 2*maxHeaderBytes)}), 0x40),
			"not a pln log file"},
	} {
		_, err := NewLogReader(bytes.NewReader(tc.file))
		if !errors.Is(err, ErrBadLog) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrBadLog saying %q", name, err, tc.want)
		}
	}
	// Unknown header fields are ignored: a later pln-log/1 writer may add some.
	ok := enc(map[string]any{"format": logFormat, "cluster": zero, "node": zero, "count": 0, "note": "hi"})
	if _, err := NewLogReader(bytes.NewReader(ok)); err != nil {
		t.Errorf("header with an extra field: %v", err)
	}
}
