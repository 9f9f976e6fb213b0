package reducers

import (
	"crypto/sha256"
	"slices"
	"strings"
	"sync"

	"github.com/pln-mesh/pln/oplog"
)

// View is what a set of ops means: who is in the cluster and as what, which
// seeds and services are published, who holds which replica, and how loaded
// every node is. It is built by Fold or a Folder and is read-only: share it
// freely between goroutines, never modify it.
type View struct {
	Cluster   oplog.ClusterID `json:"cluster"`
	Name      string          `json:"name"`
	Root      oplog.Key       `json:"root"`
	GenesisAt oplog.HLC       `json:"genesis_at"`
	Params    Params          `json:"params"`

	Members  map[oplog.Key]*Member    `json:"-"`
	Seeds    map[string]*SeedState    `json:"-"` // includes tombstones
	Services map[ServiceKey]*Service  `json:"-"` // includes tombstones
	Claims   map[ClaimKey]*ClaimState `json:"-"`
	Loads    map[oplog.Key]*LoadState `json:"-"`

	Frontier oplog.HLC `json:"frontier"` // newest HLC folded
	Pending  int       `json:"pending"`  // ops held out because their HLC is too far ahead

	mem        *membership
	digestOnce sync.Once
	digest     oplog.Digest
	liveMu     sync.Mutex
	live       *liveSet // the live set at the last "now" asked about
}

// Member is a key's standing: its newest counted grant and, if it came
// after, the deny that revoked it.
type Member struct {
	Key       oplog.Key         `json:"key"`
	Root      bool              `json:"root,omitempty"`
	Tier      Tier              `json:"tier"`
	Confers   Tier              `json:"confers,omitempty"`
	Props     map[string]string `json:"props,omitempty"`
	Expires   oplog.HLC         `json:"expires,omitempty"`
	GrantedBy oplog.Key         `json:"granted_by"`
	GrantedAt oplog.HLC         `json:"granted_at"`
	Grant     oplog.ID          `json:"grant"`

	Denied     bool      `json:"denied,omitempty"`
	DeniedBy   oplog.Key `json:"denied_by,omitempty"`
	DeniedAt   oplog.HLC `json:"denied_at,omitempty"`
	DenyReason string    `json:"deny_reason,omitempty"`
	Deny       oplog.ID  `json:"deny,omitempty"`
}

// Name is the member's "name" property, or its short key.
func (m *Member) Name() string {
	if n := m.Props["name"]; n != "" {
		return n
	}
	return m.Key.Short()
}

// Active reports whether the member counts at now: granted, not denied, not
// expired.
func (m *Member) Active(now oplog.HLC) bool {
	return m != nil && !m.Denied && m.Tier != TierNone && (m.Expires == 0 || now <= m.Expires)
}

// SeedState is a published seed: the newest counted seed op for its name.
type SeedState struct {
	Seed
	Author oplog.Key `json:"author"`
	HLC    oplog.HLC `json:"hlc"`
	ID     oplog.ID  `json:"id"`
}

// ServiceKey names a service on a node.
type ServiceKey struct {
	Node oplog.Key
	Name string
}

// Service is a published service.
type Service struct {
	Serve
	HLC oplog.HLC `json:"hlc"`
	ID  oplog.ID  `json:"id"`
}

// ClaimKey names a node's replica of a seed.
type ClaimKey struct {
	Node oplog.Key
	Seed string
}

// ClaimState is a node's newest claim about a seed.
type ClaimState struct {
	Claim
	HLC oplog.HLC `json:"hlc"`
	ID  oplog.ID  `json:"id"`
}

// LoadState is a node's newest load report.
type LoadState struct {
	Load
	HLC oplog.HLC `json:"hlc"`
	ID  oplog.ID  `json:"id"`
}

// Member returns k's standing, or nil if k was never granted nor denied.
func (v *View) Member(k oplog.Key) *Member { return v.Members[k] }

