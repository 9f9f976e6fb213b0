package reducers

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// Membership: the sequential fold of genesis, grant and deny ops into a
// timeline per key, and the question every other op asks of it — "what was
// this author when it wrote this?"

// maxMembershipPasses bounds the fixpoint over retroactive denies. Each pass
// is deterministic, so even a pathological log that never settles gives every
// node the same answer.
const maxMembershipPasses = 16

type orderKey = [oplog.OrderKeyLen]byte

// mop is a membership op with its decoded body and place in the total order.
type mop struct {
	op   *oplog.Op
	id   oplog.ID
	key  orderKey
	body Body  // nil if it failed to decode
	err  error // why it failed to decode
}

// event is one counted grant or deny in a key's timeline.
type event struct {
	key   orderKey
	id    oplog.ID
	hlc   oplog.HLC
	by    oplog.Key
	grant *Grant // exactly one of grant, deny
	deny  *Deny
	keep  map[oplog.ID]bool
}

// timeline is a key's counted grants and denies in total order.
type timeline []*event

// membership is the outcome of folding the membership ops.
type membership struct {
	cluster   oplog.ClusterID
	root      oplog.Key
	genesis   *mop // nil until a valid genesis
	params    Params
	lines     map[oplog.Key]timeline
	verdicts  map[oplog.ID]string // membership op → why it does not count ("" = counts)
	redeemed  map[oplog.Key]oplog.ID
	validDeny map[oplog.ID]bool
}

// foldMembership folds membership ops (any order, no duplicates) to timelines.
func foldMembership(cluster oplog.ClusterID, ops []*mop) *membership {
	slices.SortFunc(ops, func(a, b *mop) int { return bytes.Compare(a.key[:], b.key[:]) })
	var prev *membership
	for range maxMembershipPasses {
		m := membershipPass(cluster, ops, prev)
		if prev != nil && maps.Equal(prev.validDeny, m.validDeny) {
			return m
		}
		prev = m
	}
	return prev
}

// membershipPass folds ops in order. Denies known valid from the previous
// pass cut their subject's earlier ops retroactively.
func membershipPass(cluster oplog.ClusterID, ops []*mop, prev *membership) *membership {
	m := &membership{
		cluster:   cluster,
		params:    DefaultParams(),
		lines:     make(map[oplog.Key]timeline),
		verdicts:  make(map[oplog.ID]string, len(ops)),
		redeemed:  make(map[oplog.Key]oplog.ID),
		validDeny: make(map[oplog.ID]bool),
	}
	for _, o := range ops {
		reason := m.judge(o, prev)
		m.verdicts[o.id] = reason
		if reason != "" {
			continue
		}
		switch b := o.body.(type) {
		case *Genesis:
			m.genesis, m.root, m.params = o, b.Root, b.Params.withDefaults()
		case *Grant:
			m.lines[b.Subject] = append(m.lines[b.Subject], &event{key: o.key, id: o.id, hlc: o.op.HLC, by: o.op.Author, grant: b})
			if m.tierAt(o.op.Author, o.key) == TierInvite {
				m.redeemed[o.op.Author] = o.id
			}
		case *Deny:
			keep := make(map[oplog.ID]bool, len(b.Keep))
			for _, id := range b.Keep {
				keep[id] = true
			}
			m.lines[b.Subject] = append(m.lines[b.Subject], &event{key: o.key, id: o.id, hlc: o.op.HLC, by: o.op.Author, deny: b, keep: keep})
			m.validDeny[o.id] = true
		}
	}
	return m
}

// judge says why a membership op does not count, or "" if it does.
func (m *membership) judge(o *mop, prev *membership) string {
	if o.err != nil {
		return o.err.Error()
	}
	author := o.op.Author
	if g, ok := o.body.(*Genesis); ok {
		switch {
		case m.genesis != nil:
			return fmt.Sprintf("a cluster has one genesis; %s came first", m.genesis.id.Short())
		case oplog.ClusterOf(author) != m.cluster:
			return "genesis not signed by this cluster's root key"
		case g.Root != author:
			return "genesis names a root other than its author"
		}
		return ""
	}
	if m.genesis == nil {
		return "before the cluster's genesis"
	}
	tier, why := m.authorAt(author, o.key, o.id, o.op.HLC)
	if why == "" && prev != nil {
		if d := prev.cutAfter(author, o.key, o.id); d != nil {
			why = fmt.Sprintf("cut by deny %s (not in its keep set)", d.id.Short())
		}
	}
	if why != "" {
		return why
	}
	isRoot := author == m.root
	switch b := o.body.(type) {
	case *Grant:
		return m.judgeGrant(author, tier, isRoot, o, b)
	case *Deny:
		switch {
		case b.Subject == m.root:
			return "the root key cannot be denied"
		case isRoot, author == b.Subject:
			return ""
		case tier != TierAdmin:
			return fmt.Sprintf("only the root, an admin or the subject itself may deny; author is %s", tier)
		case m.tierAt(b.Subject, o.key) == TierAdmin:
			return "an admin cannot deny another admin; only the root can"
		}
		return ""
	}
	return fmt.Sprintf("%s is not a membership op", o.op.Kind)
}

