package reducers

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pln-mesh/pln/oplog"
)

// The op bodies, one struct per kind (DESIGN.md §3). Fields are CBOR maps with
// small integer keys: compact, canonical, and open to new optional fields.
// Quantities are integers with their unit in the name, so that every node,
// whatever its CPU, computes the same placement from them.

// Params are the cluster-wide settings fixed at genesis.
type Params struct {
	MaxOffsetMillis    int64 `cbor:"1,keyasint,omitempty" json:"max_offset_ms"`     // how far ahead of "now" an op may be and still count; default 5 000
	LoadIntervalMillis int64 `cbor:"2,keyasint,omitempty" json:"load_interval_ms"`  // how often nodes report load; default 2 000
	LiveIntervals      int64 `cbor:"3,keyasint,omitempty" json:"live_intervals"`    // a node is live while its newest load is younger than this many intervals; default 3
	RetentionMillis    int64 `cbor:"4,keyasint,omitempty" json:"retention_ms"`      // how long superseded ops stay on disk; default 24 h
	ReplicaMilliCPS    int64 `cbor:"5,keyasint,omitempty" json:"replica_milli_cps"` // demand one replica is expected to carry, in calls/s × 1000; default 50 000
}

// DefaultParams returns the parameters a new cluster gets.
func DefaultParams() Params {
	return Params{
		MaxOffsetMillis:    5_000,
		LoadIntervalMillis: 2_000,
		LiveIntervals:      3,
		RetentionMillis:    24 * 60 * 60 * 1000,
		ReplicaMilliCPS:    50_000,
	}
}

// withDefaults fills unset fields, so an old genesis keeps working when a
// parameter is added.
func (p Params) withDefaults() Params {
	d := DefaultParams()
	if p.MaxOffsetMillis <= 0 {
		p.MaxOffsetMillis = d.MaxOffsetMillis
	}
	if p.LoadIntervalMillis <= 0 {
		p.LoadIntervalMillis = d.LoadIntervalMillis
	}
	if p.LiveIntervals <= 0 {
		p.LiveIntervals = d.LiveIntervals
	}
	if p.RetentionMillis <= 0 {
		p.RetentionMillis = d.RetentionMillis
	}
	if p.ReplicaMilliCPS <= 0 {
		p.ReplicaMilliCPS = d.ReplicaMilliCPS
	}
	return p
}

// Genesis founds a cluster. Its author is the root key.
type Genesis struct {
	Name   string    `cbor:"1,keyasint" json:"name"`
	Root   oplog.Key `cbor:"2,keyasint" json:"root"`
	Params Params    `cbor:"3,keyasint" json:"params"`
}

// Grant admits Subject with Tier and Props until Expires (0: never). A grant
// of tier invite makes Subject an invite key that may author exactly one
// grant, of tier Confers with these Props, before Expires.
type Grant struct {
	Subject oplog.Key         `cbor:"1,keyasint" json:"subject"`
	Tier    Tier              `cbor:"2,keyasint" json:"tier"`
	Props   map[string]string `cbor:"3,keyasint,omitempty" json:"props,omitempty"`
	Expires oplog.HLC         `cbor:"4,keyasint,omitempty" json:"expires,omitempty"`
	Confers Tier              `cbor:"5,keyasint,omitempty" json:"confers,omitempty"`
}

// Deny revokes Subject. Its ops since its admission stop counting, except
// those listed in Keep.
type Deny struct {
	Subject oplog.Key  `cbor:"1,keyasint" json:"subject"`
	Reason  string     `cbor:"2,keyasint,omitempty" json:"reason,omitempty"`
	Keep    []oplog.ID `cbor:"3,keyasint,omitempty" json:"keep,omitempty"`
}

// Seed kinds.
const (
	SeedWASM = "wasm"
	SeedSite = "site"
	SeedBlob = "blob"
)

