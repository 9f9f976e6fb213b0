package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
	"github.com/pln-mesh/pln/reducers"
)

// Every verb here runs with no node up: the CLI opens the store itself.

func TestInitGrantSeedLogAuditUnseed(t *testing.T) {
	t.Parallel()
	a, b := newDir(t, "a"), newDir(t, "b")
	out := a.must("init", "--name", "alpha", "--prop", "name=anode", "--prop", "zone=eu")
	if !strings.Contains(out, `created cluster "alpha"`) {
		t.Errorf("init says:\n%s", out)
	}

	s := a.status()
	if s.ClusterName != "alpha" || s.Running || s.Name != "anode" || len(s.Members) != 2 {
		t.Fatalf("status after init: %+v", s)
	}
	self, root := member(s, s.Node.String()), (*daemon.MemberStatus)(nil)
	for i := range s.Members {
		if s.Members[i].Root {
			root = &s.Members[i]
		}
	}
	if self == nil || !self.Self || self.Tier != reducers.TierAdmin || self.Props["zone"] != "eu" {
		t.Errorf("the init node is not an admin with its props: %+v", self)
	}
	if root == nil || root.Tier != reducers.TierAdmin || root.Key == s.Node {
		t.Errorf("no separate root key among the members: %+v", s.Members)
	}

	bKey := b.id()
	if again := b.id(); again != bKey || len(bKey) != 64 {
		t.Fatalf("pln id is not stable: %q then %q", bKey, again)
	}
	if out := a.must("grant", bKey, "--tier", "publisher", "--prop", "zone=us"); !strings.HasPrefix(out, "grant ") {
		t.Errorf("grant says %q", out)
	}
	d := digest("web v1")
	if out := a.must("seed", "--digest", d, "web"); !strings.Contains(out, "seeded web "+d) {
		t.Errorf("seed says %q", out)
	}

	var log []daemon.LogEntry
	a.json(&log, "log")
	var kinds []string
	for _, e := range log {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"genesis", "grant", "grant", "seed"}; !slices.Equal(kinds, want) {
		t.Errorf("log kinds %v, want %v", kinds, want)
	}
	var seeds []daemon.LogEntry
	a.json(&seeds, "log", "--kind", "seed")
	if len(seeds) != 1 || seeds[0].Kind != "seed" || seeds[0].Seq != 4 || seeds[0].Author != s.Node {
		t.Errorf("log --kind seed: %+v", seeds)
	}
	if table := a.must("log"); !strings.Contains(table, "SEQ") || !strings.Contains(table, "web wasm") {
		t.Errorf("log table:\n%s", table)
	}

	var audit []daemon.AuditEntry
	a.json(&audit, "audit")
	admitted := map[string]reducers.Tier{}
	for _, e := range audit {
		if e.What == reducers.EventAdmit {
			admitted[e.Subject.String()] = e.Tier
		}
	}
	if admitted[s.Node.String()] != reducers.TierAdmin || admitted[bKey] != reducers.TierPublisher || len(admitted) != 2 {
		t.Errorf("audit admits %v; want the node as admin and %s as publisher", admitted, bKey[:8])
	}
	var onlyB []daemon.AuditEntry
	a.json(&onlyB, "audit", "--peer", bKey)
	if len(onlyB) != 1 || onlyB[0].Subject.String() != bKey {
		t.Errorf("audit --peer %s: %+v", bKey[:8], onlyB)
	}

	s = a.status()
	if len(s.Seeds) != 1 || s.Seeds[0].Name != "web" || s.Seeds[0].Digest != d {
		t.Errorf("status seeds: %+v", s.Seeds)
	}
	if m := member(s, bKey); m == nil || m.Tier != reducers.TierPublisher || m.Props["zone"] != "us" {
		t.Errorf("status member %s: %+v", bKey[:8], m)
	}
	a.must("unseed", "web")
	if s = a.status(); len(s.Seeds) != 0 {
		t.Errorf("status after unseed still lists %+v", s.Seeds)
	}
	a.fail([]string{"unseed", "web"}, `no seed named "web"`)
}

