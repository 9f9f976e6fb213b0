package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// 'pln up' runs in the background here; the other verbs reach it through its
// socket, and fall back to the store once it stops.

func TestUpServesTheSocketUntilDown(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init", "--name", "alpha", "--prop", "name=anode")
	a.fail([]string{"down"}, "no node is running in "+a.path)

	p := a.up()
	a.waitLive()
	sock := filepath.Join(a.path, daemon.SocketFile)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %s: %v, mode %v; want a socket with mode 0600", sock, err, fi.Mode())
	}

	// Verbs go through the socket to the running node.
	key := newDir(t, "k").id()
	a.must("grant", key, "--tier", "publisher")
	a.must("seed", "--digest", digest("web"), "web", "--replicas", "1")
	var log []daemon.LogEntry
	a.json(&log, "log")
	if !hasKind(log, "load") || !hasKind(log, "seed") {
		t.Errorf("the running node's log lacks its load report or the seed: %v", kindsOf(log))
	}
	var audit []daemon.AuditEntry
	a.json(&audit, "audit", "--peer", key)
	if len(audit) != 1 || audit[0].What != reducers.EventAdmit {
		t.Errorf("audit through the socket: %+v", audit)
	}
	s := a.status()
	if !s.Running || len(s.Seeds) != 1 || !member(s, s.Node.String()).Live {
		t.Errorf("status through the socket: running %v, seeds %+v, members %+v", s.Running, s.Seeds, s.Members)
	}
	if out := a.must("status"); !strings.Contains(out, "running") || !strings.Contains(out, "anode *") {
		t.Errorf("status table:\n%s", out)
	}

	// A second node on the same directory is refused; the first carries on.
	expectFailure(t, a.run(append([]string{"up"}, loopback...)...), "already running", a.path)
	expectFailure(t, a.run("init"), "already holds a cluster")
	if !a.status().Running {
		t.Fatal("the first node stopped answering after a second 'pln up'")
	}
	// An offline replay of a directory in use is refused.
	expectFailure(t, runPln(t, nil, "replay", a.path), "a node is running in "+a.path, "pln log export")

	if out := a.must("down"); out != "" {
		t.Errorf("down printed %q", out)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("pln up exited %d after pln down:\n%s", code, p.stderr)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after pln down: %v", err)
	}

	// Offline again: the store has what the node wrote.
	s = a.status()
	if s.Running || len(s.Seeds) != 1 || member(s, key) == nil {
		t.Errorf("offline status after down: %+v", s)
	}

	// SIGTERM stops a node just as cleanly.
	p = a.up()
	a.must("grant", newDir(t, "k2").id())
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("pln up exited %d on SIGTERM:\n%s", code, p.stderr)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after SIGTERM: %v", err)
	}
	if !strings.Contains(p.stderr.String(), "node down") {
		t.Errorf("pln up did not log its shutdown:\n%s", p.stderr)
	}
	a.must("grant", newDir(t, "k3").id())
	if s := a.status(); s.Running || len(s.Members) != 5 {
		t.Errorf("offline status after SIGTERM: running %v, %d members, want 5", s.Running, len(s.Members))
	}
}