// Seed publishes (or, with Tombstone, withdraws) a named artifact.
type Seed struct {
	Name          string            `cbor:"1,keyasint" json:"name"`
	Kind          string            `cbor:"2,keyasint" json:"kind"`
	Digest        oplog.Digest      `cbor:"3,keyasint" json:"digest"`
	SizeBytes     int64             `cbor:"4,keyasint,omitempty" json:"size_bytes,omitempty"`
	MinReplicas   int64             `cbor:"5,keyasint,omitempty" json:"min_replicas"`
	MaxReplicas   int64             `cbor:"6,keyasint,omitempty" json:"max_replicas"`
	MemoryBytes   int64             `cbor:"7,keyasint,omitempty" json:"memory_bytes"`
	TimeoutMillis int64             `cbor:"8,keyasint,omitempty" json:"timeout_ms"`
	Concurrency   int64             `cbor:"9,keyasint,omitempty" json:"concurrency"`
	Policy        map[string]string `cbor:"10,keyasint,omitempty" json:"policy,omitempty"`
	Tombstone     bool              `cbor:"11,keyasint,omitempty" json:"tombstone,omitempty"`
}

// Serve publishes (or withdraws) a TCP or UDP service on the authoring node.
type Serve struct {
	Node      oplog.Key         `cbor:"1,keyasint" json:"node"`
	Name      string            `cbor:"2,keyasint" json:"name"`
	Port      int64             `cbor:"3,keyasint" json:"port"`
	Proto     string            `cbor:"4,keyasint" json:"proto"`
	Policy    map[string]string `cbor:"5,keyasint,omitempty" json:"policy,omitempty"`
	Tombstone bool              `cbor:"6,keyasint,omitempty" json:"tombstone,omitempty"`
}

// Claim states.
const (
	ClaimReady    = "ready"
	ClaimDraining = "draining"
	ClaimReleased = "released"
)

// Claim is a node's statement about its own replica of a seed. Seq and View
// are the view position it decided from: how many ops its log held and the
// digest of the view they folded to, so that replay can check the decision.
type Claim struct {
	Node   oplog.Key    `cbor:"1,keyasint" json:"node"`
	Seed   string       `cbor:"2,keyasint" json:"seed"`
	Digest oplog.Digest `cbor:"3,keyasint" json:"digest"`
	State  string       `cbor:"4,keyasint" json:"state"`
	Seq    uint64       `cbor:"5,keyasint,omitempty" json:"seq,omitempty"`
	View   oplog.Digest `cbor:"6,keyasint,omitempty" json:"view,omitempty"`
}

// Coord is a network coordinate (Vivaldi: a 2-D position plus a height for
// the access link), in microseconds of round-trip time, with the node's own
// estimate of its error.
type Coord struct {
	X       int64 `cbor:"1,keyasint,omitempty" json:"x"`
	Y       int64 `cbor:"2,keyasint,omitempty" json:"y"`
	H       int64 `cbor:"3,keyasint,omitempty" json:"h"`
	ErrorPM int64 `cbor:"4,keyasint,omitempty" json:"error_pm"` // relative error, per mille
}

// SeedLoad is one node's figures for one seed.
type SeedLoad struct {
	DemandMilliCPS int64 `cbor:"1,keyasint,omitempty" json:"demand_milli_cps"` // calls/s × 1000 originating at this node
	ServedMilliCPS int64 `cbor:"2,keyasint,omitempty" json:"served_milli_cps"` // calls/s × 1000 served by this node's replica
	LatencyMicros  int64 `cbor:"3,keyasint,omitempty" json:"latency_us"`       // median service time here
	SaturationPM   int64 `cbor:"4,keyasint,omitempty" json:"saturation_pm"`    // replica saturation, per mille
}

// Load is a node's report of itself: capacity, use, demand, coordinates and
// addresses. Its arrival is also the node's heartbeat.
type Load struct {
	Node         oplog.Key           `cbor:"1,keyasint" json:"node"`
	CPUMilli     int64               `cbor:"2,keyasint,omitempty" json:"cpu_milli"`
	CPUUsedMilli int64               `cbor:"3,keyasint,omitempty" json:"cpu_used_milli"`
	MemBytes     int64               `cbor:"4,keyasint,omitempty" json:"mem_bytes"`
	MemUsedBytes int64               `cbor:"5,keyasint,omitempty" json:"mem_used_bytes"`
	InFlight     int64               `cbor:"6,keyasint,omitempty" json:"in_flight"`
	SaturationPM int64               `cbor:"7,keyasint,omitempty" json:"saturation_pm"`
	Seeds        map[string]SeedLoad `cbor:"8,keyasint,omitempty" json:"seeds,omitempty"`
	Coord        Coord               `cbor:"9,keyasint,omitempty" json:"coord"`
	Addrs        []string            `cbor:"10,keyasint,omitempty" json:"addrs,omitempty"`
	Relay        bool                `cbor:"11,keyasint,omitempty" json:"relay,omitempty"`
	Cached       []oplog.Digest      `cbor:"12,keyasint,omitempty" json:"cached,omitempty"`
}