// Active reports whether k is a granted, undenied, unexpired key at now.
func (v *View) Active(k oplog.Key, now oplog.HLC) bool { return v.Members[k].Active(now) }

// MemberKeys returns every key the view knows, sorted.
func (v *View) MemberKeys() []oplog.Key { return sortedKeyMap(v.Members) }

// SeedNames returns the names of published (not withdrawn) seeds, sorted.
func (v *View) SeedNames() []string {
	var ns []string
	for n, s := range v.Seeds {
		if !s.Tombstone {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// ClaimsFor returns the claims on a seed, ordered by node key.
func (v *View) ClaimsFor(seed string) []*ClaimState {
	var cs []*ClaimState
	for k, c := range v.Claims {
		if k.Seed == seed {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *ClaimState) int { return strings.Compare(string(a.Node[:]), string(b.Node[:])) })
	return cs
}

// Check says why op, if added now, would not count, or "" if it would. A node
// checks the ops it is about to author, so that a user is told "you may not"
// instead of storing an op that has no effect. It does not modify the view.
func (v *View) Check(op *oplog.Op) string {
	id := op.ID()
	if isMembership(op.Kind) {
		body, err := DecodeBody(op)
		return v.mem.judge(&mop{op: op, id: id, key: oplog.OrderKey(op, id), body: body, err: err}, v.mem)
	}
	return judgeData(v.mem, op, id)
}

// Digest is a hash of the view's canonical encoding: equal views, equal
// digests, on every node and every architecture.
func (v *View) Digest() oplog.Digest {
	v.digestOnce.Do(v.computeDigest)
	return v.digest
}

func (v *View) computeDigest() {
	type member struct {
		Tier    Tier              `cbor:"1,keyasint"`
		Props   map[string]string `cbor:"2,keyasint,omitempty"`
		Expires oplog.HLC         `cbor:"3,keyasint,omitempty"`
		Grant   oplog.ID          `cbor:"4,keyasint"`
		Deny    oplog.ID          `cbor:"5,keyasint,omitempty"`
		Confers Tier              `cbor:"6,keyasint,omitempty"`
	}
	canon := struct {
		Cluster  oplog.ClusterID   `cbor:"1,keyasint"`
		Genesis  oplog.HLC         `cbor:"2,keyasint"`
		Members  map[string]member `cbor:"3,keyasint"`
		Seeds    map[string][]byte `cbor:"4,keyasint"`
		Services map[string][]byte `cbor:"5,keyasint"`
		Claims   map[string][]byte `cbor:"6,keyasint"`
		Loads    map[string][]byte `cbor:"7,keyasint"`
	}{
		Cluster: v.Cluster, Genesis: v.GenesisAt,
		Members:  make(map[string]member, len(v.Members)),
		Seeds:    make(map[string][]byte, len(v.Seeds)),
		Services: make(map[string][]byte, len(v.Services)),
		Claims:   make(map[string][]byte, len(v.Claims)),
		Loads:    make(map[string][]byte, len(v.Loads)),
	}
	for k, m := range v.Members {
		canon.Members[string(k[:])] = member{m.Tier, m.Props, m.Expires, m.Grant, m.Deny, m.Confers}
	}
	// Each entry is identified by the op that set it: the same op carries the
	// same body everywhere, so its ID stands for the whole entry.
	for n, s := range v.Seeds {
		canon.Seeds[n] = s.ID[:]
	}
	for k, s := range v.Services {
		canon.Services[string(k.Node[:])+k.Name] = s.ID[:]
	}
	for k, c := range v.Claims {
		canon.Claims[string(k.Node[:])+k.Seed] = c.ID[:]
	}
	for k, l := range v.Loads {
		canon.Loads[string(k[:])] = l.ID[:]
	}
	b, err := oplog.Marshal(canon)
	if err != nil {
		panic(err)
	}
	v.digest = sha256.Sum256(b)
}

func sortedKeyMap[V any](m map[oplog.Key]V) []oplog.Key {
	ks := make([]oplog.Key, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b oplog.Key) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ks
}
