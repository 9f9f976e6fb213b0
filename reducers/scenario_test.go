package reducers

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/pln-mesh/pln/oplog"
)

// Golden scenario scripts, in the style of etcd raft's testdata: each file
// under testdata/reducers is one story, told as a list of ops and the views,
// placements, routes and audit trails they lead to. The expected outputs are
// rewritten with
//
//	go test ./reducers -run TestScenarios -update    (or datadriven's -rewrite)
//
// and the diff is then read like any other code change.
//
// The language (every argument is key=value; lists are key=(a, b) or a,b):
//
//	cluster name=demo [maxoffset=5000] [interval=2000] [live=3] [per-replica=50]
//	grant by=root to=n1 tier=admin [props=zone=eu,gpu=yes] [expires=T]
//	invite by=a1 key=inv1 confers=member [props=...] [expires=T]
//	redeem inv=inv1 node=n3 [tier=...] [props=...] [expires=T]   (defaults: the invite's)
//	deny by=root subject=n1 [keep=(g1, g2)] [reason=(free text)]
//	seed by=p1 name=hello digest=hello replicas=1:3 [kind=wasm] [memory=64MiB] [policy=zone=eu]
//	unseed by=p1 name=hello
//	serve by=n1 name=db port=5432 proto=tcp [node=n1]
//	claim node=n1 seed=hello state=ready [digest=...] [by=n1]     (digest: the seed's current one)
//	load node=n1 [mem=1GiB] [used=100MiB] [cpu=2000] [cpuused=100] [coord=x,y,h] [sat=0]
//	     [demand=(hello:20)] [seedsat=(hello:500)] [cached=(hello)] [by=n1]
//	clock now=T                                       (time passes)
//	view [now=T] [arrival=reverse|shuffle]
//	place seed=hello [now=T]
//	route from=n3 seed=hello call=(a, b) [now=T]
//	audit [now=T]
//
// Every op takes [at=T] [label=name]. Keys are named (the key called "n1"
// is derived from the string "n1"); digests are named too (digest=hello is
// the SHA-256 of "hello"), and outputs print names and labels, never hex.
// Times T are milliseconds after a fixed epoch ("1500", "1500+2" for logical
// tick 2, or with a unit: "90s", "1h"); demand is in calls per second; sizes
// take KiB, MiB and GiB.
//
// The scenario keeps a clock, as a node does. An op without at= is stamped
// one logical tick after the newest op so far; an op moves the clock forward
// to its time unless it is more than the cluster's MaxOffset ahead of it (a
// bad clock must not drag us into the future), and now=T (on any command
// that takes it, and on "clock") moves it forward to T. Each op prints how the audit judges it at the clock: ok, refused (and
// why) or held. view, place, route and audit fold all the ops so far at now
// (default: the clock).
//
// Behind every output the scenario checks what the story cannot show: the
// fold of the ops in reverse and shuffled orders, and the incremental Folder
// fed as the story went, give the same view; Place and Route agree with the
// oracle in oracle_test.go.

var update = flag.Bool("update", false, "rewrite the golden scenario scripts under testdata/reducers (datadriven's -rewrite does the same)")

// scenarioDir holds the scripts; golden op scripts live in the top-level
// testdata/ (DESIGN.md §2).
const scenarioDir = "../testdata/reducers"

func TestScenarios(t *testing.T) {
	if *update {
		if err := flag.Set("rewrite", "true"); err != nil {
			t.Fatal(err)
		}
	}
	datadriven.Walk(t, scenarioDir, func(t *testing.T, path string) {
		s := newScenario()
		datadriven.RunTest(t, path, s.run)
	})
}

// scenario is the state of one script.
type scenario struct {
	t *testing.T // the current directive's test

	root    string
	cluster oplog.ClusterID
	params  Params
	ops     []*oplog.Op

	labels   map[oplog.ID]string
	byLabel  map[string]*oplog.Op
	names    map[oplog.Key]string
	digests  map[oplog.Digest]string
	invites  map[string]*Grant       // invite key name → the newest invite for it in the script
	current  map[string]oplog.Digest // seed name → digest of its newest seed op in the script
	kindSeen map[oplog.Kind]int      // for automatic labels

	clock     int64     // ms after the epoch
	last      oplog.HLC // newest HLC stamped so far, held ops aside
	folder    *Folder   // fed as the story goes, checked against Fold
	folderNow oplog.HLC // newest now the folder has seen
}

