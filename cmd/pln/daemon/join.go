package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Joining: a node with a token works out the ops that admit it (PlanJoin),
// presents them to the cluster (netx.Join), adds what the cluster answered
// (Welcome), and only then writes its directory (Enroll).

// EnrollResult reports a join.
type EnrollResult struct {
	Node    oplog.Key       `json:"node"`
	Cluster oplog.ClusterID `json:"cluster"`
	Name    string          `json:"cluster_name"`
	Tier    reducers.Tier   `json:"tier"`
	Addrs   []string        `json:"addrs"`
}

// JoinPlan is a join worked out but not yet written: the ops that admit this
// node, to present to the cluster and then to store. Making one changes
// nothing on disk.
type JoinPlan struct {
	cfg    Config
	key    ed25519.PrivateKey
	newKey bool // the node key is not on disk yet
	Token  *Token
	Ops    []*oplog.Op // genesis, the chain, and this node's redemption if any
	Result EnrollResult

	welcomeAddrs []string // where the cluster said its members are
}

// Key returns the node key the join admits.
func (p *JoinPlan) Key() ed25519.PrivateKey { return p.key }

// PlanJoin checks that t admits the node in cfg.Dir and works out the ops:
// for an invite, it signs the one grant the invite key may make, for this
// node's key. name, if set, becomes the node's "name" property unless the
// invite fixes one.
func PlanJoin(cfg Config, t *Token, name string) (*JoinPlan, error) {
	cfg = cfg.withDefaults()
	if err := t.Fresh(cfg.Now()); err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.Dir, StoreFile)
	if n, err := Open(cfg); err == nil {
		defer n.Close()
		if n.cluster != t.Cluster {
			return nil, tokenErr("is for cluster %q (%s) but %s belongs to cluster %s; use another --dir", t.Name, t.Cluster.Short(), cfg.Dir, n.cluster.Short())
		}
		return nil, failf(ErrHasCluster, "%s is already a member of cluster %q; just run 'pln up'", cfg.Dir, t.Name)
	}
	if err := refuseExisting(cfg.Dir, path); err != nil {
		return nil, err
	}
	p := &JoinPlan{cfg: cfg, Token: t}
	g := t.Grant()
	key, err := loadKey(filepath.Join(cfg.Dir, NodeKeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist) && t.InviteKey == nil:
		// A token for a subject admits a key that exists already: never
		// make a node key only to find the token is not for it.
		return nil, tokenErr("is for key %s, and %s has no node key yet; ask for an invite for the key 'pln id' prints on the joining node", g.Subject.Short(), cfg.Dir)
	case errors.Is(err, fs.ErrNotExist):
		if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		p.newKey = true
	case err != nil:
		return nil, err
	}
	p.key = key
	self := oplog.KeyOf(key)
	ops := append([]*oplog.Op{t.Genesis}, t.Chain...)
	if t.InviteKey == nil && g.Subject != self {
		return nil, tokenErr("is for key %s, not this node (%s); ask for an invite for the key 'pln id' prints here", g.Subject.Short(), self.Short())
	}
	if t.InviteKey != nil {
		props := map[string]string{}
		for k, v := range g.Props {
			props[k] = v
		}
		if _, fixed := props["name"]; !fixed {
			if name == "" {
				name = hostName()
			}
			props["name"] = name
		}
		at := oplog.HLCAt(cfg.Now())
		if last := t.Chain[len(t.Chain)-1].HLC; at <= last {
			at = last + 1
		}
		redeem, err := signBody(t.Cluster, t.InviteKey, at, &reducers.Grant{Subject: self, Tier: g.Confers, Props: props})
		if err != nil {
			return nil, err
		}
		ops = append(ops, redeem)
	}
	v := reducers.Fold(t.Cluster, ops, oplog.HLCAt(cfg.Now()))
	if !v.Active(self, oplog.HLCAt(cfg.Now())) {
		return nil, tokenErr("does not admit this node (already redeemed, or its issuer lost the right); ask for a new one")
	}
	p.Ops = ops
	p.Result = EnrollResult{Node: self, Cluster: t.Cluster, Name: t.Name, Tier: v.Member(self).Tier, Addrs: t.Addrs}
	return p, nil
}

// Welcome adds what the cluster said when it admitted this node: the grants
// of the members it named, and where they are.
func (p *JoinPlan) Welcome(w *netx.Welcome) {
	p.Ops = append(p.Ops, w.Ops...)
	p.welcomeAddrs = append(p.welcomeAddrs, w.Addrs...)
}

// Enroll writes the plan: the node key if it is new, and a store holding the
// plan's ops. addrs, and those of the welcome, are remembered as where to
// find the cluster on start.
func (p *JoinPlan) Enroll(addrs []string) (*Node, error) {
	if p.newKey {
		if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		if err := writeKey(filepath.Join(p.cfg.Dir, NodeKeyFile), p.key); err != nil {
			return nil, fmt.Errorf("write node key: %w", err)
		}
	}
	n, err := create(p.cfg, p.key, p.Token.Cluster, filepath.Join(p.cfg.Dir, StoreFile), p.Ops...)
	if err != nil {
		return nil, err
	}
	if err := n.SetBootstrap(append(slices.Clone(p.welcomeAddrs), addrs...)); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Enroll makes cfg.Dir a member of the token's cluster without asking the
// cluster: PlanJoin, then JoinPlan.Enroll with the token's addresses.
func Enroll(cfg Config, t *Token, name string) (*Node, *EnrollResult, error) {
	p, err := PlanJoin(cfg, t, name)
	if err != nil {
		return nil, nil, err
	}
	n, err := p.Enroll(t.Addrs)
	if err != nil {
		return nil, nil, err
	}
	return n, &p.Result, nil
}
