package netx

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Fuzz targets for every decoder that reads bytes from a peer: frames, the
// push stream, the join request, the op frames of a sync session and the
// call protocol's requests and replies. None
// may panic, none may allocate more than its frame limit for any input, and
// every error must be one that disconnects the peer.

var update = flag.Bool("update", false, "rewrite the netx fuzz seed corpora under testdata/fuzz/netx")

// fuzzCorpus holds each target's seeds as raw *.bin files, in the top-level
// testdata/ with the project's other corpora; the targets add them
// explicitly. What the fuzzer finds still lands in netx/testdata/fuzz.
const fuzzCorpus = "../testdata/fuzz/netx"

// Fixed keys and times, so that the seeds are the same bytes on every run
// (ed25519 signatures are deterministic).
var (
	fuzzRoot    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	fuzzMember  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	fuzzCluster = oplog.ClusterOf(oplog.KeyOf(fuzzRoot))
	fuzzHLC     = oplog.NewHLC(1_800_000_000_000, 0)
)

// fuzzOp signs b as priv for cluster at fuzzHLC+i.
func fuzzOp(tb testing.TB, cluster oplog.ClusterID, priv ed25519.PrivateKey, i int, b reducers.Body) *oplog.Op {
	tb.Helper()
	body, err := reducers.EncodeBody(b)
	if err != nil {
		tb.Fatal(err)
	}
	op, err := oplog.Sign(cluster, priv, reducers.KindOf(b), fuzzHLC+oplog.HLC(i), body)
	if err != nil {
		tb.Fatal(err)
	}
	return op
}

// fuzzOps are valid ops of the fuzz cluster, and one for another cluster.
func fuzzOps(tb testing.TB) (good []*oplog.Op, foreign *oplog.Op) {
	member := oplog.KeyOf(fuzzMember)
	good = []*oplog.Op{
		fuzzOp(tb, fuzzCluster, fuzzRoot, 0, &reducers.Genesis{Name: "fuzz", Root: oplog.KeyOf(fuzzRoot), Params: reducers.DefaultParams()}),
		fuzzOp(tb, fuzzCluster, fuzzRoot, 1, &reducers.Grant{Subject: member, Tier: reducers.TierPublisher}),
		fuzzOp(tb, fuzzCluster, fuzzMember, 2, &reducers.Seed{Name: "web", Kind: reducers.SeedWASM, Digest: sha256.Sum256([]byte("web")), MinReplicas: 1, MaxReplicas: 2}),
		fuzzOp(tb, fuzzCluster, fuzzMember, 3, &reducers.Load{Node: member, CPUMilli: 4000, Addrs: []string{"127.0.0.1:60611"}}),
	}
	var other oplog.ClusterID
	other[0] = 0xee
	foreign = fuzzOp(tb, other, fuzzMember, 4, &reducers.Load{Node: member})
	return good, foreign
}

func frame(payload []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(payload))), payload...)
}

func frames(payloads ...[]byte) []byte {
	var b []byte
	for _, p := range payloads {
		b = append(b, frame(p)...)
	}
	return b
}

func tagged(tag byte, payload []byte) []byte { return append([]byte{tag}, payload...) }

// altered flips the last bit of an op's signature.
func altered(op *oplog.Op) []byte {
	b := slices.Clone(op.Bytes())
	b[len(b)-1] ^= 1
	return b
}