func newScenario() *scenario {
	return &scenario{
		root:     "root",
		params:   DefaultParams(),
		labels:   map[oplog.ID]string{},
		byLabel:  map[string]*oplog.Op{},
		names:    map[oplog.Key]string{},
		digests:  map[oplog.Digest]string{},
		invites:  map[string]*Grant{},
		current:  map[string]oplog.Digest{},
		kindSeen: map[oplog.Kind]int{},
	}
}

func (s *scenario) run(t *testing.T, d *datadriven.TestData) string {
	s.t = t
	if d.Input != "" {
		t.Fatalf("%s: %s takes no input lines", d.Pos, d.Cmd)
	}
	a := &args{t: t, d: d, used: map[string]bool{}}
	if d.Cmd != "cluster" && s.folder == nil {
		t.Fatalf("%s: start the script with 'cluster'", d.Pos)
	}
	var out string
	switch d.Cmd {
	case "cluster":
		out = s.genesis(a)
	case "grant":
		g := &Grant{Subject: s.key(a.str("to")), Tier: a.tier("tier"), Props: a.props("props"), Expires: a.optTime("expires")}
		if a.has("confers") {
			g.Confers = a.tier("confers")
		}
		out = s.add(a, a.str("by"), g)
	case "invite":
		name := a.str("key")
		g := &Grant{Subject: s.key(name), Tier: TierInvite, Confers: a.tier("confers"), Props: a.props("props"), Expires: a.optTime("expires")}
		s.invites[name] = g
		out = s.add(a, a.str("by"), g)
	case "redeem":
		inv := a.str("inv")
		g := &Grant{Subject: s.key(a.str("node")), Expires: a.optTime("expires")}
		if i := s.invites[inv]; i != nil {
			g.Tier, g.Props = i.Confers, i.Props
		}
		if a.has("tier") {
			g.Tier = a.tier("tier")
		}
		if a.has("props") {
			g.Props = a.props("props")
		}
		out = s.add(a, inv, g)
	case "deny":
		dn := &Deny{Subject: s.key(a.str("subject")), Reason: strings.Join(a.list("reason"), ", ")}
		for _, l := range a.list("keep") {
			op := s.byLabel[l]
			if op == nil {
				t.Fatalf("%s: keep names %q, which is no op's label", d.Pos, l)
			}
			dn.Keep = append(dn.Keep, op.ID())
		}
		out = s.add(a, a.str("by"), dn)
	case "seed":
		name, dg := a.str("name"), s.digest(a.str("digest"))
		sd := &Seed{Name: name, Kind: a.opt("kind", SeedWASM), Digest: dg, MemoryBytes: a.bytes("memory"), SizeBytes: a.bytes("size"), Policy: a.props("policy")}
		lo, hi, ok := strings.Cut(a.str("replicas"), ":")
		sd.MinReplicas, sd.MaxReplicas = atoi(t, lo), atoi(t, hi)
		if !ok {
			t.Fatalf("%s: replicas is min:max", d.Pos)
		}
		s.current[name] = dg
		out = s.add(a, a.str("by"), sd)
	case "unseed":
		out = s.add(a, a.str("by"), &Seed{Name: a.str("name"), Tombstone: true})
	case "serve":
		by := a.str("by")
		out = s.add(a, by, &Serve{Node: s.key(a.opt("node", by)), Name: a.str("name"), Port: a.int("port"), Proto: a.str("proto"), Policy: a.props("policy")})
	case "claim":
		node, seed := a.str("node"), a.str("seed")
		dg, ok := s.current[seed]
		if a.has("digest") {
			dg, ok = s.digest(a.str("digest")), true
		}
		if !ok {
			t.Fatalf("%s: no seed %s in the script yet; give digest=", d.Pos, seed)
		}
		out = s.add(a, a.opt("by", node), &Claim{Node: s.key(node), Seed: seed, Digest: dg, State: a.str("state")})
	case "load":
		out = s.add(a, a.opt("by", a.str("node")), s.load(a))
	case "clock":
		out = rel(s.now(a))
	case "view":
		now := s.now(a)
		out = s.renderView(s.fold(now, a.opt("arrival", "script")), now)
	case "place":
		now := s.now(a)
		out = s.renderPlace(s.fold(now, "script"), a.str("seed"), now)
	case "route":
		now := s.now(a)
		out = s.renderRoute(s.fold(now, "script"), s.key(a.str("from")), a.str("seed"), a.list("call"), now)
	case "audit":
		now := s.now(a)
		s.fold(now, "script") // for its cross-checks
		out = s.renderAudit(s.audit(now))
	default:
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	}
	a.done()
	return tidy(out)
}

