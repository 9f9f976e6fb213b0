package daemon

import (
	"errors"
	"fmt"
	"time"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
	"github.com/pln-mesh/pln/reducers"
)

// meshHost is the node as the mesh sees it (netx.Host).
type meshHost struct{ *Node }

var _ netx.Host = meshHost{}

func (h meshHost) Ingest(from oplog.Key, ops []*oplog.Op) ([]bool, error) {
	return h.ingestFrom(from, ops)
}

func (h meshHost) Chain(k oplog.Key) []*oplog.Op {
	chain, err := h.chainOf(h.View(), k)
	if err != nil {
		return nil
	}
	return chain
}

func (h meshHost) Ops(ids []oplog.ID) []*oplog.Op {
	out := make([]*oplog.Op, 0, len(ids))
	for _, id := range ids {
		if op, _, err := h.store.Get(id); err == nil {
			out = append(out, op)
		}
	}
	return out
}

// SyncSet is a snapshot of the store's sync index: a session reconciles
// one fixed set, while ops that arrive meanwhile wait for the next session.
func (h meshHost) SyncSet() netx.SyncSet { return h.store.SyncIndex().Snapshot() }

var _ netx.SyncSet = (*store.SyncIndex)(nil)

// AcceptJoin admits a joiner that connected with key joiner and presented
// ops: the genesis, the grants that chain its inviter to the root, and last
// the grant that admits joiner (an invite redemption, or a grant naming it).
// The chain is stored whatever happens (it is valid, signed history); the
// last grant only if it would count.
func (h meshHost) AcceptJoin(joiner oplog.Key, ops []*oplog.Op) error {
	n := h.Node
	for _, op := range ops {
		if op.Kind == oplog.KindGenesis {
			if oplog.ClusterOf(op.Author) != n.cluster {
				return fmt.Errorf("the token is for cluster %s; this node is in cluster %s", oplog.ClusterOf(op.Author).Short(), n.cluster.Short())
			}
		}
		if err := op.Verify(n.cluster); err != nil {
			return err
		}
	}
	last := ops[len(ops)-1]
	body, err := reducers.DecodeBody(last)
	g, ok := body.(*reducers.Grant)
	if err != nil || !ok {
		return errors.New("a join must end with the grant that admits the joiner")
	}
	if g.Subject != joiner {
		return fmt.Errorf("the join admits key %s but came from key %s", g.Subject.Short(), joiner.Short())
	}
	if _, err := n.ingestFrom(oplog.Key{}, ops[:len(ops)-1]); err != nil {
		return err
	}
	v := n.View()
	if v.Active(joiner, n.nowHLC()) && v.Member(joiner).Grant == last.ID() {
		return nil // a retry of a join that already counted
	}
	if why := v.Check(last); why != "" {
		if v.Active(joiner, n.nowHLC()) {
			return nil // already a member by another grant: let it in
		}
		return errors.New(joinRefusal(why))
	}
	// The fold judged the redemption at the HLC the joiner signed it with,
	// which the joiner chose; whether its invite has lapsed is judged here,
	// by this node's clock, or an expired token could still be redeemed.
	if inv := v.Member(last.Author); inv != nil && inv.Tier == reducers.TierInvite && inv.Expires != 0 && n.nowHLC() > inv.Expires {
		return errors.New(joinRefusal(fmt.Sprintf("the invite expired at %s; ask for a new one with 'pln invite'",
			inv.Expires.Time().Format(time.RFC3339))))
	}
	_, err = n.ingestFrom(oplog.Key{}, ops[len(ops)-1:])
	return err
}

// joinRefusal turns the fold's reason into words for a joiner.
func joinRefusal(why string) string {
	return "the cluster will not admit this token: " + why
}