func TestInitRefusesAnExistingCluster(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init")
	a.fail([]string{"init", "--name", "other"}, "already holds a cluster")

	// A directory with only a node key ('pln id') is not a cluster yet.
	b := newDir(t, "b")
	key := b.id()
	b.must("init")
	if s := b.status(); s.Node.String() != key {
		t.Errorf("init made a new node key %s; 'pln id' had printed %s", s.Node.Short(), key[:8])
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init", "--name", "alpha", "--prop", "name=anode")
	cluster := a.status().Cluster

	// An invite without a subject admits whoever redeems it.
	out := a.must("invite", "--tier", "publisher", "--prop", "zone=eu")
	token := strings.TrimSuffix(out, "\n")
	if strings.Contains(token, "\n") || !strings.HasPrefix(token, "pln1") {
		t.Fatalf("invite printed more than one token line:\n%s", out)
	}
	b := newDir(t, "b")
	if out := b.must("join", token, "--no-up", "--name", "bnode"); !strings.Contains(out, `joined cluster "alpha"`) {
		t.Errorf("join says %q", out)
	}
	s := b.status()
	self := member(s, s.Node.String())
	if s.Cluster != cluster || self == nil || self.Tier != reducers.TierPublisher ||
		self.Props["zone"] != "eu" || self.Props["name"] != "bnode" || s.Name != "bnode" {
		t.Errorf("joiner's status: cluster %s, self %+v", s.Cluster.Short(), self)
	}
	b.fail([]string{"join", token, "--no-up"}, "already a member")

	// An invite with a subject admits that key only.
	c := newDir(t, "c")
	cKey := c.id()
	var inv daemon.InviteResult
	a.json(&inv, "invite", "--subject", cKey)
	if inv.Subject.String() != cKey || inv.Tier != reducers.TierMember {
		t.Errorf("invite --subject: %+v", inv)
	}
	other := newDir(t, "other")
	other.id() // a node key of its own: the refusal must leave it as it was
	other.fail([]string{"join", inv.Token, "--no-up"}, "is for key "+cKey[:8], "not this node")
	fresh := newDir(t, "fresh")
	fresh.fail([]string{"join", inv.Token, "--no-up"}, "is for key "+cKey[:8])
	c.must("join", inv.Token, "--no-up")
	if s := c.status(); s.Cluster != cluster || member(s, cKey) == nil || member(s, cKey).Tier != reducers.TierMember {
		t.Errorf("subject's status after join: %+v", s)
	}

	// An expired token.
	var short daemon.InviteResult
	a.json(&short, "invite", "--ttl", "1ms")
	poll(t, "the invite expires", 5*time.Second, func() bool { return time.Now().UnixMilli() > short.Expires.Wall() })
	newDir(t, "late").fail([]string{"join", short.Token, "--no-up"}, "expired", "pln invite")

	// A token of cluster alpha into a directory of cluster beta.
	beta := newDir(t, "beta")
	beta.must("init", "--name", "beta")
	betaID := beta.status().Cluster
	beta.fail([]string{"join", token, "--no-up"}, `"alpha"`, cluster.Short(), betaID.Short())

	// Damaged and pasted-wrong tokens.
	mid := len(token) / 2
	flip := byte('A')
	if token[mid] == 'A' {
		flip = 'B'
	}
	tampered := token[:mid] + string(flip) + token[mid+1:]
	newDir(t, "tampered").fail([]string{"join", tampered, "--no-up"}, "damaged")
	newDir(t, "garbage").fail([]string{"join", "hello-world", "--no-up"}, "does not start with")
	newDir(t, "cut").fail([]string{"join", token[:len(token)-10], "--no-up"}, "damaged")
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init")
	key := newDir(t, "k").id()

	a.fail([]string{"grant", "1234"}, "64 hex digits")
	a.fail([]string{"grant", strings.Repeat("zz", 32)}, "hex")
	a.fail([]string{"deny", key[:60]}, "64 hex digits")
	a.fail([]string{"audit", "--peer", "nope"}, "64 hex digits")
	a.fail([]string{"invite", "--subject", "nope"}, "64 hex digits")
	a.fail([]string{"grant", key, "--tier", "boss"}, "unknown tier", "member")
	a.fail([]string{"grant", key, "--tier", "invite"}, "cannot be granted directly")
	a.fail([]string{"invite", "--tier", "boss"}, "member")
	a.fail([]string{"grant", key, "--prop", "zone"}, "not key=value")
	a.fail([]string{"seed", "--digest", "abc", "web"}, "digest")
	a.fail([]string{"seed", "--digest", digest("x"), "Web!"}, "not valid")
	a.fail([]string{"seed", "--digest", digest("x"), "--replicas", "3:2", "web"}, "--replicas")
	a.fail([]string{"log", "--kind", "gossip"}, "gossip")
	a.fail([]string{"unknown-verb"}, "unexpected argument")

	// A missing data directory is reported and stays missing.
	missing := newDir(t, "missing")
	for _, verb := range [][]string{{"status"}, {"log"}, {"audit"}, {"grant", key}, {"deny", key}, {"invite"}, {"seed", "--digest", digest("x"), "web"}, {"down"}} {
		missing.fail(verb, "no cluster in "+missing.path, "pln init")
	}
	if _, err := os.Stat(missing.path); !os.IsNotExist(err) {
		t.Errorf("a failed verb created %s", missing.path)
	}
	// So is a directory that holds no cluster.
	empty := newDir(t, "empty")
	empty.id()
	empty.fail([]string{"status"}, "no cluster in", "pln init")
}

func TestDeny(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init", "--name", "alpha", "--prop", "name=anode")

	// Two publishers, each a real node that publishes a seed from its own
	// directory; the admin learns their ops from their exported logs.
	pubs := map[string]*dir{}
	seedOp := map[string]oplog.ID{}
	for _, name := range []string{"b", "c"} {
		d := newDir(t, name)
		d.must("join", a.must("invite", "--tier", "publisher"), "--no-up", "--name", name+"node")
		var res daemon.OpResult
		d.json(&res, "seed", "--digest", digest(name), name+"web")
		seedOp[name] = res.ID
		file := filepath.Join(t.TempDir(), name+".log")
		d.must("log", "export", file)
		a.must("log", "import", file)
		pubs[name] = d
	}
	if s := a.status(); len(s.Seeds) != 2 {
		t.Fatalf("admin sees seeds %+v, want bweb and cweb", s.Seeds)
	}
	bKey, cKey := pubs["b"].id(), pubs["c"].id()

	// A plain deny keeps what the subject published.
	var plain daemon.OpResult
	a.json(&plain, "deny", bKey, "--reason", "left")
	if len(plain.Fell) != 0 {
		t.Errorf("a plain deny dropped %v", plain.Fell)
	}
	// A cascading deny drops it.
	out := a.must("deny", cKey, "--reason", "stolen", "--cascade")
	if !strings.Contains(out, "1 ops stopped counting") {
		t.Errorf("deny --cascade says:\n%s", out)
	}

	var audit []daemon.AuditEntry
	a.json(&audit, "audit")
	denies := map[string]reducers.Event{}
	for _, e := range audit {
		if e.What == reducers.EventDeny {
			denies[e.Subject.String()] = e.Event
		}
	}
	if e, ok := denies[bKey]; !ok || e.Reason != "left" || len(e.Fell) != 0 || e.Op != plain.ID {
		t.Errorf("audit of the plain deny: %+v", e)
	}
	if e, ok := denies[cKey]; !ok || e.Reason != "stolen" || !slices.Equal(e.Fell, []oplog.ID{seedOp["c"]}) {
		t.Errorf("audit of the cascading deny: %+v; want fell = [%s]", e, seedOp["c"].Short())
	}
	if !strings.Contains(a.must("audit"), "(1 ops fell with it)") {
		t.Errorf("audit table does not show what fell")
	}

	s := a.status()
	var names []string
	for _, sd := range s.Seeds {
		names = append(names, sd.Name)
	}
	if !slices.Equal(names, []string{"bweb"}) {
		t.Errorf("seeds after the denies: %v, want [bweb]", names)
	}
	for _, k := range []string{bKey, cKey} {
		if m := member(s, k); m == nil || !m.Denied || m.Active {
			t.Errorf("%s after deny: %+v", k[:8], m)
		}
	}

	// Only the root may deny an admin. The directory 'pln init' ran in holds
	// the root key, so its deny is signed by the root; an admin elsewhere is
	// refused.
	d := newDir(t, "d")
	a.must("grant", d.id(), "--tier", "admin")
	e := newDir(t, "e")
	var inv daemon.InviteResult
	a.json(&inv, "invite", "--tier", "admin")
	e.must("join", inv.Token, "--no-up", "--name", "eve")
	shared := filepath.Join(t.TempDir(), "a.log")
	a.must("log", "export", shared)
	e.must("log", "import", shared) // e learns that d is an admin
	e.fail([]string{"deny", d.id()}, "only the root")
	a.must("deny", d.id(), "--reason", "granted by mistake")
	var evs []daemon.AuditEntry
	a.json(&evs, "audit", "--peer", d.id())
	if last := evs[len(evs)-1]; last.What != "deny" || last.AuthorName != "root" {
		t.Errorf("deny of an admin from the root's directory: %+v; want a deny by root", last)
	}
}

func TestLogExportImport(t *testing.T) {
	t.Parallel()
	a := newDir(t, "a")
	a.must("init", "--name", "alpha")
	stopped := filepath.Join(t.TempDir(), "copies")
	copyDir(t, a.path, filepath.Join(stopped, "at-init")) // genesis and the admin grant only
	for _, name := range []string{"k1", "k2", "k3"} {
		a.must("grant", newDir(t, name).id())
	}
	a.must("seed", "--digest", digest("x"), "web")
	file := filepath.Join(t.TempDir(), "a.log")
	if out := a.must("log", "export", file); !strings.Contains(out, "exported 6 ops to "+file) {
		t.Errorf("export says %q", out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ends := frameEnds(t, raw)
	if len(ends) != 6 {
		t.Fatalf("export holds %d ops, want 6", len(ends))
	}
	copyOf := func(name string) *dir {
		d := &dir{t: t, path: filepath.Join(t.TempDir(), name)}
		copyDir(t, filepath.Join(stopped, "at-init"), d.path)
		return d
	}

	// A whole log reproduces the view.
	whole := copyOf("whole")
	var res daemon.ImportResult
	whole.json(&res, "log", "import", file)
	if res.Read != 6 || res.Added != 4 || res.Duplicate != 2 || len(res.Bad) != 0 || res.Truncated != "" {
		t.Errorf("import of a whole log: %+v", res)
	}
	if got, want := whole.status().View, a.status().View; got != want {
		t.Errorf("after import the view is %s, the exporter's %s", got[:8], want[:8])
	}

	// One op with a damaged signature: reported by position, the rest kept.
	bad := slices.Clone(raw)
	bad[ends[3]-1] ^= 0x01 // the last byte of op 4's signature
	badFile := filepath.Join(t.TempDir(), "bad.log")
	writeFile(t, badFile, bad)
	damaged := copyOf("damaged")
	out := damaged.must("log", "import", badFile)
	if !strings.Contains(out, "op 4 skipped:") || !strings.Contains(out, "read 6 ops: 3 new, 2 already here, 1 bad") {
		t.Errorf("import of a log with one bad op says:\n%s", out)
	}
	if strings.Count(out, "skipped") != 1 {
		t.Errorf("import skipped more than op 4:\n%s", out)
	}
	var log []daemon.LogEntry
	damaged.json(&log, "log")
	if len(log) != 5 {
		t.Errorf("after importing 5 good ops the log holds %d", len(log))
	}

	// A log cut short inside op 5: the four before it are imported.
	cutFile := filepath.Join(t.TempDir(), "cut.log")
	writeFile(t, cutFile, raw[:ends[4]-10])
	cut := copyOf("cut")
	cut.json(&res, "log", "import", cutFile)
	if res.Read != 4 || res.Added != 2 || res.Duplicate != 2 || !strings.Contains(res.Truncated, "cut short") {
		t.Errorf("import of a cut log: %+v", res)
	}
	if out := copyOf("cut-table").must("log", "import", cutFile); !strings.Contains(out, "stopped early: ") {
		t.Errorf("import of a cut log does not say it stopped early:\n%s", out)
	}

	// Another cluster's log: refused whole.
	beta := newDir(t, "beta")
	beta.must("init", "--name", "beta")
	betaFile := filepath.Join(t.TempDir(), "beta.log")
	beta.must("log", "export", betaFile)
	alphaID, betaID := a.status().Cluster, beta.status().Cluster
	a.fail([]string{"log", "import", betaFile}, "nothing imported", alphaID.Short(), betaID.Short())

	// Not a log at all, and no file.
	junk := filepath.Join(t.TempDir(), "junk")
	writeFile(t, junk, []byte("hello\n"))
	a.fail([]string{"log", "import", junk}, "not a pln log file")
	a.fail([]string{"log", "import", filepath.Join(t.TempDir(), "none")}, "")
}

// frameEnds returns, for each op in a log file, the offset just past it.
func frameEnds(t *testing.T, raw []byte) []int {
	t.Helper()
	lr, err := store.NewLogReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var ends []int
	for {
		if _, _, err := lr.Next(); err != nil {
			break
		}
		ends = append(ends, int(lr.Offset()))
	}
	return ends
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVersionAndPLNDir(t *testing.T) {
	t.Parallel()
	r := runPln(t, nil, "version")
	if r.code != 0 || r.stdout != "pln "+testVersion+"\n" {
		t.Errorf("version: %v", r)
	}
	r = runPln(t, nil, "version", "--json")
	var v map[string]string
	if json.Unmarshal([]byte(r.stdout), &v) != nil || v["version"] != testVersion {
		t.Errorf("version --json: %v", r)
	}

	// PLN_DIR stands in for --dir.
	path := filepath.Join(t.TempDir(), "env")
	env := []string{"PLN_DIR=" + path}
	if r := runPln(t, env, "init", "--name", "envy"); r.code != 0 {
		t.Fatal(r)
	}
	r = runPln(t, env, "status", "--json")
	var s daemon.Status
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil || s.ClusterName != "envy" {
		t.Fatalf("status with PLN_DIR: %v", r)
	}
	if r := runPln(t, env, "id"); strings.TrimSpace(r.stdout) != s.Node.String() {
		t.Errorf("pln id with PLN_DIR printed %q, status says %s", r.stdout, s.Node)
	}
	// --dir wins over PLN_DIR.
	other := filepath.Join(t.TempDir(), "flag")
	if r := runPln(t, env, "--dir", other, "init", "--name", "flagged"); r.code != 0 {
		t.Fatal(r)
	}
	if r := runPln(t, env, "--dir", other, "status", "--json"); !strings.Contains(r.stdout, `"flagged"`) {
		t.Errorf("--dir did not win over PLN_DIR: %v", r)
	}
}
