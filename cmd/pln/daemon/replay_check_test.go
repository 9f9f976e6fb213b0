package daemon

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// 'pln replay --check' on a crafted log: node a makes claims from positions
// it records itself, some that its log bears out and some that it does not.

// craftedLog is what craftClaims made.
type craftedLog struct {
	node       *Node
	consistent []oplog.ID
	divergent  map[oplog.ID]string // claim → what its reason must say
}

func craftClaims(t *testing.T) craftedLog {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	b := joinNode(t, clk, a, "b", reducers.TierMember)
	reportLoadOnce(t, a)
	reportLoadOnce(t, b)
	share(t, b, a) // b's load: both nodes are live

	// Each seed may only run on one of the two nodes.
	web, api := digestOf("web"), digestOf("api")
	author(t, a, &reducers.Seed{Name: "web", Kind: reducers.SeedWASM, Digest: web, MinReplicas: 1, MaxReplicas: 1, Policy: map[string]string{"name": "a"}})
	author(t, a, &reducers.Seed{Name: "api", Kind: reducers.SeedWASM, Digest: api, MinReplicas: 1, MaxReplicas: 1, Policy: map[string]string{"name": "b"}})

	c := craftedLog{node: a, divergent: map[oplog.ID]string{}}
	claim := func(seed string, d oplog.Digest, state string, alter func(*reducers.Claim)) oplog.ID {
		seq, v := a.Position()
		cl := &reducers.Claim{Node: a.Self(), Seed: seed, Digest: d, State: state, Seq: seq, View: v.Digest()}
		if alter != nil {
			alter(cl)
		}
		return author(t, a, cl).ID()
	}
	// Borne out: placement chooses a for web, and not for api.
	c.consistent = append(c.consistent, claim("web", web, reducers.ClaimReady, nil))
	c.consistent = append(c.consistent, claim("api", api, reducers.ClaimReleased, nil))
	// Not borne out.
	c.divergent[claim("api", api, reducers.ClaimReady, nil)] = "claimed ready, but placement does not choose this node"
	c.divergent[claim("web", web, reducers.ClaimDraining, nil)] = "claimed draining, but placement still chooses this node"
	c.divergent[claim("web", web, reducers.ClaimReady, func(cl *reducers.Claim) { cl.View = digestOf("another view") })] = "; the claim recorded " + oplog.ID(digestOf("another view")).Short()
	c.divergent[claim("web", web, reducers.ClaimReady, func(cl *reducers.Claim) { cl.Seq += 5 })] = "but only"
	// A claim without a recorded view is still checked against placement.
	c.consistent = append(c.consistent, claim("web", web, reducers.ClaimReady, func(cl *reducers.Claim) { cl.View = oplog.Digest{} }))

	// Another node's claim in a's log is not a's decision to check, however
	// wrong it is.
	author(t, b, &reducers.Claim{Node: b.Self(), Seed: "web", Digest: web, State: reducers.ClaimReady})
	share(t, b, a)
	// Nor is a load that comes after the last claim.
	reportLoadOnce(t, a)
	return c
}

func digestOf(s string) oplog.Digest { return sha256.Sum256([]byte(s)) }

// checkReport asserts that r finds exactly c's divergences.
func checkReport(t *testing.T, c craftedLog, r reducers.ReplayReport) {
	t.Helper()
	if want := len(c.consistent) + len(c.divergent); r.Claims != want {
		t.Errorf("checked %d claims, want %d", r.Claims, want)
	}
	found := map[oplog.ID]bool{}
	for _, d := range r.Divergences {
		want, ok := c.divergent[d.Claim]
		switch {
		case !ok:
			t.Errorf("claim %s (op %d, %s %s) reported as divergent: %s", d.Claim.Short(), d.Seq, d.Seed, d.State, d.Reason)
		case !strings.Contains(d.Reason, want):
			t.Errorf("claim %s: reason %q does not say %q", d.Claim.Short(), d.Reason, want)
		}
		found[d.Claim] = true
	}
	for id, want := range c.divergent {
		if !found[id] {
			t.Errorf("divergent claim %s (%s) not reported", id.Short(), want)
		}
	}
}

func TestCheckClaimsFindsExactlyTheDivergentClaims(t *testing.T) {
	c := craftClaims(t)
	a := c.node

	// From the node's own log, in memory.
	checkReport(t, c, reducers.CheckClaims(a.Cluster(), a.Self(), logOf(t, a)))

	// From an export, every signature checked.
	file := filepath.Join(t.TempDir(), "a.log")
	if _, err := export(context.Background(), a, FileRequest{Path: file}); err != nil {
		t.Fatal(err)
	}
	src, err := ReadLog(file, true)
	if err != nil {
		t.Fatal(err)
	}
	if src.Node != a.Self() || src.Cluster != a.Cluster() || len(src.Skipped) != 0 || len(src.Ops) != storedCount(t, a) {
		t.Fatalf("ReadLog(file): node %s cluster %s, %d ops, skipped %v", src.Node.Short(), src.Cluster.Short(), len(src.Ops), src.Skipped)
	}
	checkReport(t, c, reducers.CheckClaims(src.Cluster, src.Node, src.Ops))

	// From the data directory, once the node has let go of it.
	if _, err := ReadLog(a.Dir(), false); err == nil || !strings.Contains(err.Error(), "a node is running in "+a.Dir()) {
		t.Errorf("ReadLog of a directory in use: %v", err)
	}
	want := logOf(t, a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	src, err = ReadLog(a.Dir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if src.Node != a.Self() || !slices.Equal(opIDs(src.Ops), opIDs(want)) {
		t.Fatalf("ReadLog(dir) gives %d ops by %s; the node held %d", len(src.Ops), src.Node.Short(), len(want))
	}
	checkReport(t, c, reducers.CheckClaims(src.Cluster, src.Node, src.Ops))

	if *update {
		if err := os.MkdirAll(logsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(logsDir, divergentLog), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// divergentLog is a crafted log checked in for the CLI's replay tests: its
// node made 7 claims, 4 of which its log does not bear out.
const divergentLog = "divergent-claims.log"

// The checked-in log still says what the CLI tests expect of it.
func TestDivergentLogFixture(t *testing.T) {
	src, err := ReadLog(filepath.Join(logsDir, divergentLog), true)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	r := reducers.CheckClaims(src.Cluster, src.Node, src.Ops)
	if len(src.Skipped) != 0 || r.Claims != 7 || len(r.Divergences) != 4 {
		t.Errorf("%s: %d skipped, %d claims, %d divergences; want 0, 7, 4 (regenerate with -update)", divergentLog, len(src.Skipped), r.Claims, len(r.Divergences))
	}
}