// genesis founds the cluster: the root key's genesis op at t=0.
func (s *scenario) genesis(a *args) string {
	if s.folder != nil {
		s.t.Fatalf("%s: one cluster per script", a.d.Pos)
	}
	s.cluster = clusterOf(s.root)
	s.names[pub(s.root)] = s.root
	s.folder = NewFolder(s.cluster)
	p := DefaultParams()
	if a.has("maxoffset") {
		p.MaxOffsetMillis = a.duration("maxoffset")
	}
	if a.has("interval") {
		p.LoadIntervalMillis = a.duration("interval")
	}
	if a.has("live") {
		p.LiveIntervals = a.int("live")
	}
	if a.has("per-replica") {
		p.ReplicaMilliCPS = a.milli("per-replica")
	}
	s.params = p
	out := s.add(a, s.root, &Genesis{Name: a.opt("name", "demo"), Root: pub(s.root), Params: p})
	return fmt.Sprintf("%s\nparams: max-offset=%dms load-interval=%dms live-intervals=%d per-replica=%s/s",
		out, p.MaxOffsetMillis, p.LoadIntervalMillis, p.LiveIntervals, fmtMilli(p.ReplicaMilliCPS))
}

// load builds a load report from its arguments.
func (s *scenario) load(a *args) *Load {
	l := &Load{
		Node:         s.key(a.str("node")),
		MemBytes:     a.bytes("mem"),
		MemUsedBytes: a.bytes("used"),
		CPUMilli:     a.optInt("cpu"),
		CPUUsedMilli: a.optInt("cpuused"),
		SaturationPM: a.optInt("sat"),
		InFlight:     a.optInt("inflight"),
	}
	if c := a.list("coord"); len(c) > 0 {
		if len(c) != 3 {
			s.t.Fatalf("%s: coord is x,y,h in microseconds", a.d.Pos)
		}
		l.Coord = Coord{X: atoi(s.t, c[0]), Y: atoi(s.t, c[1]), H: atoi(s.t, c[2])}
	}
	seed := func(name string) SeedLoad {
		if l.Seeds == nil {
			l.Seeds = map[string]SeedLoad{}
		}
		return l.Seeds[name]
	}
	for _, kv := range a.list("demand") {
		name, v := a.pair(kv)
		sl := seed(name)
		sl.DemandMilliCPS = parseMilli(s.t, v)
		l.Seeds[name] = sl
	}
	for _, kv := range a.list("seedsat") {
		name, v := a.pair(kv)
		sl := seed(name)
		sl.SaturationPM = atoi(s.t, v)
		l.Seeds[name] = sl
	}
	for _, name := range a.list("cached") {
		l.Cached = append(l.Cached, s.digest(name))
	}
	return l
}