func TestUpCreatesACluster(t *testing.T) {
	t.Parallel()
	a := newDir(t, "fresh")
	p := a.up()
	s := a.status()
	if len(s.Members) != 2 || member(s, s.Node.String()).Tier != reducers.TierAdmin {
		t.Errorf("pln up on an empty directory made %+v", s.Members)
	}
	for _, f := range []string{daemon.NodeKeyFile, daemon.RootKeyFile, daemon.StoreFile} {
		if _, err := os.Stat(filepath.Join(a.path, f)); err != nil {
			t.Errorf("pln up made no %s: %v", f, err)
		}
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 0 {
		t.Errorf("pln up exited %d on SIGINT:\n%s", code, p.stderr)
	}
}

func TestJoinWithoutNoUpRunsTheNode(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init")
	b := newDir(t, "b")
	p := b.start(append([]string{"join", a.must("invite"), "--name", "bnode"}, loopback...)...)
	poll(t, "the joined node answers on its socket", 10*time.Second, func() bool {
		r := b.run("status", "--json")
		var s daemon.Status
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &s) == nil && s.Running
	})
	if s := b.status(); s.Name != "bnode" || member(s, s.Node.String()).Tier != reducers.TierMember {
		t.Errorf("joined node's status: %+v", s)
	}
	b.must("down")
	if code := p.wait(); code != 0 || !strings.Contains(p.stderr.String(), "joined cluster") {
		t.Errorf("pln join exited %d:\n%s", code, p.stderr)
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init", "--name", "alpha", "--prop", "name=anode")
	a.must("seed", "--digest", digest("web"), "web", "--replicas", "1")
	late := newDir(t, "late").id()
	a.must("grant", late)
	// Running the node once makes it live: its load report ends the log.
	p := a.up()
	a.waitLive()
	a.must("down")
	p.wait()

	file := filepath.Join(t.TempDir(), "a.log")
	a.must("log", "export", file)
	out := runPln(t, nil, "replay", file)
	if out.code != 0 {
		t.Fatal(out)
	}
	for _, want := range []string{`cluster "alpha"`, "MEMBER", "anode", late[:8], "seed web: want 1", "CHOSEN"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("replay does not show %q:\n%s", want, out.stdout)
		}
	}

	type replayJSON struct {
		At         oplog.HLC                  `json:"at"`
		View       oplog.Digest               `json:"view"`
		Ops        int                        `json:"ops"`
		Members    map[string]json.RawMessage `json:"members"`
		Placements []reducers.Placement       `json:"placements"`
	}
	replay := func(args ...string) replayJSON {
		t.Helper()
		r := runPln(t, nil, append([]string{"replay", "--json"}, args...)...)
		var v replayJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
			t.Fatalf("replay --json: %v", r)
		}
		return v
	}
	node := a.status().Node
	full := replay(file)
	var log []daemon.LogEntry
	a.json(&log, "log")
	if full.Ops != len(log) || len(full.Members) != 3 || len(full.Placements) != 1 {
		t.Fatalf("replay --json: %d ops, %d members, %d placements; want %d, 3, 1", full.Ops, len(full.Members), len(full.Placements), len(log))
	}
	if pl := full.Placements[0]; pl.Seed != "web" || len(pl.Nodes) != 1 || pl.Nodes[0] != node {
		t.Errorf("replay places web on %v, want the node %s", pl.Nodes, node.Short())
	}

	// Earlier in the log, the late member was not there yet.
	if log[3].Kind != "grant" || log[2].Kind != "seed" {
		t.Fatalf("log is %v, want genesis, grant, seed, grant, load…", kindsOf(log))
	}
	before := log[2].HLC
	earlier := replay("--at", strconv.FormatUint(uint64(before), 10), file)
	if len(earlier.Members) != 2 || earlier.Members[late] != nil || earlier.At != before {
		t.Errorf("replay --at %s shows %d members (want 2, without %s)", before, len(earlier.Members), late[:8])
	}
	if r := runPln(t, nil, "replay", "--at", before.String(), file); r.code != 0 || strings.Contains(r.stdout, late[:8]) {
		t.Errorf("replay --at in RFC 3339 form: %v", r)
	}

	// The directory replays to the same view as its export, when no node runs.
	if dir := replay(a.path); dir.View != full.View || dir.Ops != full.Ops {
		t.Errorf("replay of the directory: view %s, %d ops; of its export: %s, %d", dir.View.Short(), dir.Ops, full.View.Short(), full.Ops)
	}
	if r := runPln(t, nil, "replay", "--check", file); r.code != 0 || !strings.Contains(r.stdout, "checked 0 claims") {
		t.Errorf("replay --check of a log without claims: %v", r)
	}
	expectFailure(t, runPln(t, nil, "replay", "--at", "yesterday", file), "--at")
	expectFailure(t, runPln(t, nil, "replay", filepath.Join(t.TempDir(), "none")), "replay")
}

func hasKind(log []daemon.LogEntry, kind string) bool {
	for _, e := range log {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

func kindsOf(log []daemon.LogEntry) []string {
	var ks []string
	for _, e := range log {
		ks = append(ks, e.Kind)
	}
	return ks
}

// The crafted log in testdata/logs (made by the daemon package's tests with
// -update): its node made 7 claims, 4 of them not borne out by its own log.
func TestReplayCheckListsDivergences(t *testing.T) {
	t.Parallel()
	log := filepath.Join("..", "..", "testdata", "logs", "divergent-claims.log")
	r := runPln(t, nil, "replay", "--check", log)
	expectFailure(t, r, "replay found 4 divergences")
	for _, want := range []string{
		"op 11 (claim ", "claimed ready, but placement does not choose this node",
		"op 12 (claim ", "claimed draining, but placement still chooses this node",
		"op 13 (claim ", "the claim recorded",
		"op 14 (claim ", "claims to have decided from",
		"checked 7 claims by ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("replay --check does not say %q:\n%s", want, r.stdout)
		}
	}
	var rep reducers.ReplayReport
	r = runPln(t, nil, "replay", "--check", "--verify", "--json", log)
	if r.code == 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Claims != 7 || len(rep.Divergences) != 4 {
		t.Errorf("replay --check --json: %v", r)
	}
	// Without --check the same log replays fine.
	if r := runPln(t, nil, "replay", log); r.code != 0 || !strings.Contains(r.stdout, "seed web") {
		t.Errorf("replay without --check: %v", r)
	}
}

// A node that cannot listen says so on one line and leaves no socket behind.
func TestUpOnAPortInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a := newDir(t, "a")
	a.must("init")
	expectFailure(t, a.run("up", "--listen", taken.LocalAddr().String()), "address already in use", "--listen")
	if _, err := os.Stat(filepath.Join(a.path, daemon.SocketFile)); !os.IsNotExist(err) {
		t.Errorf("a node that failed to start left its socket: %v", err)
	}
	expectFailure(t, a.run("up", "--listen", "bogus"), "bogus")
	if s := a.status(); s.Running {
		t.Error("status says running after two failed starts")
	}
}
