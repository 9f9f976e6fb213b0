package daemon

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pln-mesh/pln/cas"
	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
	"github.com/pln-mesh/pln/wasm"
)

// replicas is the part of a running node that runs seeds. On every tick it
// asks placement which seeds this node should hold; for each newly chosen
// one it fetches the artifact, compiles it and warms an instance, and only
// then claims it ready. A seed no longer chosen for DrainAfter is drained:
// claimed draining, its calls finished, then released. Every claim records
// the view position it was decided from, so 'pln replay --check' can
// recompute it.
type replicas struct {
	n    *Node
	host *wasm.Host
	cas  *cas.Store
	log  *slog.Logger

	mu        sync.Mutex
	held      map[string]*replica // by seed name
	preparing map[string]bool
	fetching  map[oplog.Digest]bool // artifacts being fetched to keep, not run
	meters    *meters

	wg sync.WaitGroup
}

type replica struct {
	digest      oplog.Digest
	mod         *wasm.Module
	concurrency int
	unchosen    time.Time // when placement stopped choosing this node; zero while chosen
	draining    bool
}

// Replica tuning.
const (
	// DrainAfter is how long a node keeps a replica placement no longer
	// chooses before it drains it: hysteresis, so replicas do not flap.
	DrainAfter = 10 * time.Second
	// maxArtifactBytes bounds a WASM artifact fetched from a peer.
	maxArtifactBytes = 256 << 20
	// placeTick is how often the node re-evaluates placement.
	placeTick = 500 * time.Millisecond
	// defaultCallTimeout bounds a call that names no deadline.
	defaultCallTimeout = 30 * time.Second
)

func newReplicas(n *Node, host *wasm.Host, store *cas.Store) *replicas {
	return &replicas{n: n, host: host, cas: store, log: n.log,
		held: make(map[string]*replica), preparing: make(map[string]bool), fetching: make(map[oplog.Digest]bool),
		meters: newMeters(time.Now())}
}

// run re-evaluates placement every tick until ctx is done, then drains.
func (r *replicas) run(ctx context.Context) {
	t := time.NewTicker(placeTick)
	defer t.Stop()
	for {
		r.place(ctx)
		select {
		case <-ctx.Done():
			r.wg.Wait()
			r.closeAll()
			return
		case <-t.C:
		}
	}
}

// place acts on one evaluation of placement for every seed.
func (r *replicas) place(ctx context.Context) {
	n := r.n
	v := n.View()
	now := n.nowHLC()
	for _, name := range v.SeedNames() {
		s := v.Seeds[name]
		if s.Kind != reducers.SeedWASM {
			continue
		}
		chosen := reducers.Explain(v, name, now).Chosen(n.self)
		claim := v.Claims[reducers.ClaimKey{Node: n.self, Seed: name}]
		r.mu.Lock()
		rep := r.held[name]
		if rep != nil && rep.digest != s.Digest {
			rep = nil // a new version: prepare it afresh; the old one drains below
		}
		switch {
		case chosen && rep == nil:
			if !r.preparing[name] {
				r.preparing[name] = true
				r.wg.Go(func() { r.prepare(ctx, v, s) })
			}
		case chosen:
			rep.unchosen = time.Time{}
			if claim == nil || claim.State != reducers.ClaimReady || claim.Digest != s.Digest {
				r.mu.Unlock()
				r.claim(name, s.Digest, reducers.ClaimReady)
				r.mu.Lock()
			}
		case rep != nil && !rep.draining:
			if rep.unchosen.IsZero() {
				rep.unchosen = time.Now()
			} else if time.Since(rep.unchosen) >= DrainAfter {
				rep.draining = true
				r.wg.Go(func() { r.drain(name, rep) })
			}
		}
		if !chosen && !r.fetching[s.Digest] && slices.Contains(reducers.Keepers(v, name, now), n.self) && !r.cas.Has(s.Digest) {
			r.fetching[s.Digest] = true
			r.wg.Go(func() { r.keep(ctx, v, s) })
		}
		r.mu.Unlock()
	}
	// Seeds withdrawn, or replaced by a new digest: drain what is held.
	r.mu.Lock()
	for name, rep := range r.held {
		if s := v.Seeds[name]; (s == nil || s.Tombstone || s.Digest != rep.digest) && !rep.draining {
			rep.draining = true
			r.wg.Go(func() { r.drain(name, rep) })
		}
	}
	r.mu.Unlock()
}

// prepare fetches, compiles and warms seed s, then claims it ready.
func (r *replicas) prepare(ctx context.Context, v *reducers.View, s *reducers.SeedState) {
	defer func() {
		r.mu.Lock()
		delete(r.preparing, s.Name)
		r.mu.Unlock()
	}()
	if !r.fetch(ctx, v, s) {
		return
	}
	code, err := r.cas.ReadAll(s.Digest, maxArtifactBytes)
	if err != nil {
		r.log.Warn("read artifact", "seed", s.Name, "err", err)
		return
	}
	limits := wasm.Limits{MemoryBytes: s.MemoryBytes, Timeout: time.Duration(s.TimeoutMillis) * time.Millisecond, Concurrency: int(s.Concurrency)}
	mod, err := r.host.Load(ctx, s.Name, s.Digest, code, limits)
	if err != nil {
		r.log.Warn("load seed", "seed", s.Name, "err", err)
		return
	}
	r.mu.Lock()
	if old := r.held[s.Name]; old != nil && !old.draining {
		old.draining = true
		r.wg.Go(func() { r.drain(s.Name, old) })
	}
	r.held[s.Name] = &replica{digest: s.Digest, mod: mod, concurrency: limits.Concurrency}
	r.mu.Unlock()
	r.claim(s.Name, s.Digest, reducers.ClaimReady)
}

