package reducers

import (
	"fmt"

	"github.com/pln-mesh/pln/crdt"
	"github.com/pln-mesh/pln/oplog"
)

// Fold returns the view of a set of verified ops at time now. Order and
// duplicates do not matter. Ops more than the cluster's MaxOffset ahead of
// now are held out (View.Pending).
func Fold(cluster oplog.ClusterID, ops []*oplog.Op, now oplog.HLC) *View {
	f := NewFolder(cluster)
	// Geneses first, so that the cluster's MaxOffset is known before any op
	// is judged too far ahead; then membership, then the rest.
	for _, pass := range []func(oplog.Kind) bool{
		func(k oplog.Kind) bool { return k == oplog.KindGenesis },
		func(k oplog.Kind) bool { return k == oplog.KindGrant || k == oplog.KindDeny },
		func(k oplog.Kind) bool { return !isMembership(k) },
	} {
		for _, op := range ops {
			if pass(op.Kind) {
				f.Add(op, now)
			}
		}
	}
	return f.View(now)
}

// Folder folds ops one at a time, in any order, into a View. It is what a
// running node keeps: adding a load or claim costs a map update; adding a
// grant or deny refolds membership (a few thousand ops at most) on the next
// View. A Folder is not safe for concurrent use; the Views it returns are.
type Folder struct {
	cluster oplog.ClusterID

	members  map[oplog.ID]*mop
	mem      *membership // nil when membership must be refolded
	params   Params      // from the earliest root genesis seen
	genesis  *crdt.Stamp // that genesis, nil until one is seen
	seeds    map[string]map[oplog.ID]*dop
	services crdt.LWWMap[ServiceKey, *dop]
	claims   crdt.LWWMap[ClaimKey, *dop]
	loads    crdt.LWWMap[oplog.Key, *oplog.Op]
	pending  map[oplog.ID]*oplog.Op
	frontier oplog.HLC

	track      bool       // whether to record superseded ops (a node does; Fold does not)
	superseded []oplog.ID // loads and claims replaced since the last TakeSuperseded

	view *View // cached until the next change
}

// dop is a data op (seed, serve, claim) with its decoded body.
type dop struct {
	op   *oplog.Op
	id   oplog.ID
	body Body
}

// NewFolder returns an empty folder for a cluster.
func NewFolder(cluster oplog.ClusterID) *Folder {
	return &Folder{
		cluster: cluster,
		members: make(map[oplog.ID]*mop),
		params:  DefaultParams(),
		seeds:   make(map[string]map[oplog.ID]*dop),
		pending: make(map[oplog.ID]*oplog.Op),
	}
}

func isMembership(k oplog.Kind) bool {
	return k == oplog.KindGenesis || k == oplog.KindGrant || k == oplog.KindDeny
}

// Add folds one verified op. An op too far ahead of now waits in Pending until
// a later View(now) admits it; until a genesis is known, any op ahead of now
// waits, since how far is too far is the genesis's to say.
func (f *Folder) Add(op *oplog.Op, now oplog.HLC) {
	if f.ahead(op, now) {
		f.pending[op.ID()] = op
		f.view = nil
		return
	}
	f.add(op)
}

func (f *Folder) add(op *oplog.Op) {
	id := op.ID()
	if op.HLC > f.frontier {
		f.frontier = op.HLC
	}
	stamp := crdt.Stamp{HLC: uint64(op.HLC), ID: id}
	switch op.Kind {
	case oplog.KindGenesis, oplog.KindGrant, oplog.KindDeny:
		if _, dup := f.members[id]; dup {
			return
		}
		body, err := DecodeBody(op)
		f.members[id] = &mop{op: op, id: id, key: oplog.OrderKey(op, id), body: body, err: err}
		if g, ok := body.(*Genesis); ok && oplog.ClusterOf(op.Author) == f.cluster && g.Root == op.Author &&
			(f.genesis == nil || crdt.Compare(stamp, *f.genesis) < 0) {
			f.params, f.genesis = g.Params.withDefaults(), &stamp
		}
		f.mem = nil
	case oplog.KindSeed:
		body, err := DecodeBody(op)
		if err != nil {
			f.view = nil
			return
		}
		name := body.(*Seed).Name
		if f.seeds[name] == nil {
			f.seeds[name] = make(map[oplog.ID]*dop)
		}
		if _, dup := f.seeds[name][id]; dup {
			return
		}
		f.seeds[name][id] = &dop{op: op, id: id, body: body}
	case oplog.KindServe:
		body, err := DecodeBody(op)
		if err != nil {
			f.view = nil
			return
		}
		f.services.Set(ServiceKey{op.Author, body.(*Serve).Name}, &dop{op, id, body}, stamp)
	case oplog.KindClaim:
		body, err := DecodeBody(op)
		if err != nil {
			f.view = nil
			return
		}
		k := ClaimKey{op.Author, body.(*Claim).Seed}
		_, prev, had := f.claims.Get(k)
		f.noteSuperseded(id, prev, had, f.claims.Set(k, &dop{op, id, body}, stamp))
	case oplog.KindLoad:
		// The newest load per node wins before its body is even decoded:
		// most of a log is loads, and only winners are ever read.
		_, prev, had := f.loads.Get(op.Author)
		f.noteSuperseded(id, prev, had, f.loads.Set(op.Author, op, stamp))
	default:
		return
	}
	f.view = nil
}

// ahead reports whether op is too far ahead of now to count yet.
func (f *Folder) ahead(op *oplog.Op, now oplog.HLC) bool {
	if f.genesis == nil && op.Kind != oplog.KindGenesis {
		return op.HLC.Wall() > now.Wall()
	}
	return op.HLC.Wall()-now.Wall() > f.params.MaxOffsetMillis
}

