package daemon

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// The node is the door every op passes: verified, stored durably, folded.

func TestIngestRefusesABatchWithOneBadSignature(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	before, view := storedCount(t, a), a.View().Digest()

	at := oplog.HLCAt(clk.Now())
	good1 := sign(t, a.Cluster(), a.key, at+10, &reducers.Grant{Subject: oplog.KeyOf(newKey(t)), Tier: reducers.TierMember})
	good2 := sign(t, a.Cluster(), a.key, at+12, &reducers.Load{Node: a.Self(), CPUMilli: 1000})
	forged := *sign(t, a.Cluster(), a.key, at+11, &reducers.Grant{Subject: oplog.KeyOf(newKey(t)), Tier: reducers.TierAdmin})
	forged.Sig[7] ^= 0x40
	// And an op signed for another cluster.
	foreign := sign(t, oplog.ClusterOf(oplog.KeyOf(newKey(t))), a.key, at+13, &reducers.Load{Node: a.Self()})

	for name, bad := range map[string]*oplog.Op{"altered signature": &forged, "other cluster": foreign} {
		added, err := a.Ingest(good1, bad, good2)
		if !errors.Is(err, oplog.ErrSignature) || added != nil {
			t.Errorf("%s: Ingest = %v, %v; want ErrSignature and nothing added", name, added, err)
		}
		if n := storedCount(t, a); n != before {
			t.Errorf("%s: the store went from %d to %d ops", name, before, n)
		}
		if seq, v := a.Position(); seq != uint64(before) || v.Digest() != view {
			t.Errorf("%s: position moved to %d, view %s", name, seq, oplog.ID(v.Digest()).Short())
		}
	}

	// The good ops alone go in, once.
	added, err := a.Ingest(good1, good2, good1)
	if err != nil || !slices.Equal(added, []bool{true, true, false}) {
		t.Fatalf("Ingest of good ops: %v, %v", added, err)
	}
	if added, err = a.Ingest(good2); err != nil || added[0] {
		t.Errorf("a duplicate was added again: %v, %v", added, err)
	}
	if seq, _ := a.Position(); seq != uint64(before+2) {
		t.Errorf("position %d after two new ops on %d", seq, before)
	}
}

func TestAuthorRefusesAnOpThatWouldNotCount(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	m := joinNode(t, clk, a, "m", reducers.TierMember)
	before, view := storedCount(t, m), m.View().Digest()

	for name, body := range map[string]reducers.Body{
		"a member grants":           &reducers.Grant{Subject: oplog.KeyOf(newKey(t)), Tier: reducers.TierMember},
		"a member publishes":        &reducers.Seed{Name: "web", Kind: reducers.SeedWASM, Digest: digestOf("web"), MinReplicas: 1, MaxReplicas: 1},
		"a member denies the admin": &reducers.Deny{Subject: a.Self()},
		"a load about another node": &reducers.Load{Node: a.Self()},
	} {
		op, err := m.Author(body)
		if op != nil || !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), "refused: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Author = %v, %v; want one line 'refused: …' matching ErrRefused", name, op, err)
		}
	}
	if n := storedCount(t, m); n != before || m.View().Digest() != view {
		t.Errorf("refused ops changed the node: %d ops (was %d)", n, before)
	}
	// An invalid body is refused before it is signed.
	if _, err := a.Author(&reducers.Seed{Name: "Bad Name"}); err == nil {
		t.Error("Author signed a seed with an invalid name")
	}
	// What the member may do, it does.
	reportLoadOnce(t, m)
	if n := storedCount(t, m); n != before+1 {
		t.Errorf("a member's load report was not stored")
	}
}

func TestRestartReproducesTheView(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	joinNode(t, clk, a, "b", reducers.TierPublisher)
	author(t, a, &reducers.Seed{Name: "web", Kind: reducers.SeedWASM, Digest: digestOf("web"), MinReplicas: 1, MaxReplicas: 2})
	for range 3 {
		clk.Add(time.Second)
		reportLoadOnce(t, a) // superseded loads are marked; they must not change the view
	}
	clk.Add(time.Second)
	seq, v := a.Position()
	var newest oplog.HLC
	for _, op := range logOf(t, a) {
		newest = max(newest, op.HLC)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// The machine's clock has stepped back a little while the node was down.
	clk.Add(-3 * time.Second)
	re, err := Open(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	reSeq, reView := re.Position()
	if reSeq != seq || reView.Digest() != v.Digest() {
		t.Errorf("after restart: %d ops, view %s; before: %d ops, view %s", reSeq, oplog.ID(reView.Digest()).Short(), seq, oplog.ID(v.Digest()).Short())
	}
	if now := re.clock.Now(); now <= newest {
		t.Errorf("clock after restart %s is not past the newest op %s", now, newest)
	}
	if op := reportLoadOnce(t, re); op.HLC <= newest {
		t.Errorf("an op authored after restart has HLC %s, not after the newest %s", op.HLC, newest)
	}
	// A second Open while this one holds the store is refused, by name.
	if _, err := Open(a.cfg); err == nil || !strings.Contains(err.Error(), "already running in "+a.cfg.Dir) {
		t.Errorf("a second Open of a store in use: %v", err)
	}
}

func TestOpFromTheFutureIsHeldUntilItsTime(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	subject := oplog.KeyOf(newKey(t))
	ahead := oplog.HLCAt(clk.Now().Add(time.Hour))
	future := sign(t, a.Cluster(), a.key, ahead, &reducers.Grant{Subject: subject, Tier: reducers.TierMember})

	added, err := a.Ingest(future)
	if err != nil || !added[0] {
		t.Fatalf("an op an hour ahead was not stored: %v, %v", added, err)
	}
	if has, _ := a.store.Has(future.ID()); !has {
		t.Fatal("the op an hour ahead is not in the store")
	}
	v := a.View()
	if v.Pending != 1 || v.Member(subject) != nil {
		t.Errorf("view holds %d pending; subject counts: %v", v.Pending, v.Member(subject) != nil)
	}
	if now := a.clock.Now(); now.Wall() != clk.Now().UnixMilli() {
		t.Errorf("the op dragged the node's clock to %s", now)
	}
	if op := reportLoadOnce(t, a); op.HLC >= ahead {
		t.Errorf("an op authored now has HLC %s, at or past the future op's %s", op.HLC, ahead)
	}

	// Still held after a restart.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = Open(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if v := a.View(); v.Pending != 1 || v.Member(subject) != nil {
		t.Errorf("after restart: %d pending, subject counts %v", v.Pending, v.Member(subject) != nil)
	}
	if now := a.clock.Now(); now >= ahead {
		t.Errorf("after restart the clock is at %s, dragged to the future op", now)
	}

	// Time catches up: the op counts, once.
	clk.Add(time.Hour - 4*time.Second) // within the 5 s max offset
	v = a.View()
	if v.Pending != 0 || !v.Active(subject, oplog.HLCAt(clk.Now().Add(time.Hour))) {
		t.Errorf("once the clock caught up: %d pending, subject %+v", v.Pending, v.Member(subject))
	}
	digest := v.Digest()
	if again, _ := a.Ingest(future); again[0] {
		t.Error("the held op was stored twice")
	}
	if v := a.View(); v.Pending != 0 || v.Digest() != digest {
		t.Errorf("re-ingesting the op changed the view: %d pending", v.Pending)
	}
}