// keep fetches the artifact of a seed this node keeps a copy of without
// running it (see reducers.Keepers).
func (r *replicas) keep(ctx context.Context, v *reducers.View, s *reducers.SeedState) {
	defer func() {
		r.mu.Lock()
		delete(r.fetching, s.Digest)
		r.mu.Unlock()
	}()
	if r.fetch(ctx, v, s) {
		r.log.Info("keeping a copy of the artifact", "seed", s.Name, "digest", s.Digest.Short())
	}
}

// fetch makes sure the content store has s's artifact, from a peer that
// holds it if need be, and reports whether it has.
func (r *replicas) fetch(ctx context.Context, v *reducers.View, s *reducers.SeedState) bool {
	if r.cas.Has(s.Digest) {
		return true
	}
	peers := holders(v, s, r.n.self)
	if len(peers) == 0 {
		r.log.Warn("no peer holds the artifact", "seed", s.Name, "digest", s.Digest.Short())
		return false
	}
	m := r.n.mesh.Load()
	if m == nil {
		return false
	}
	if err := cas.Fetch(ctx, m, r.cas, s.Digest, peers, maxArtifactBytes, nil); err != nil {
		r.log.Warn("fetch artifact", "seed", s.Name, "err", err)
		return false
	}
	return true
}

// holders lists the nodes that hold a seed's artifact, nearest first: those
// with a claim on its digest, those that list it as cached, and its author.
func holders(v *reducers.View, s *reducers.SeedState, self oplog.Key) []oplog.Key {
	var ks []oplog.Key
	add := func(k oplog.Key) {
		if k != self && !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	for _, c := range v.ClaimsFor(s.Name) {
		if c.Digest == s.Digest && c.State != reducers.ClaimReleased {
			add(c.Node)
		}
	}
	for k, l := range v.Loads {
		if slices.Contains(l.Cached, s.Digest) {
			add(k)
		}
	}
	add(s.Author)
	// Live holders first, nearest first: a dead one can serve nothing.
	now := v.Frontier
	slices.SortStableFunc(ks, func(a, b oplog.Key) int {
		if la, lb := v.Live(a, now), v.Live(b, now); la != lb {
			if la {
				return -1
			}
			return 1
		}
		return cmp.Compare(v.RTT(self, a), v.RTT(self, b))
	})
	return ks
}

// drain claims a replica draining, lets its calls finish, and releases it.
func (r *replicas) drain(name string, rep *replica) {
	r.claim(name, rep.digest, reducers.ClaimDraining)
	rep.mod.Close(context.Background())
	r.mu.Lock()
	if r.held[name] == rep {
		delete(r.held, name)
	}
	r.mu.Unlock()
	r.claim(name, rep.digest, reducers.ClaimReleased)
}

// claim appends this node's claim on a seed, decided from the view as it is
// now: the claim carries the position (ops in the log) and view digest, and
// its HLC is the "now" the decision was made at. A decision the view no
// longer supports (the node stopped being chosen, or is chosen again) is
// not claimed; the next tick decides afresh.
func (r *replicas) claim(name string, digest oplog.Digest, state string) {
	n := r.n
	n.authorMu.Lock()
	defer n.authorMu.Unlock()
	at := n.clock.Now()
	n.mu.Lock()
	seq, v := n.seq, n.folder.View(at)
	n.mu.Unlock()
	if chosen := reducers.Explain(v, name, at).Chosen(n.self); chosen != (state == reducers.ClaimReady) {
		return
	}
	c := &reducers.Claim{Node: n.self, Seed: name, Digest: digest, State: state, Seq: seq, View: v.Digest()}
	op, err := signBody(n.cluster, n.key, at, c)
	if err == nil {
		_, err = n.Ingest(op)
	}
	if err != nil {
		r.log.Warn("claim", "seed", name, "state", state, "err", err)
	}
}

func (r *replicas) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, rep := range r.held {
		rep.mod.Close(context.Background())
		delete(r.held, name)
	}
}

// module returns the loaded replica of a seed with this digest.
func (r *replicas) module(name string, digest oplog.Digest) *replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rep := r.held[name]; rep != nil && rep.digest == digest && !rep.draining {
		return rep
	}
	return nil
}

// saturation is a replica's in-flight calls over its concurrency, per mille.
func (r *replicas) saturation(name string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.held[name]
	if rep == nil || rep.concurrency <= 0 {
		return 0
	}
	return int64(rep.mod.InFlight()) * 1000 / int64(rep.concurrency)
}