func (m *membership) judgeGrant(author oplog.Key, tier Tier, isRoot bool, o *mop, g *Grant) string {
	switch {
	case g.Subject == author:
		return "a key cannot grant itself"
	case g.Subject == m.root:
		return "the root key needs no grant"
	case isRoot:
		return ""
	case tier == TierAdmin:
		if m.tierAt(g.Subject, o.key) == TierAdmin {
			return "only the root changes another admin's grant"
		}
		return ""
	case tier == TierInvite:
		inv := m.grantAt(author, o.key)
		if used, ok := m.redeemed[author]; ok {
			return fmt.Sprintf("invite already redeemed by grant %s", used.Short())
		}
		switch {
		case g.Tier == TierInvite:
			return "an invite key cannot issue invites"
		case m.standing(g.Subject, o.key, o.op.HLC):
			return "an invite admits only a key without standing; this key is already a member"
		case g.Tier != inv.Confers:
			return fmt.Sprintf("invite confers %s, grant asks for %s", inv.Confers, g.Tier)
		case !redeemProps(g.Props, inv.Props):
			return "grant's properties differ from the invite's"
		case g.Expires != 0 && g.Expires > inv.Expires:
			return "grant outlives the invite"
		}
		return ""
	}
	return fmt.Sprintf("only the root, admins and invite keys may grant; author is %s", tier)
}

// redeemProps reports whether a redemption's properties are the invite's:
// equal, except that a joiner may name itself if the invite did not.
func redeemProps(got, invite map[string]string) bool {
	if _, named := invite["name"]; named || got["name"] == "" {
		return maps.Equal(got, invite)
	}
	if len(got) != len(invite)+1 {
		return false
	}
	for k, v := range invite {
		if w, ok := got[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// authorAt returns what author was just before position key, or why it was
// nothing. It does not apply retroactive denies (see cutAfter).
func (m *membership) authorAt(author oplog.Key, key orderKey, id oplog.ID, hlc oplog.HLC) (Tier, string) {
	if m.genesis == nil || bytes.Compare(key[:], m.genesis.key[:]) < 0 {
		return TierNone, "before the cluster's genesis"
	}
	if author == m.root {
		return TierAdmin, ""
	}
	e := m.lastBefore(author, key)
	switch {
	case e == nil:
		return TierNone, "author is not a member"
	case e.deny != nil:
		return TierNone, fmt.Sprintf("author was denied by %s at %s", e.id.Short(), e.hlc)
	case e.grant.Expires != 0 && hlc > e.grant.Expires:
		return TierNone, fmt.Sprintf("author's grant %s expired at %s", e.id.Short(), e.grant.Expires)
	}
	return e.grant.Tier, ""
}

// standing reports whether k holds a grant at position key that has not
// been denied nor expired at hlc.
func (m *membership) standing(k oplog.Key, key orderKey, hlc oplog.HLC) bool {
	e := m.lastBefore(k, key)
	return k == m.root || (e != nil && e.grant != nil && (e.grant.Expires == 0 || hlc <= e.grant.Expires))
}

// tierAt is authorAt without the reason.
func (m *membership) tierAt(k oplog.Key, key orderKey) Tier {
	if k == m.root {
		return TierAdmin
	}
	e := m.lastBefore(k, key)
	if e == nil || e.deny != nil {
		return TierNone
	}
	return e.grant.Tier
}

func (m *membership) grantAt(k oplog.Key, key orderKey) *Grant {
	if e := m.lastBefore(k, key); e != nil {
		return e.grant
	}
	return nil
}

// lastBefore returns k's newest event strictly before key.
func (m *membership) lastBefore(k oplog.Key, key orderKey) *event {
	line := m.lines[k]
	i, _ := slices.BinarySearchFunc(line, key, func(e *event, key orderKey) int { return bytes.Compare(e.key[:], key[:]) })
	if i == 0 {
		return nil
	}
	return line[i-1]
}

// cutAfter returns the first deny of author after key whose keep set does not
// list id: the deny that makes an op written before it stop counting. Every
// later deny gets its say, so a cascading deny can take back what an earlier,
// gentler one kept (a key first retired, then found compromised).
func (m *membership) cutAfter(author oplog.Key, key orderKey, id oplog.ID) *event {
	line := m.lines[author]
	i, _ := slices.BinarySearchFunc(line, key, func(e *event, key orderKey) int { return bytes.Compare(e.key[:], key[:]) })
	for ; i < len(line); i++ {
		if e := line[i]; e.deny != nil && e.key != key && !e.keep[id] {
			return e
		}
	}
	return nil
}

// authorize judges a non-membership op: its author must hold need at the op's
// position and not be cut by a later deny.
func (m *membership) authorize(op *oplog.Op, id oplog.ID, need Tier) string {
	key := oplog.OrderKey(op, id)
	tier, why := m.authorAt(op.Author, key, id, op.HLC)
	if why != "" {
		return why
	}
	if !tier.Covers(need) {
		return fmt.Sprintf("%s needs tier %s; author is %s", op.Kind, need, tier)
	}
	if d := m.cutAfter(op.Author, key, id); d != nil {
		return fmt.Sprintf("cut by deny %s (not in its keep set)", d.id.Short())
	}
	return ""
}
