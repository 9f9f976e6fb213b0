package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// OpResult reports an op this node authored.
type OpResult struct {
	ID   oplog.ID   `json:"id"`
	Kind string     `json:"kind"`
	HLC  oplog.HLC  `json:"hlc"`
	Fell []oplog.ID `json:"fell,omitempty"` // for a deny: what stopped counting with it
}

func result(op *oplog.Op) *OpResult {
	return &OpResult{ID: op.ID(), Kind: op.Kind.String(), HLC: op.HLC}
}

// GrantRequest admits a key.
type GrantRequest struct {
	Subject string            `json:"subject"`
	Tier    string            `json:"tier"`
	Props   map[string]string `json:"props,omitempty"`
	TTL     time.Duration     `json:"ttl,omitempty"` // 0: never expires
}

// DenyRequest revokes a key. By default the subject's grants, denies, seeds
// and services stay valid (the keep set): the deny takes effect from now on.
// Cascade drops them too, and everything that depended on them.
type DenyRequest struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason,omitempty"`
	Cascade bool   `json:"cascade,omitempty"`
}

// InviteRequest makes a token. Without a subject, the token carries a fresh
// invite key that admits whoever redeems it first.
type InviteRequest struct {
	Subject string            `json:"subject,omitempty"`
	Tier    string            `json:"tier"`
	Props   map[string]string `json:"props,omitempty"`
	TTL     time.Duration     `json:"ttl"`
}

// InviteResult is the token and what it admits.
type InviteResult struct {
	Token   string        `json:"token"`
	Tier    reducers.Tier `json:"tier"`
	Expires oplog.HLC     `json:"expires"`
	Subject oplog.Key     `json:"subject"`
}

// DefaultInviteTTL is how long an invite is valid unless told otherwise.
const DefaultInviteTTL = time.Hour

func init() {
	register("grant", grant)
	register("deny", deny)
	register("invite", invite)
}

func grant(_ context.Context, n *Node, r GrantRequest) (*OpResult, error) {
	subject, err := oplog.ParseKey(r.Subject)
	if err != nil {
		return nil, err
	}
	tier, err := parseNodeTier(r.Tier)
	if err != nil {
		return nil, err
	}
	g := &reducers.Grant{Subject: subject, Tier: tier, Props: r.Props}
	if r.TTL > 0 {
		g.Expires = oplog.HLCAt(n.cfg.Now().Add(r.TTL))
	}
	op, err := n.authorAdmin(g)
	if err != nil {
		return nil, err
	}
	return result(op), nil
}

func parseNodeTier(s string) (reducers.Tier, error) {
	if s == "" {
		return reducers.TierMember, nil
	}
	t, err := reducers.ParseTier(s)
	if err == nil && !t.Node() {
		err = fmt.Errorf("tier %q cannot be granted directly; use member, publisher or admin ('pln invite' makes invite keys)", s)
	}
	return t, err
}

func deny(_ context.Context, n *Node, r DenyRequest) (*OpResult, error) {
	subject, err := oplog.ParseKey(r.Subject)
	if err != nil {
		return nil, err
	}
	d := &reducers.Deny{Subject: subject, Reason: r.Reason}
	if !r.Cascade {
		if d.Keep, err = n.keepSet(subject); err != nil {
			return nil, err
		}
	}
	op, err := n.authorAdmin(d)
	if err != nil {
		return nil, err
	}
	res := result(op)
	for _, e := range n.audit() {
		if e.Op == op.ID() {
			res.Fell = e.Fell
		}
	}
	return res, nil
}

// authorAdmin authors an admission op as this node or — where only the root
// may act, such as changing or denying another admin, and this directory
// holds the root key ('pln init' made it here) — as the root.
func (n *Node) authorAdmin(b reducers.Body) (*oplog.Op, error) {
	op, err := n.Author(b)
	if !errors.Is(err, ErrRefused) {
		return op, err
	}
	root, rerr := loadKey(filepath.Join(n.cfg.Dir, RootKeyFile))
	if rerr != nil {
		return nil, err
	}
	return n.authorAs(root, b)
}