// add stamps, signs and appends an op, and says how the audit judges it.
func (s *scenario) add(a *args, author string, b Body) string {
	kind := KindOf(b)
	s.kindSeen[kind]++
	label := a.opt("label", fmt.Sprintf("%s%d", kind, s.kindSeen[kind]))
	if s.byLabel[label] != nil {
		s.t.Fatalf("%s: label %q is taken", a.d.Pos, label)
	}
	hlc := s.last + 1
	if a.has("at") {
		hlc = a.time("at")
	} else if c := at(s.clock); hlc < c {
		hlc = c
	}
	s.names[pub(author)] = author
	op := sign(s.t, s.cluster, author, hlc, b)
	s.labels[op.ID()], s.byLabel[label] = label, op
	s.ops = append(s.ops, op)
	if hlc.Wall()-epochMillis-s.clock <= s.params.MaxOffsetMillis {
		s.clock = max(s.clock, hlc.Wall()-epochMillis)
		s.last = max(s.last, hlc)
	}
	now := at(s.clock)
	s.folderNow = max(s.folderNow, now)
	s.folder.Add(op, s.folderNow)

	verdict := "ok"
	for _, e := range s.audit(now) {
		if e.Op != op.ID() {
			continue
		}
		switch {
		case e.What == EventRefused:
			verdict = "refused: " + s.clean(e.Reason)
		case e.What == EventHeld:
			verdict = fmt.Sprintf("held: more than %d ms ahead of the clock (t=%d)", s.params.MaxOffsetMillis, s.clock)
		case len(e.Fell) > 0:
			verdict = "ok; fell: " + s.labelList(e.Fell)
		}
	}
	return fmt.Sprintf("%s: %s", label, verdict)
}

// now reads now= (default: the clock) and moves the clock forward to it.
func (s *scenario) now(a *args) oplog.HLC {
	if !a.has("now") {
		return at(s.clock)
	}
	h := a.time("now")
	s.clock = max(s.clock, h.Wall()-epochMillis)
	return h
}

// fold folds every op so far at now, in the named arrival order, and checks
// that every other order, and the Folder fed along the way, agree with it.
func (s *scenario) fold(now oplog.HLC, arrival string) *View {
	orders := map[string][]*oplog.Op{
		"script":  s.ops,
		"reverse": reversed(s.ops),
		"shuffle": shuffled(s.ops, 1),
	}
	ops, ok := orders[arrival]
	if !ok {
		s.t.Fatalf("arrival %q is not script, reverse or shuffle", arrival)
	}
	v := Fold(s.cluster, ops, now)
	want := s.renderView(v, now)
	for name, alt := range orders {
		for dup := range 2 {
			if dup == 1 {
				alt = append(slices.Clone(alt), shuffled(s.ops, 7)[:len(s.ops)/2]...)
			}
			w := Fold(s.cluster, alt, now)
			if w.Digest() != v.Digest() || s.renderView(w, now) != want {
				s.t.Errorf("folding in %s order (duplicates: %v) gives another view:\n%s\nwant:\n%s", name, dup == 1, s.renderView(w, now), want)
			}
		}
	}
	if now >= s.folderNow {
		s.folderNow = now
		if fv := s.folder.View(now); fv.Digest() != v.Digest() || s.renderView(fv, now) != want {
			s.t.Errorf("the incremental Folder disagrees with Fold:\n%s\nwant:\n%s", s.renderView(fv, now), want)
		}
	}
	return v
}

// audit is the audit trail at now, checked to be the same in reverse order.
func (s *scenario) audit(now oplog.HLC) []Event {
	evs := Audit(s.cluster, s.ops, now)
	if rev := Audit(s.cluster, reversed(s.ops), now); !reflect.DeepEqual(rev, evs) {
		s.t.Errorf("the audit depends on arrival order:\n%s\nreversed:\n%s", s.renderAudit(evs), s.renderAudit(rev))
	}
	return evs
}

func (s *scenario) key(name string) oplog.Key {
	k := pub(name)
	s.names[k] = name
	return k
}

func (s *scenario) digest(name string) oplog.Digest {
	d := digestOf(name)
	s.digests[d] = name
	return d
}

func reversed(ops []*oplog.Op) []*oplog.Op {
	r := slices.Clone(ops)
	slices.Reverse(r)
	return r
}

func shuffled(ops []*oplog.Op, seed uint64) []*oplog.Op {
	r := slices.Clone(ops)
	rng := rand.New(rand.NewPCG(seed, 0))
	rng.Shuffle(len(r), func(i, j int) { r[i], r[j] = r[j], r[i] })
	return r
}

