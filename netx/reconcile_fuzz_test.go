package netx

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var updateReconcileSeeds = flag.Bool("update-reconcile-seeds", false, "rewrite the FuzzReconcileMessage seed corpus in "+reconcileSeedDir)

// reconcileSeedDir holds FuzzReconcileMessage's seeds as plain files.
const reconcileSeedDir = "../testdata/fuzz/reconcile"

// fuzzPair is the pair of sets the fuzz target reconciles against: 300 items
// each, 20 apart, with tied HLCs. The seeds are its real exchange and a few
// others, so mutations start from messages that reach every path.
func fuzzPair() (a, b *sliceSet) {
	rng := rand.New(rand.NewPCG(21, 22))
	items := genItems(rng, 320, 1)
	for k := range items {
		if k%7 == 0 {
			items[k].hlc = items[max(k-1, 0)].hlc
		}
	}
	return newSliceSet(items[:300]), newSliceSet(items[20:])
}

func fuzzConfig() ReconcileConfig {
	cfg := testConfig(5)
	cfg.MaxMessageBytes = 4 << 10
	return cfg
}

// reconcileSeeds runs a few exchanges and keeps every message, named after the
// exchange and its place in it.
func reconcileSeeds(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(23, 24))
	fa, fb := fuzzPair()
	small := fuzzConfig()
	small.MaxMessageBytes = MinMessageBytes
	a, b := randomPair(rng, 1500)
	exchanges := []struct {
		name string
		a, b *sliceSet
		cfg  ReconcileConfig
	}{
		{"fuzz-pair", fa, fb, fuzzConfig()},
		{"in-sync", fa, fa, fuzzConfig()},
		{"empty-initiator", newSliceSet(nil), fb, fuzzConfig()},
		{"small-messages", newSliceSet(a), newSliceSet(b), small},
	}
	seeds := map[string][]byte{}
	for _, x := range exchanges {
		ra, rb := NewReconciler(x.a, x.cfg), NewReconciler(x.b, x.cfg)
		msg, err := ra.Initiate()
		if err != nil {
			t.Fatal(err)
		}
		from, to := ra, rb
		for k := 1; msg != nil && k <= 12; k++ {
			seeds[fmt.Sprintf("%s-%02d.bin", x.name, k)] = msg
			out, done, err := to.Reconcile(msg)
			if err != nil {
				t.Fatal(err)
			}
			if done && out != nil {
				seeds[fmt.Sprintf("%s-%02d.bin", x.name, k+1)] = out
				break
			}
			msg, from, to = out, to, from
		}
	}
	return seeds
}

// The checked-in seeds match what reconcileSeeds makes; -update-reconcile-seeds
// rewrites them.
func TestReconcileFuzzSeedsAreCurrent(t *testing.T) {
	seeds := reconcileSeeds(t)
	if *updateReconcileSeeds {
		if err := os.MkdirAll(reconcileSeedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(reconcileSeedDir, "*.bin"))
		for _, path := range old {
			os.Remove(path)
		}
	}
	for name, want := range seeds {
		path := filepath.Join(reconcileSeedDir, name)
		if *updateReconcileSeeds {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("seed %s is stale or missing (go test ./netx -run FuzzSeeds -update-reconcile-seeds)", path)
		}
	}
	have, _ := filepath.Glob(filepath.Join(reconcileSeedDir, "*.bin"))
	if len(have) != len(seeds) {
		t.Fatalf("%s holds %d seeds, want %d (go test ./netx -run FuzzSeeds -update-reconcile-seeds)", reconcileSeedDir, len(have), len(seeds))
	}
}

// Whatever a peer sends, Reconcile does not panic, refuses what is malformed
// with ErrReconcileMalformed or ErrReconcileOutOfTurn, and answers what it
// accepts with a well-formed message within MaxMessageBytes. Bytes go to a
// fresh responder, to a responder after a real first message, and to an
// initiator after its first message.
func FuzzReconcileMessage(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(reconcileSeedDir, "*.bin"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seeds in %s: %v", reconcileSeedDir, err)
	}
	slices.Sort(paths)
	for _, path := range paths {
		seed, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	sa, sb := fuzzPair()
	cfg := fuzzConfig()
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(who string, r *Reconciler) {
			out, done, err := r.Reconcile(in)
			if err != nil {
				if !errors.Is(err, ErrReconcileMalformed) && !errors.Is(err, ErrReconcileOutOfTurn) {
					t.Fatalf("%s: error of no known kind: %v", who, err)
				}
				if out != nil || !done {
					t.Fatalf("%s: error with a reply", who)
				}
				return
			}
			if out == nil {
				if !done {
					t.Fatalf("%s: no reply and not done", who)
				}
				return
			}
			if len(out) > cfg.MaxMessageBytes {
				t.Fatalf("%s: reply of %d bytes, limit %d", who, len(out), cfg.MaxMessageBytes)
			}
			m, err := decodeMessage(out)
			if err != nil {
				t.Fatalf("%s: our reply does not decode: %v", who, err)
			}
			if m.first {
				t.Fatalf("%s: a reply that claims to be a first message", who)
			}
			if done == m.needsReply() {
				t.Fatalf("%s: done %v but the reply asks for an answer: %v", who, done, m.needsReply())
			}
		}

		check("fresh responder", NewReconciler(sb, cfg))

		init := NewReconciler(sa, cfg)
		first, err := init.Initiate()
		if err != nil {
			t.Fatal(err)
		}
		check("initiator", init)

		resp := NewReconciler(sb, cfg)
		if _, _, err := resp.Reconcile(first); err != nil {
			t.Fatal(err)
		}
		check("responder", resp)
	})
}