// inFlight counts the calls running on this node's replicas.
func (r *replicas) inFlight() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var total int64
	for _, rep := range r.held {
		total += int64(rep.mod.InFlight())
	}
	return total
}

// cached lists the artifacts in the content store, for load reports.
func (r *replicas) cached() []oplog.Digest {
	ds, err := r.cas.List()
	if err != nil {
		return nil
	}
	return ds[:min(len(ds), reducers.MaxLoadCached)]
}

// Call runs fn of seed with input on the best replica that will take it:
// routed by reducers.Route, here or over the mesh. A replica that refuses
// before starting passes the call to the next; one that started is final.
func (r *replicas) Call(ctx context.Context, seed, fn string, input []byte, chain []string, origin oplog.Key) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	n := r.n
	v := n.View()
	if !v.Active(n.self, n.nowHLC()) {
		return nil, errors.New("this node is no longer a member of the cluster (denied or expired); it cannot call seeds")
	}
	s := v.Seeds[seed]
	if s == nil || s.Tombstone {
		return nil, fmt.Errorf("no seed named %q is published (see 'pln status')", seed)
	}
	var callID [16]byte
	rand.Read(callID[:])
	cands := reducers.Route(v, n.self, seed, callID[:], n.nowHLC())
	if len(cands) == 0 {
		return nil, fmt.Errorf("seed %q has no ready replica yet (see 'pln status'); try again shortly", seed)
	}
	if len(chain) == 0 {
		r.meters.demanded(seed)
	}
	var refusals []error
	for _, k := range cands {
		var out []byte
		var err error
		if k == n.self {
			out, err = r.runLocal(ctx, s, fn, input, chain, origin, nil)
			if refusedBeforeStart(err) {
				refusals = append(refusals, err)
				continue
			}
			return out, err
		}
		m := n.mesh.Load()
		if m == nil {
			break
		}
		out, err = m.Call(ctx, k, &netx.CallRequest{Seed: seed, Fn: fn, Input: input, Chain: chain, Origin: origin})
		if errors.Is(err, netx.ErrNotStarted) {
			refusals = append(refusals, err)
			continue
		}
		return out, err
	}
	return nil, fmt.Errorf("every replica of %q refused the call: %w", seed, errors.Join(refusals...))
}

var errNotHere = errors.New("no ready replica of that seed here")

// runLocal runs a call on this node's replica. effect, if set, is told
// before the call first has an effect beyond the replica.
func (r *replicas) runLocal(ctx context.Context, s *reducers.SeedState, fn string, input []byte, chain []string, origin oplog.Key, effect func() error) ([]byte, error) {
	rep := r.module(s.Name, s.Digest)
	if rep == nil {
		return nil, fmt.Errorf("%w: %s", errNotHere, s.Name)
	}
	if rep.mod.InFlight() >= rep.concurrency {
		return nil, fmt.Errorf("%w: %s is at its concurrency limit (%d)", wasm.ErrOverloaded, s.Name, rep.concurrency)
	}
	cc := wasm.CallContext{Caller: origin, Chain: chain, Effect: effect}
	if m := r.n.View().Member(origin); m != nil {
		cc.Props = m.Props
	}
	if dl, ok := ctx.Deadline(); ok {
		cc.Deadline = dl
	}
	began := time.Now()
	out, err := rep.mod.Call(ctx, fn, input, cc)
	r.meters.served(s.Name, time.Since(began))
	return out, err
}

// serveCall runs a call a peer routed here, if both the peer and the node
// the call began at are members: a deny takes effect on calls at once, even
// before the denied node's links have closed. A call this node cannot take
// is refused, and the caller tries the next replica.
func (r *replicas) serveCall(ctx context.Context, from oplog.Key, req *netx.CallRequest, effect func() error) ([]byte, error) {
	v := r.n.View()
	now := r.n.nowHLC()
	for _, k := range []oplog.Key{from, req.Origin} {
		if !v.Active(k, now) {
			return nil, netx.Refuse(fmt.Errorf("%s is not a member of this cluster", k.Short()))
		}
	}
	s := v.Seeds[req.Seed]
	if s == nil || s.Tombstone {
		return nil, netx.Refuse(fmt.Errorf("no seed named %q here", req.Seed))
	}
	out, err := r.runLocal(ctx, s, req.Fn, req.Input, req.Chain, req.Origin, effect)
	if refusedBeforeStart(err) {
		return nil, netx.Refuse(err)
	}
	return out, err
}

// route is what seeds reach through pln_call.
type route struct{ r *replicas }

func (rt route) Call(ctx context.Context, cc wasm.CallContext, uri string, input []byte) ([]byte, error) {
	seed, fn, err := parseSeedURI(uri)
	if err != nil {
		return nil, err
	}
	return rt.r.Call(ctx, seed, fn, input, cc.Chain, cc.Caller)
}

// refusedBeforeStart reports whether a local call never ran, so the next
// replica may take it: none here, all instances busy, or draining.
func refusedBeforeStart(err error) bool {
	return errors.Is(err, errNotHere) || errors.Is(err, wasm.ErrOverloaded) || errors.Is(err, wasm.ErrClosed)
}