// keepSet lists the subject's ops a deny keeps by default: everything it
// authored that others may depend on (grants, denies, seeds, services).
func (n *Node) keepSet(subject oplog.Key) ([]oplog.ID, error) {
	var keep []oplog.ID
	err := n.store.ForEachArrival(1, func(_ uint64, op *oplog.Op) error {
		switch op.Kind {
		case oplog.KindGrant, oplog.KindDeny, oplog.KindSeed, oplog.KindServe:
			if op.Author == subject {
				keep = append(keep, op.ID())
			}
		}
		return nil
	})
	if len(keep) > reducers.MaxKeep {
		return nil, fmt.Errorf("%s authored %d ops, more than one deny can keep (%d); deny with --cascade to drop them all", subject.Short(), len(keep), reducers.MaxKeep)
	}
	return keep, err
}

func invite(_ context.Context, n *Node, r InviteRequest) (*InviteResult, error) {
	tier, err := parseNodeTier(r.Tier)
	if err != nil {
		return nil, err
	}
	if r.TTL <= 0 {
		r.TTL = DefaultInviteTTL
	}
	expires := oplog.HLCAt(n.cfg.Now().Add(r.TTL))
	var g *reducers.Grant
	var inviteKey ed25519.PrivateKey
	if r.Subject != "" {
		subject, err := oplog.ParseKey(r.Subject)
		if err != nil {
			return nil, err
		}
		g = &reducers.Grant{Subject: subject, Tier: tier, Props: r.Props}
		expires = 0 // the grant is for a known key and does not lapse
	} else {
		if _, inviteKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		g = &reducers.Grant{Subject: oplog.KeyOf(inviteKey), Tier: reducers.TierInvite, Confers: tier, Props: r.Props, Expires: expires}
	}
	op, err := n.Author(g)
	if err != nil {
		return nil, err
	}
	t, err := n.token(op, inviteKey)
	if err != nil {
		return nil, err
	}
	return &InviteResult{Token: t.Encode(), Tier: tier, Expires: expires, Subject: g.Subject}, nil
}

// token assembles a token around grant: the genesis and the grants that
// chain its author to the root.
func (n *Node) token(grant *oplog.Op, inviteKey ed25519.PrivateKey) (*Token, error) {
	v := n.View()
	t := &Token{Cluster: n.cluster, Name: v.Name, InviteKey: inviteKey, Addrs: n.bootstrapAddrs(v)}
	var err error
	if t.Genesis, _, err = n.store.Get(v.Members[v.Root].Grant); err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	if t.Chain, err = n.chainOf(v, grant.Author); err != nil {
		return nil, err
	}
	t.Chain = append(t.Chain, grant)
	return t, nil
}

// maxChain bounds a chain of grants from the root.
const maxChain = 32

// chainOf returns the grants that admit k, from the root down: k's newest
// grant, its author's, and so on up to a grant by the root.
func (n *Node) chainOf(v *reducers.View, k oplog.Key) ([]*oplog.Op, error) {
	var chain []*oplog.Op
	for k != v.Root {
		m := v.Member(k)
		if m == nil || len(chain) >= maxChain {
			return nil, fmt.Errorf("cannot chain %s to the root", k.Short())
		}
		op, _, err := n.store.Get(m.Grant)
		if err != nil {
			return nil, fmt.Errorf("grant of %s: %w", k.Short(), err)
		}
		chain = append([]*oplog.Op{op}, chain...)
		k = op.Author
	}
	return chain, nil
}

// maxTokenAddrs bounds the addresses an invite carries.
const maxTokenAddrs = 8

// bootstrapAddrs are where a joiner can find the cluster: this node's
// addresses, then those of live peers reachable from anywhere.
func (n *Node) bootstrapAddrs(v *reducers.View) []string {
	addrs := slices.Clone(n.Addrs())
	now := n.nowHLC()
	for _, k := range v.LiveNodes(now) {
		if l := v.Loads[k]; k != n.self && l.Relay {
			for _, a := range l.Addrs {
				if netx.Public(a) && !slices.Contains(addrs, a) {
					addrs = append(addrs, a)
				}
			}
		}
	}
	return addrs[:min(len(addrs), maxTokenAddrs)]
}

// Addrs returns where this node can be reached: the advertised addresses, or
// those of the running mesh's socket, or — when the node is not running —
// those it last reported.
func (n *Node) Addrs() []string {
	if len(n.cfg.Mesh.Advertise) > 0 {
		return n.cfg.Mesh.Advertise
	}
	if m := n.mesh.Load(); m != nil {
		return netx.LocalAddrs(m.Addr())
	}
	if l := n.View().Loads[n.self]; l != nil {
		return l.Addrs
	}
	return nil
}