// Limits that keep bodies, and so the view, bounded.
const (
	MaxProps       = 32
	MaxPropBytes   = 256
	MaxKeep        = 4096
	MaxLoadSeeds   = 1024
	MaxLoadCached  = 1024
	MaxLoadAddrs   = 16
	MaxReplicas    = 1024
	MaxReasonBytes = 1024
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidName reports whether s may name a seed or a service.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("name %q is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return nil
}

// ValidProps checks a property map (keys and values are short strings).
func ValidProps(p map[string]string) error {
	if len(p) > MaxProps {
		return fmt.Errorf("%d properties; at most %d", len(p), MaxProps)
	}
	for k, v := range p {
		if k == "" || len(k) > MaxPropBytes || len(v) > MaxPropBytes || strings.ContainsAny(k, "=\n") {
			return fmt.Errorf("property %q=%q is not valid: keys are non-empty without '=', both at most %d bytes", k, v, MaxPropBytes)
		}
	}
	return nil
}

// Validate checks a body on its own, before any question of who wrote it.
func (g *Genesis) Validate() error {
	if g.Root.IsZero() {
		return fmt.Errorf("genesis has no root key")
	}
	return nil
}

func (g *Grant) Validate() error {
	if g.Subject.IsZero() {
		return fmt.Errorf("grant has no subject")
	}
	if err := ValidProps(g.Props); err != nil {
		return err
	}
	switch {
	case g.Tier.Node():
		if g.Confers != TierNone {
			return fmt.Errorf("only an invite grant confers a tier")
		}
	case g.Tier == TierInvite:
		if !g.Confers.Node() {
			return fmt.Errorf("an invite must confer member, publisher or admin, not %s", g.Confers)
		}
		if g.Expires == 0 {
			return fmt.Errorf("an invite must expire")
		}
	default:
		return fmt.Errorf("grant of unknown tier %s", g.Tier)
	}
	return nil
}

func (d *Deny) Validate() error {
	if d.Subject.IsZero() {
		return fmt.Errorf("deny has no subject")
	}
	if len(d.Keep) > MaxKeep {
		return fmt.Errorf("deny keeps %d ops; at most %d", len(d.Keep), MaxKeep)
	}
	if len(d.Reason) > MaxReasonBytes {
		return fmt.Errorf("deny reason is %d bytes; at most %d", len(d.Reason), MaxReasonBytes)
	}
	return nil
}

func (s *Seed) Validate() error {
	if err := ValidName(s.Name); err != nil {
		return err
	}
	if s.Tombstone {
		return nil
	}
	switch s.Kind {
	case SeedWASM, SeedSite, SeedBlob:
	default:
		return fmt.Errorf("seed kind %q is not one of wasm, site, blob", s.Kind)
	}
	if s.Digest.IsZero() {
		return fmt.Errorf("seed %s has no digest", s.Name)
	}
	if s.MinReplicas < 1 || s.MaxReplicas < s.MinReplicas || s.MaxReplicas > MaxReplicas {
		return fmt.Errorf("seed %s wants replicas %d:%d; need 1 ≤ min ≤ max ≤ %d", s.Name, s.MinReplicas, s.MaxReplicas, MaxReplicas)
	}
	if s.MemoryBytes < 0 || s.TimeoutMillis < 0 || s.Concurrency < 0 || s.SizeBytes < 0 {
		return fmt.Errorf("seed %s has a negative limit", s.Name)
	}
	return ValidProps(s.Policy)
}

func (s *Serve) Validate() error {
	if err := ValidName(s.Name); err != nil {
		return err
	}
	if s.Tombstone {
		return nil
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("service %s port %d is not 1-65535", s.Name, s.Port)
	}
	if s.Proto != "tcp" && s.Proto != "udp" {
		return fmt.Errorf("service %s protocol %q is not tcp or udp", s.Name, s.Proto)
	}
	return ValidProps(s.Policy)
}

func (c *Claim) Validate() error {
	if err := ValidName(c.Seed); err != nil {
		return err
	}
	switch c.State {
	case ClaimReady, ClaimDraining, ClaimReleased:
		return nil
	}
	return fmt.Errorf("claim state %q is not ready, draining or released", c.State)
}

func (l *Load) Validate() error {
	switch {
	case len(l.Seeds) > MaxLoadSeeds:
		return fmt.Errorf("load reports %d seeds; at most %d", len(l.Seeds), MaxLoadSeeds)
	case len(l.Cached) > MaxLoadCached:
		return fmt.Errorf("load lists %d cached digests; at most %d", len(l.Cached), MaxLoadCached)
	case len(l.Addrs) > MaxLoadAddrs:
		return fmt.Errorf("load lists %d addresses; at most %d", len(l.Addrs), MaxLoadAddrs)
	case !inRange(maxFigure, l.CPUMilli, l.CPUUsedMilli, l.InFlight, l.SaturationPM) || !inRange(maxBytes, l.MemBytes, l.MemUsedBytes):
		return fmt.Errorf("load has a negative figure, or one out of range")
	case !inRange(maxCoordMicros, l.Coord.H, l.Coord.ErrorPM) || !inRange(maxCoordMicros, abs64(l.Coord.X), abs64(l.Coord.Y)):
		return fmt.Errorf("load has a coordinate out of range (±%d µs, height and error ≥ 0)", int64(maxCoordMicros))
	}
	for name, s := range l.Seeds {
		if !inRange(maxFigure, s.DemandMilliCPS, s.ServedMilliCPS, s.LatencyMicros, s.SaturationPM) {
			return fmt.Errorf("load for seed %q has a figure that is negative or beyond %d", name, int64(maxFigure))
		}
	}
	return nil
}

// Bounds on load figures, so that sums over a million nodes, and squared
// distances, stay inside int64 whatever a member reports.
const (
	maxFigure      = 1 << 40 // milli-CPUs, calls/s × 1000, µs, ‰
	maxBytes       = 1 << 50 // memory
	maxCoordMicros = 1e9     // 1000 s: squared distances stay below 2^63
)

func inRange(limit int64, xs ...int64) bool {
	for _, x := range xs {
		if x < 0 || x > limit {
			return false
		}
	}
	return true
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// Body is any of the op bodies.
type Body interface{ Validate() error }

// NewBody returns an empty body for a kind.
func NewBody(k oplog.Kind) (Body, error) {
	switch k {
	case oplog.KindGenesis:
		return new(Genesis), nil
	case oplog.KindGrant:
		return new(Grant), nil
	case oplog.KindDeny:
		return new(Deny), nil
	case oplog.KindSeed:
		return new(Seed), nil
	case oplog.KindServe:
		return new(Serve), nil
	case oplog.KindClaim:
		return new(Claim), nil
	case oplog.KindLoad:
		return new(Load), nil
	}
	return nil, fmt.Errorf("%w: %d", oplog.ErrKind, k)
}

// KindOf returns the op kind a body is carried by.
func KindOf(b Body) oplog.Kind {
	switch b.(type) {
	case *Genesis:
		return oplog.KindGenesis
	case *Grant:
		return oplog.KindGrant
	case *Deny:
		return oplog.KindDeny
	case *Seed:
		return oplog.KindSeed
	case *Serve:
		return oplog.KindServe
	case *Claim:
		return oplog.KindClaim
	case *Load:
		return oplog.KindLoad
	}
	panic(fmt.Sprintf("reducers: %T is not an op body", b))
}

// DecodeBody decodes and validates an op's body.
func DecodeBody(op *oplog.Op) (Body, error) {
	b, err := NewBody(op.Kind)
	if err != nil {
		return nil, err
	}
	if err := oplog.Unmarshal(op.Body, b); err != nil {
		return nil, fmt.Errorf("%s body does not decode: %v", op.Kind, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// EncodeBody validates and encodes a body.
func EncodeBody(b Body) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return oplog.Marshal(b)
}
