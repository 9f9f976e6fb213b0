package reducers

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/pln-mesh/pln/oplog"
)

// How the scenario scripts print views, placements, routes and audit trails:
// stable text, names instead of keys, labels instead of op IDs, times
// relative to the epoch. The scenario's property checks also compare these
// renderings, so everything a View holds that a user could notice is here.

// rel prints an HLC as milliseconds after the epoch, with its logical tick
// if it has one.
func rel(h oplog.HLC) string {
	if h.Logical() != 0 {
		return fmt.Sprintf("t=%d+%d", h.Wall()-epochMillis, h.Logical())
	}
	return fmt.Sprintf("t=%d", h.Wall()-epochMillis)
}

func (s *scenario) name(k oplog.Key) string {
	if n, ok := s.names[k]; ok {
		return n
	}
	return k.Short()
}

func (s *scenario) label(id oplog.ID) string {
	if l, ok := s.labels[id]; ok {
		return l
	}
	return id.Short()
}

func (s *scenario) labelList(ids []oplog.ID) string {
	ls := make([]string, len(ids))
	for i, id := range ids {
		ls[i] = s.label(id)
	}
	slices.Sort(ls)
	return strings.Join(ls, ", ")
}

func (s *scenario) digestName(d oplog.Digest) string {
	if n, ok := s.digests[d]; ok {
		return n
	}
	return oplog.ID(d).Short()
}