// noteSuperseded records which of an LWW key's old winner and a new op lost.
func (f *Folder) noteSuperseded(id oplog.ID, prev crdt.Stamp, had, won bool) {
	if !f.track {
		return
	}
	switch {
	case won && had:
		f.superseded = append(f.superseded, prev.ID)
	case !won && prev.ID != id:
		f.superseded = append(f.superseded, id)
	}
}

// TrackSuperseded makes the folder record superseded ops for TakeSuperseded.
func (f *Folder) TrackSuperseded() { f.track = true }

// TakeSuperseded returns the loads and claims that newer ones from the same
// node have replaced since the last call. They no longer affect any view, so
// the store takes them out of the sync set and compacts them later.
func (f *Folder) TakeSuperseded() []oplog.ID {
	s := f.superseded
	f.superseded = nil
	return s
}

// View returns the view at now, admitting pending ops whose time has come.
func (f *Folder) View(now oplog.HLC) *View {
	for id, op := range f.pending {
		if !f.ahead(op, now) {
			delete(f.pending, id)
			f.add(op)
		}
	}
	if f.mem == nil {
		mops := make([]*mop, 0, len(f.members))
		for _, m := range f.members {
			mops = append(mops, m)
		}
		f.mem = foldMembership(f.cluster, mops)
		f.view = nil
	}
	if f.view == nil {
		f.view = f.build()
	}
	return f.view
}

// build assembles a View from the membership and the LWW tables.
func (f *Folder) build() *View {
	m := f.mem
	v := &View{
		Cluster:  f.cluster,
		Root:     m.root,
		Params:   m.params,
		Members:  make(map[oplog.Key]*Member, len(m.lines)+1),
		Seeds:    make(map[string]*SeedState, len(f.seeds)),
		Services: make(map[ServiceKey]*Service, f.services.Len()),
		Claims:   make(map[ClaimKey]*ClaimState, f.claims.Len()),
		Loads:    make(map[oplog.Key]*LoadState, f.loads.Len()),
		Frontier: f.frontier,
		Pending:  len(f.pending),
		mem:      m,
	}
	if m.genesis != nil {
		g := m.genesis.body.(*Genesis)
		v.Name, v.GenesisAt = g.Name, m.genesis.op.HLC
		v.Members[m.root] = &Member{Key: m.root, Root: true, Tier: TierAdmin, GrantedBy: m.root, GrantedAt: v.GenesisAt, Grant: m.genesis.id, Props: map[string]string{"name": "root"}}
	}
	for k, line := range m.lines {
		v.Members[k] = memberOf(k, line)
	}
	for name, cands := range f.seeds {
		var best *dop
		for _, c := range cands {
			if (best == nil || crdt.Compare(stampOf(c), stampOf(best)) > 0) && m.authorize(c.op, c.id, TierPublisher) == "" {
				best = c
			}
		}
		if best != nil {
			v.Seeds[name] = &SeedState{Seed: *best.body.(*Seed), Author: best.op.Author, HLC: best.op.HLC, ID: best.id}
		}
	}
	f.services.Range(func(k ServiceKey, d *dop, _ crdt.Stamp) bool {
		s := d.body.(*Serve)
		if s.Node == d.op.Author && m.authorize(d.op, d.id, TierPublisher) == "" {
			v.Services[k] = &Service{Serve: *s, HLC: d.op.HLC, ID: d.id}
		}
		return true
	})
	f.claims.Range(func(k ClaimKey, d *dop, _ crdt.Stamp) bool {
		c := d.body.(*Claim)
		if c.Node == d.op.Author && m.authorize(d.op, d.id, TierMember) == "" {
			v.Claims[k] = &ClaimState{Claim: *c, HLC: d.op.HLC, ID: d.id}
		}
		return true
	})
	f.loads.Range(func(k oplog.Key, op *oplog.Op, s crdt.Stamp) bool {
		if l, why := judgeLoad(m, op, s.ID); why == "" {
			v.Loads[k] = &LoadState{Load: *l, HLC: op.HLC, ID: s.ID}
		}
		return true
	})
	return v
}

func judgeLoad(m *membership, op *oplog.Op, id oplog.ID) (*Load, string) {
	b, err := DecodeBody(op)
	if err != nil {
		return nil, err.Error()
	}
	l := b.(*Load)
	if l.Node != op.Author {
		return nil, "a load report must be about its author"
	}
	if why := m.authorize(op, id, TierMember); why != "" {
		return nil, why
	}
	return l, ""
}

func stampOf(d *dop) crdt.Stamp { return crdt.Stamp{HLC: uint64(d.op.HLC), ID: d.id} }

// memberOf summarises a key's timeline: its newest grant, and the deny after
// it if there is one.
func memberOf(k oplog.Key, line timeline) *Member {
	m := &Member{Key: k}
	for _, e := range line {
		if e.grant != nil {
			g := e.grant
			*m = Member{Key: k, Tier: g.Tier, Confers: g.Confers, Props: g.Props, Expires: g.Expires, GrantedBy: e.by, GrantedAt: e.hlc, Grant: e.id}
			continue
		}
		m.Denied, m.DeniedBy, m.DeniedAt, m.DenyReason, m.Deny = true, e.by, e.hlc, e.deny.Reason, e.id
	}
	return m
}

// String summarises a view for logs and test failures.
func (v *View) String() string {
	d := v.Digest()
	return fmt.Sprintf("view %s: %d members, %d seeds, %d claims, %d loads, frontier %s", oplogShort(d), len(v.Members), len(v.Seeds), len(v.Claims), len(v.Loads), v.Frontier)
}

func oplogShort(d [32]byte) string { return oplog.ID(d).Short() }