// fuzzSeeds are each target's seed inputs by name.
func fuzzSeeds(tb testing.TB) map[string]map[string][]byte {
	good, foreign := fuzzOps(tb)
	var goodBytes [][]byte
	for _, op := range good {
		goodBytes = append(goodBytes, op.Bytes())
	}
	huge := binary.AppendUvarint(nil, 1<<40)
	overlong := bytes.Repeat([]byte{0xff}, 11)

	// The push stream after its type byte: op frames.
	push := map[string][]byte{
		"valid-ops":           frames(goodBytes...),
		"valid-empty":         {},
		"bad-not-an-op":       frames([]byte("not an op")),
		"bad-op-then-garbage": append(frames(goodBytes[0]), frame([]byte{0x86, 1})...),
		"bad-truncated-op":    frames(goodBytes[1][:40]),
		"bad-huge-length":     huge,
		"bad-overlong-length": overlong,
		"bad-cut-frame":       frame(goodBytes[2])[:30],
		"bad-trailing-byte":   frames(append(slices.Clone(goodBytes[3]), 0)),
	}

	// A sync session's op phase: 'O' frames, then 'E'.
	var syncOps [][]byte
	for _, b := range goodBytes {
		syncOps = append(syncOps, tagged(frameOp, b))
	}
	sync := map[string][]byte{
		"valid-ops-then-end":    frames(append(syncOps, []byte{frameEnd})...),
		"valid-end-only":        frames([]byte{frameEnd}),
		"bad-no-end":            frames(syncOps...),
		"bad-foreign-op":        frames(tagged(frameOp, foreign.Bytes()), []byte{frameEnd}),
		"bad-altered-op":        frames(syncOps[0], tagged(frameOp, altered(good[2])), []byte{frameEnd}),
		"bad-empty-frame":       frames(nil),
		"bad-unknown-kind":      frames(syncOps[0], []byte("Zzz")),
		"bad-reconcile-late":    frames(tagged(frameReconcile, []byte{1, 2, 3})),
		"bad-op-not-decodable":  frames(tagged(frameOp, []byte{0x86}), []byte{frameEnd}),
		"bad-huge-length":       huge,
		"bad-cut-after-op":      frames(syncOps[0])[:20],
		"valid-ops-after-end":   frames([]byte{frameEnd}, syncOps[0]),
		"bad-end-with-trailing": frames(syncOps[1], []byte{frameEnd, 0}),
	}

	// A join stream: the type byte, then one frame holding the request.
	join := func(ops ...[]byte) []byte {
		b, err := oplog.Marshal(joinRequest{Ops: ops})
		if err != nil {
			tb.Fatal(err)
		}
		return append([]byte{StreamJoin}, frame(b)...)
	}
	tooMany := make([][]byte, 65)
	for i := range tooMany {
		tooMany[i] = goodBytes[0]
	}
	joinSeeds := map[string][]byte{
		"valid-chain":          join(goodBytes[:2]...),
		"valid-one-op":         join(goodBytes[0]),
		"bad-no-ops":           join(),
		"bad-too-many-ops":     join(tooMany...),
		"bad-op":               join(goodBytes[0], []byte{1, 2, 3}),
		"bad-wrong-stream":     append([]byte{StreamSync}, join(goodBytes[0])[1:]...),
		"bad-not-cbor":         append([]byte{StreamJoin}, frame([]byte{0xff, 0xfe})...),
		"bad-unknown-field":    append([]byte{StreamJoin}, frame([]byte{0xa1, 0x02, 0x80})...),
		"bad-huge-length":      append([]byte{StreamJoin}, huge...),
		"bad-empty":            {},
		"bad-type-only":        {StreamJoin},
		"bad-ops-not-an-array": append([]byte{StreamJoin}, frame([]byte{0xa1, 0x01, 0x01})...),
	}

	frameSeeds := map[string][]byte{
		"valid-three":       frames([]byte("a"), nil, bytes.Repeat([]byte{7}, 300)),
		"valid-empty":       {},
		"valid-non-minimal": {0x80, 0x00},
		"bad-huge":          huge,
		"bad-over-limit":    binary.AppendUvarint(nil, fuzzFrameLimit+1),
		"bad-overlong":      overlong,
		"bad-cut":           frame(bytes.Repeat([]byte{7}, 300))[:100],
	}
	req := func(r CallRequest) []byte { return appendCallRequest(nil, &r) }
	goodReq := req(CallRequest{Seed: "hello", Fn: "greet", Input: []byte(`{"name":"x"}`), TimeLeftMs: 1000, Chain: []string{"a/b"}, Origin: oplog.KeyOf(fuzzMember)})
	callSeeds := map[string][]byte{
		"valid-request":       goodReq,
		"valid-started":       {replyStarted},
		"valid-output":        append([]byte{replyOutput}, "hi"...),
		"valid-empty-output":  {replyOutput},
		"valid-refused":       append([]byte{replyRefused}, "busy"...),
		"valid-error":         append([]byte{replyError}, "trap"...),
		"bad-no-time":         req(CallRequest{Seed: "hello", Fn: "greet"}),
		"bad-long-chain":      req(CallRequest{Seed: "s", Fn: "f", TimeLeftMs: 1, Chain: make([]string, maxCallChain+1)}),
		"bad-cut":             goodReq[:len(goodReq)/2],
		"bad-huge-name":       binary.AppendUvarint(nil, 1<<40),
		"bad-started-more":    {replyStarted, 1},
		"bad-refused-no-why":  {replyRefused},
		"bad-unknown-kind":    {9, 1, 2},
		"bad-empty":           {},
		"bad-overlong-varint": bytes.Repeat([]byte{0xff}, 11),
	}
	return map[string]map[string][]byte{
		"FuzzCallFrames":  callSeeds,
		"FuzzReadFrame":   frameSeeds,
		"FuzzReadOps":     push,
		"FuzzSyncFrames":  sync,
		"FuzzJoinRequest": joinSeeds,
	}
}