var (
	hlcText   = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\+\d+`)
	shortText = regexp.MustCompile(`\b[0-9a-f]{8}\b`)
)

// clean replaces the op IDs and times in a reason with labels and relative
// times.
func (s *scenario) clean(reason string) string {
	reason = hlcText.ReplaceAllStringFunc(reason, func(t string) string {
		h, err := oplog.ParseHLC(t)
		if err != nil {
			return t
		}
		return rel(h)
	})
	short := map[string]string{}
	for id, l := range s.labels {
		short[id.Short()] = l
	}
	return shortText.ReplaceAllStringFunc(reason, func(h string) string {
		if l, ok := short[h]; ok {
			return l
		}
		return h
	})
}

// table aligns rows of cells.
type table struct {
	buf bytes.Buffer
	w   *tabwriter.Writer
}

func newTable() *table {
	t := &table{}
	t.w = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.w, "  "+strings.Join(cells, "\t")) }

func (t *table) String() string {
	t.w.Flush()
	return t.buf.String()
}

// tidy trims trailing spaces, which tabwriter leaves after empty cells.
func tidy(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

func fmtBytes(n int64) string {
	for _, u := range byteUnits {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprint(n)
}

// fmtMilli prints thousandths as a decimal: 20000 → "20", 500 → "0.5".
func fmtMilli(n int64) string {
	if n%1000 == 0 {
		return fmt.Sprint(n / 1000)
	}
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%03d", sign, n/1000, n%1000), "0")
}

func fmtProps(p map[string]string) string {
	if len(p) == 0 {
		return "-"
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		kv = append(kv, k+"="+p[k])
	}
	return strings.Join(kv, ",")
}

// renderView prints everything a view holds.
func (s *scenario) renderView(v *View, now oplog.HLC) string {
	var b strings.Builder
	fmt.Fprintf(&b, "view at %s: %s, digest %s", rel(now), v.Name, oplog.ID(v.Digest()).Short())
	if v.Pending > 0 {
		fmt.Fprintf(&b, ", %d held (too far ahead)", v.Pending)
	}
	b.WriteString("\n")

	keys := v.MemberKeys()
	slices.SortFunc(keys, func(x, y oplog.Key) int {
		return cmp.Or(-cmp.Compare(bool2int(v.Members[x].Root), bool2int(v.Members[y].Root)), cmp.Compare(s.name(x), s.name(y)))
	})
	b.WriteString("members:\n")
	t := newTable()
	for _, k := range keys {
		m := v.Members[k]
		tier := m.Tier.String()
		if m.Tier == TierInvite {
			tier += ":" + m.Confers.String()
		}
		granted := "-"
		switch {
		case m.Root:
			granted = "root"
		case !m.GrantedBy.IsZero():
			granted = fmt.Sprintf("by %s at %s (%s)", s.name(m.GrantedBy), rel(m.GrantedAt), s.label(m.Grant))
		}
		expires := ""
		if m.Expires != 0 {
			expires = "expires " + rel(m.Expires)
		}
		status := ""
		switch {
		case m.Denied:
			status = fmt.Sprintf("denied by %s at %s (%s)", s.name(m.DeniedBy), rel(m.DeniedAt), s.label(m.Deny))
			if m.DenyReason != "" {
				status += ": " + m.DenyReason
			}
		case m.Tier == TierInvite:
		case !m.Active(now):
			status = "expired"
		case v.Live(k, now):
			status = "live"
		case v.Loads[k] != nil:
			status = "dead: " + whyNotLive(v, k, now)
		}
		t.row(s.name(k), tier, fmtProps(m.Props), granted, expires, status)
	}
	b.WriteString(t.String())

	if len(v.Seeds) > 0 {
		b.WriteString("seeds:\n")
		t := newTable()
		for _, n := range slices.Sorted(maps.Keys(v.Seeds)) {
			sd := v.Seeds[n]
			by := fmt.Sprintf("by %s at %s (%s)", s.name(sd.Author), rel(sd.HLC), s.label(sd.ID))
			if sd.Tombstone {
				t.row(n, "withdrawn", by)
				continue
			}
			cells := []string{n, sd.Kind, "digest=" + s.digestName(sd.Digest), fmt.Sprintf("replicas=%d:%d", sd.MinReplicas, sd.MaxReplicas)}
			if sd.MemoryBytes > 0 {
				cells = append(cells, "memory="+fmtBytes(sd.MemoryBytes))
			}
			if len(sd.Policy) > 0 {
				cells = append(cells, "policy="+fmtProps(sd.Policy))
			}
			t.row(append(cells, by)...)
		}
		b.WriteString(t.String())
	}

	if len(v.Services) > 0 {
		b.WriteString("services:\n")
		t := newTable()
		sks := slices.Collect(maps.Keys(v.Services))
		slices.SortFunc(sks, func(x, y ServiceKey) int {
			return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(s.name(x.Node), s.name(y.Node)))
		})
		for _, k := range sks {
			sv := v.Services[k]
			what := fmt.Sprintf("%s:%d", sv.Proto, sv.Port)
			if sv.Tombstone {
				what = "withdrawn"
			}
			t.row(k.Name, s.name(k.Node), what, "at "+rel(sv.HLC), "("+s.label(sv.ID)+")")
		}
		b.WriteString(t.String())
	}

	if len(v.Claims) > 0 {
		b.WriteString("claims:\n")
		t := newTable()
		cks := slices.Collect(maps.Keys(v.Claims))
		slices.SortFunc(cks, func(x, y ClaimKey) int {
			return cmp.Or(cmp.Compare(x.Seed, y.Seed), cmp.Compare(s.name(x.Node), s.name(y.Node)))
		})
		for _, k := range cks {
			c := v.Claims[k]
			t.row(k.Seed, s.name(k.Node), c.State, "digest="+s.digestName(c.Digest), "at "+rel(c.HLC), "("+s.label(c.ID)+")")
		}
		b.WriteString(t.String())
	}

	if len(v.Loads) > 0 {
		b.WriteString("loads:\n")
		t := newTable()
		lks := slices.Collect(maps.Keys(v.Loads))
		slices.SortFunc(lks, func(x, y oplog.Key) int { return cmp.Compare(s.name(x), s.name(y)) })
		for _, k := range lks {
			t.row(append([]string{s.name(k), "at " + rel(v.Loads[k].HLC)}, s.loadCells(&v.Loads[k].Load)...)...)
		}
		b.WriteString(t.String())
	}
	return b.String()
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadCells prints the figures of a load report that are set.
func (s *scenario) loadCells(l *Load) []string {
	var cells []string
	if l.MemBytes > 0 || l.MemUsedBytes > 0 {
		cells = append(cells, fmt.Sprintf("mem=%s/%s", fmtBytes(l.MemUsedBytes), fmtBytes(l.MemBytes)))
	}
	if l.CPUMilli > 0 || l.CPUUsedMilli > 0 {
		cells = append(cells, fmt.Sprintf("cpu=%d/%d", l.CPUUsedMilli, l.CPUMilli))
	}
	if l.SaturationPM > 0 {
		cells = append(cells, fmt.Sprintf("sat=%d‰", l.SaturationPM))
	}
	if l.Coord != (Coord{}) {
		cells = append(cells, fmt.Sprintf("coord=%d,%d,%d", l.Coord.X, l.Coord.Y, l.Coord.H))
	}
	var demand, sat []string
	for _, n := range slices.Sorted(maps.Keys(l.Seeds)) {
		if d := l.Seeds[n].DemandMilliCPS; d != 0 {
			demand = append(demand, fmt.Sprintf("%s:%s/s", n, fmtMilli(d)))
		}
		if p := l.Seeds[n].SaturationPM; p != 0 {
			sat = append(sat, fmt.Sprintf("%s:%d‰", n, p))
		}
	}
	if len(demand) > 0 {
		cells = append(cells, "demand="+strings.Join(demand, ","))
	}
	if len(sat) > 0 {
		cells = append(cells, "seedsat="+strings.Join(sat, ","))
	}
	if len(l.Cached) > 0 {
		var cs []string
		for _, d := range l.Cached {
			cs = append(cs, s.digestName(d))
		}
		cells = append(cells, "cached="+strings.Join(cs, ","))
	}
	return cells
}

// renderPlace prints Explain's answer: how many replicas, every eligible node
// ranked with its score broken down, and why the other nodes were passed
// over. It fails the test where Explain and the oracle disagree.
func (s *scenario) renderPlace(v *View, seed string, now oplog.HLC) string {
	p := Explain(v, seed, now)
	if got := Place(v, seed, now); !slices.Equal(got, p.Nodes) {
		s.t.Errorf("Place %v and Explain %v disagree", got, p.Nodes)
	}
	sd := v.Seeds[seed]
	if sd == nil || sd.Tombstone {
		return fmt.Sprintf("place %s at %s: no such seed; nothing to place", seed, rel(now))
	}
	var b strings.Builder
	want, demand := wantReplicas(v, sd, now)
	if want != p.Want || demand != p.DemandMilliCPS {
		s.t.Errorf("Explain wants %d replicas for %d m-calls/s; the oracle %d for %d", p.Want, p.DemandMilliCPS, want, demand)
	}
	fmt.Fprintf(&b, "place %s at %s: want %d (replicas %d:%d, demand %s/s, %s/s per replica)\n",
		seed, rel(now), p.Want, sd.MinReplicas, sd.MaxReplicas, fmtMilli(p.DemandMilliCPS), fmtMilli(v.Params.ReplicaMilliCPS))

	t := newTable()
	t.row("rank", "node", "score", "= demand", "sticky", "cached", "capacity", "")
	ranked := map[oplog.Key]bool{}
	for i, c := range p.Ranked {
		ranked[c.Node] = true
		sticky, cached, capacity := "", "", c.Score-c.Demand
		if c.Sticky {
			sticky, capacity = fmt.Sprintf("+%d", pointsSticky), capacity-pointsSticky
		}
		if c.Cached {
			cached, capacity = fmt.Sprintf("+%d", pointsCached), capacity-pointsCached
		}
		chosen := ""
		if c.Chosen {
			chosen = "chosen"
		}
		t.row(fmt.Sprint(i+1), s.name(c.Node), fmt.Sprint(c.Score), fmt.Sprint(c.Demand), sticky, cached, fmt.Sprint(capacity), chosen)
		if c.Chosen != (i < p.Want) || c.Chosen != p.Chosen(c.Node) {
			s.t.Errorf("%s is ranked %d of want %d but chosen=%v", s.name(c.Node), i+1, p.Want, c.Chosen)
		}
	}
	b.WriteString(t.String())

	// Everyone else who ever reported load, and why they were passed over.
	var passed []string
	for _, k := range v.MemberKeys() {
		if ranked[k] {
			if why := whyIneligible(v, sd, k); why != "" {
				s.t.Errorf("%s is ranked, but the oracle says: %s", s.name(k), why)
			}
			continue
		}
		why := whyNotLive(v, k, now)
		if why == "" {
			why = whyIneligible(v, sd, k)
			if why == "" {
				s.t.Errorf("%s is live and eligible by the oracle, but not ranked", s.name(k))
			}
		} else if v.Loads[k] == nil {
			continue // never a node: the root, people's keys, invite keys
		} else {
			why = "not live: " + why
		}
		passed = append(passed, fmt.Sprintf("  %s: %s", s.name(k), why))
	}
	if len(passed) > 0 {
		slices.Sort(passed)
		b.WriteString("passed over:\n" + strings.Join(passed, "\n") + "\n")
	}
	return b.String()
}

// renderRoute prints the ready replicas with their cost, the claims that are
// not routes and why, and the order Route gives each call.
func (s *scenario) renderRoute(v *View, from oplog.Key, seed string, calls []string, now oplog.HLC) string {
	var b strings.Builder
	fmt.Fprintf(&b, "route %s from %s at %s\n", seed, s.name(from), rel(now))
	sd := v.Seeds[seed]
	routable := map[oplog.Key]bool{}
	if sd != nil && !sd.Tombstone {
		type row struct {
			node       oplog.Key
			rtt, sat   int64
			overloaded bool
		}
		var rows []row
		var excluded []string
		for _, c := range v.ClaimsFor(seed) {
			if why := whyNoRoute(v, sd, c, now); why != "" {
				excluded = append(excluded, fmt.Sprintf("  %s: %s", s.name(c.Node), why))
				continue
			}
			routable[c.Node] = true
			sat := v.Loads[c.Node].Seeds[seed].SaturationPM
			rows = append(rows, row{c.Node, v.RTT(from, c.Node), sat, sat >= 1000})
		}
		slices.SortFunc(rows, func(x, y row) int {
			return cmp.Or(cmp.Compare(bool2int(x.overloaded), bool2int(y.overloaded)), cmp.Compare(x.rtt+50*x.sat, y.rtt+50*y.sat), cmp.Compare(s.name(x.node), s.name(y.node)))
		})
		t := newTable()
		t.row("replica", "rtt", "sat", "cost", "")
		for _, r := range rows {
			over := ""
			if r.overloaded {
				over = "overloaded"
			}
			t.row(s.name(r.node), fmt.Sprintf("%dµs", r.rtt), fmt.Sprintf("%d‰", r.sat), fmt.Sprintf("%dµs", r.rtt+50*r.sat), over)
		}
		b.WriteString(t.String())
		if len(excluded) > 0 {
			slices.Sort(excluded)
			b.WriteString("not routes:\n" + strings.Join(excluded, "\n") + "\n")
		}
	}
	if len(calls) == 0 {
		calls = []string{"call"}
	}
	for _, call := range calls {
		got := Route(v, from, seed, []byte(call), now)
		names := make([]string, len(got))
		for i, k := range got {
			names[i] = s.name(k)
			if !routable[k] {
				s.t.Errorf("Route offers %s, which the oracle says is no route", s.name(k))
			}
		}
		if len(got) != len(routable) {
			s.t.Errorf("Route offers %d replicas; the oracle %d", len(got), len(routable))
		}
		if len(names) == 0 {
			names = []string{"(no replica)"}
		}
		fmt.Fprintf(&b, "call %s: %s\n", call, strings.Join(names, " "))
	}
	return b.String()
}

// renderAudit prints an audit trail, one event per line.
func (s *scenario) renderAudit(evs []Event) string {
	t := newTable()
	for _, e := range evs {
		what := e.What
		switch e.What {
		case EventGenesis:
			what = "genesis"
		case EventAdmit, EventRegrant, EventRedeem:
			what = fmt.Sprintf("%s %s as %s", e.What, s.name(e.Subject), e.Tier)
		case EventInvite:
			what = fmt.Sprintf("invite %s", s.name(e.Subject))
		case EventDeny:
			what = "deny " + s.name(e.Subject)
			if e.Reason != "" {
				what += " (" + e.Reason + ")"
			}
			if len(e.Fell) > 0 {
				what += "; fell: " + s.labelList(e.Fell)
			}
		case EventRefused, EventHeld:
			what = e.What + ": " + s.clean(e.Reason)
		}
		t.row(rel(e.HLC), s.label(e.Op), e.KindStr, "by "+s.name(e.Author), what)
	}
	return t.String()
}