// args reads a directive's arguments and refuses any it did not read, so a
// misspelt argument fails the script instead of being silently ignored.
type args struct {
	t    *testing.T
	d    *datadriven.TestData
	used map[string]bool
}

func (a *args) has(k string) bool {
	a.used[k] = true
	return a.d.HasArg(k)
}

func (a *args) str(k string) string {
	a.used[k] = true
	arg, ok := a.d.Arg(k)
	if !ok {
		a.t.Fatalf("%s: %s needs %s=", a.d.Pos, a.d.Cmd, k)
	}
	return strings.Join(arg.Vals, ",")
}

func (a *args) opt(k, def string) string {
	if !a.has(k) {
		return def
	}
	return a.str(k)
}

// list reads key=(a, b) or key=a,b.
func (a *args) list(k string) []string {
	if !a.has(k) {
		return nil
	}
	var out []string
	for _, v := range strings.Split(a.str(k), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// pair splits "name:value".
func (a *args) pair(kv string) (string, string) {
	k, v, ok := strings.Cut(kv, ":")
	if !ok {
		a.t.Fatalf("%s: %q is not name:value", a.d.Pos, kv)
	}
	return k, v
}

func (a *args) props(k string) map[string]string {
	var m map[string]string
	for _, kv := range a.list(k) {
		pk, pv, ok := strings.Cut(kv, "=")
		if !ok {
			a.t.Fatalf("%s: property %q is not key=value", a.d.Pos, kv)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[pk] = pv
	}
	return m
}

func (a *args) tier(k string) Tier {
	t, err := ParseTier(a.str(k))
	if err != nil {
		a.t.Fatalf("%s: %v", a.d.Pos, err)
	}
	return t
}

func (a *args) int(k string) int64 { return atoi(a.t, a.str(k)) }

func (a *args) optInt(k string) int64 {
	if !a.has(k) {
		return 0
	}
	return a.int(k)
}

func (a *args) milli(k string) int64 { return parseMilli(a.t, a.str(k)) }

func (a *args) bytes(k string) int64 {
	if !a.has(k) {
		return 0
	}
	return parseBytes(a.t, a.str(k))
}

func (a *args) duration(k string) int64 { return parseMillis(a.t, a.str(k)) }

// time reads "1500", "1500+2" (logical tick 2) or "1h".
func (a *args) time(k string) oplog.HLC {
	v := a.str(k)
	base, tick, hasTick := strings.Cut(v, "+")
	h := at(parseMillis(a.t, base))
	if hasTick {
		h += oplog.HLC(atoi(a.t, tick))
	}
	return h
}

// optTime reads a time, or 0 (never) if absent.
func (a *args) optTime(k string) oplog.HLC {
	if !a.has(k) {
		return 0
	}
	return a.time(k)
}

func (a *args) done() {
	for _, arg := range a.d.CmdArgs {
		if !a.used[arg.Key] {
			a.t.Fatalf("%s: %s takes no argument %q", a.d.Pos, a.d.Cmd, arg.Key)
		}
	}
}

func atoi(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	if err != nil {
		t.Fatalf("%q is not an integer", s)
	}
	return n
}

// parseMillis reads milliseconds, bare or as a Go duration ("90s", "1h").
func parseMillis(t testing.TB, s string) int64 {
	t.Helper()
	if d, err := time.ParseDuration(s); err == nil && strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' }) >= 0 {
		return d.Milliseconds()
	}
	return atoi(t, s)
}

// parseMilli reads a decimal with up to three places as thousandths:
// "20" → 20000, "0.5" → 500.
func parseMilli(t testing.TB, s string) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 3 {
		t.Fatalf("%q has more than three decimal places", s)
	}
	n := atoi(t, whole) * 1000
	if frac != "" {
		f := atoi(t, frac+strings.Repeat("0", 3-len(frac)))
		if strings.HasPrefix(whole, "-") {
			f = -f
		}
		n += f
	}
	return n
}

var byteUnits = []struct {
	suffix string
	size   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func parseBytes(t testing.TB, s string) int64 {
	t.Helper()
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			return atoi(t, n) * u.size
		}
	}
	return atoi(t, s)
}