// TestNetxFuzzCorpus keeps the stored corpora in step with fuzzSeeds;
// `go test ./netx -run TestNetxFuzzCorpus -update` rewrites them.
func TestNetxFuzzCorpus(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
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
				t.Errorf("%s is missing or stale; run 'go test ./netx -run TestNetxFuzzCorpus -update'", path)
			}
		}
	}
}

// addCorpus adds a target's seeds and stored corpus.
func addCorpus(f *testing.F, target string) {
	for _, b := range fuzzSeeds(f)[target] {
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

// fuzzFrameLimit is the frame limit FuzzReadFrame reads with: small, so that
// the fuzzer reaches it.
const fuzzFrameLimit = 4096

func FuzzReadFrame(f *testing.F) {
	addCorpus(f, "FuzzReadFrame")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var got [][]byte
		for {
			b, err := readFrame(r, fuzzFrameLimit)
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrFrame) {
					t.Fatalf("error %v is not a framing error", err)
				}
				break
			}
			if len(b) > fuzzFrameLimit {
				t.Fatalf("read a %d-byte frame; the limit is %d", len(b), fuzzFrameLimit)
			}
			got = append(got, b)
		}
		// What was read writes back to frames that read the same.
		var buf bytes.Buffer
		for _, b := range got {
			if err := writeFrame(&buf, b); err != nil {
				t.Fatal(err)
			}
		}
		r = bufio.NewReader(&buf)
		for i, want := range got {
			b, err := readFrame(r, fuzzFrameLimit)
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("frame %d does not round-trip: %v", i, err)
			}
		}
	})
}

func FuzzReadOps(f *testing.F) {
	addCorpus(f, "FuzzReadOps")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 64<<10)
		for range len(data) + 1 { // each round consumes at least one byte or ends
			ops, err := readOps(r, 4)
			if len(ops) > 4 {
				t.Fatalf("readOps returned %d ops; asked for at most 4", len(ops))
			}
			for _, op := range ops {
				if again, derr := oplog.Decode(op.Bytes()); derr != nil || again.ID() != op.ID() {
					t.Fatalf("an op readOps accepted does not decode again: %v", derr)
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrFrame) {
					t.Fatalf("error %v would not disconnect the peer", err)
				}
				return
			}
		}
		t.Fatal("readOps made no progress")
	})
}

// FuzzJoinReply feeds decodeWelcome what a node answers a joiner.
func FuzzJoinReply(f *testing.F) {
	addCorpus(f, "FuzzJoinRequest") // any CBOR-ish bytes will do as seeds
	good, _ := oplog.Marshal(joinReply{Addrs: []string{"127.0.0.1:1"}})
	f.Add(good)
	bad, _ := oplog.Marshal(joinReply{Error: "invite already redeemed"})
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		w, refusal, err := decodeWelcome(data)
		if err != nil && (w != nil || refusal != "") {
			t.Fatal("a result returned with an error")
		}
		if err == nil && (w == nil) == (refusal == "") {
			t.Fatalf("want exactly one of a welcome and a refusal: %v, %q", w, refusal)
		}
		if w != nil && (len(w.Addrs) > maxWelcomeAddrs || len(w.Ops) > maxWelcomeOps) {
			t.Fatalf("accepted a welcome of %d addresses and %d ops", len(w.Addrs), len(w.Ops))
		}
	})
}

func FuzzJoinRequest(f *testing.F) {
	addCorpus(f, "FuzzJoinRequest")
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeJoinRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			if ops != nil {
				t.Fatal("ops returned with an error")
			}
			return
		}
		if len(ops) == 0 || len(ops) > 64 {
			t.Fatalf("accepted a request of %d ops", len(ops))
		}
		for _, op := range ops {
			_ = op.Verify(fuzzCluster) // must not panic on any decodable op
			if _, err := reducers.DecodeBody(op); err != nil {
				continue // the host refuses it; decoding it must not panic
			}
		}
	})
}

// fuzzHost is a Host that verifies and counts what it is given; the view is
// empty (receiveOps never reads it).
type fuzzHost struct {
	stored map[oplog.ID]bool
}

func (h *fuzzHost) View() *reducers.View { return reducers.Fold(fuzzCluster, nil, fuzzHLC) }
func (h *fuzzHost) Ingest(_ oplog.Key, ops []*oplog.Op) ([]bool, error) {
	for _, op := range ops {
		if err := op.Verify(fuzzCluster); err != nil {
			return nil, err
		}
	}
	added := make([]bool, len(ops))
	for i, op := range ops {
		if !h.stored[op.ID()] {
			h.stored[op.ID()] = true
			added[i] = true
		}
	}
	return added, nil
}
func (h *fuzzHost) Ops([]oplog.ID) []*oplog.Op              { return nil }
func (h *fuzzHost) SyncSet() SyncSet                        { return newListSet(nil) }
func (h *fuzzHost) AcceptJoin(oplog.Key, []*oplog.Op) error { return errors.New("no") }
func (h *fuzzHost) Chain(oplog.Key) []*oplog.Op             { return nil }

func FuzzSyncFrames(f *testing.F) {
	addCorpus(f, "FuzzSyncFrames")
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &fuzzHost{stored: map[oplog.ID]bool{}}
		m := &Mesh{host: h, cfg: Config{MaxPushBatch: 4}.withDefaults()}
		var st SyncStats
		err := m.receiveOps(oplog.KeyOf(fuzzMember), bufio.NewReader(bytes.NewReader(data)), &st)
		if st.Received != len(h.stored) {
			t.Fatalf("counted %d ops received; the host stored %d", st.Received, len(h.stored))
		}
		if err == nil {
			return // the input held an end frame
		}
		// Anything else must be an error for which finishSync disconnects.
		if !errors.Is(err, ErrFrame) && !errors.Is(err, errSyncProtocol) && !errors.Is(err, oplog.ErrSignature) {
			t.Fatalf("error %v would not disconnect the peer", err)
		}
	})
}

// FuzzCallFrames feeds the call protocol's decoders a request from a caller
// and a reply from a replica: what they accept must be what they promise.
func FuzzCallFrames(f *testing.F) {
	addCorpus(f, "FuzzCallFrames")
	f.Fuzz(func(t *testing.T, data []byte) {
		if req, err := decodeCallRequest(data); err == nil {
			if req.TimeLeftMs <= 0 || len(req.Chain) > maxCallChain || len(req.Input) > maxCallInput {
				t.Fatalf("accepted a request with %d ms left, a chain of %d and %d bytes in", req.TimeLeftMs, len(req.Chain), len(req.Input))
			}
			// What decodes encodes back to itself.
			again, err := decodeCallRequest(appendCallRequest(nil, req))
			if err != nil || !reflect.DeepEqual(again, req) {
				t.Fatalf("request %+v came back as %+v, %v", req, again, err)
			}
		} else if req != nil {
			t.Fatal("a request returned with an error")
		}
		if rep, err := decodeCallReply(data); err == nil {
			if rep.Started && (rep.Refused != "" || rep.Error != "" || rep.Output != nil) {
				t.Fatalf("accepted a Started reply with a result: %+v", rep)
			}
			if !bytes.Equal(appendCallReply(nil, *rep), data) {
				t.Fatalf("reply %x decoded to %+v, which encodes otherwise", data, rep)
			}
		} else if rep != nil {
			t.Fatal("a reply returned with an error")
		}
	})
}
