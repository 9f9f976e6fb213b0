package reducers

import (
	"bytes"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// What an audit event records.
const (
	EventGenesis = "genesis" // the cluster was founded
	EventAdmit   = "admit"   // a key with no standing was granted a tier
	EventRegrant = "regrant" // a key's grant was replaced (tier, properties or expiry changed)
	EventInvite  = "invite"  // an invite key was issued
	EventRedeem  = "redeem"  // an invite key admitted its joiner
	EventDeny    = "deny"    // a key was revoked; Fell lists what fell with it
	EventRefused = "refused" // an op does not count; Reason says why
	EventHeld    = "held"    // an op is held out because its HLC is too far ahead
)

// Event is one line of the audit trail.
type Event struct {
	HLC     oplog.HLC  `json:"hlc"`
	Op      oplog.ID   `json:"op"`
	Kind    oplog.Kind `json:"-"`
	KindStr string     `json:"kind"`
	What    string     `json:"what"`
	Author  oplog.Key  `json:"author"`
	Subject oplog.Key  `json:"subject,omitzero"`
	Tier    Tier       `json:"tier,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	Fell    []oplog.ID `json:"fell,omitempty"` // for a deny: the ops that stopped counting because of it
}

// Audit returns the audit trail of a set of ops at now, in total order: every
// admission, grant, invite, redemption and deny (with what cascaded), and
// every op that does not count, with its reason. Superseded loads and claims
// are not refusals and do not appear.
func Audit(cluster oplog.ClusterID, ops []*oplog.Op, now oplog.HLC) []Event {
	ops = dedup(ops)
	v := Fold(cluster, ops, now)
	m := v.mem
	maxAhead := v.Params.MaxOffsetMillis

	var mops []*mop
	var data []*oplog.Op // seeds and services: what a cascade can take down
	for _, op := range ops {
		if (op.Kind == oplog.KindSeed || op.Kind == oplog.KindServe) && op.HLC.Wall()-now.Wall() <= maxAhead {
			data = append(data, op)
		}
		if isMembership(op.Kind) && op.HLC.Wall()-now.Wall() <= maxAhead {
			body, err := DecodeBody(op)
			mops = append(mops, &mop{op: op, id: op.ID(), key: oplog.OrderKey(op, op.ID()), body: body, err: err})
		}
	}

	var evs []Event
	standing := make(map[oplog.Key]bool) // keys with a counted grant so far, in order
	for _, op := range ops {
		id := op.ID()
		e := Event{HLC: op.HLC, Op: id, Kind: op.Kind, KindStr: op.Kind.String(), Author: op.Author}
		if op.HLC.Wall()-now.Wall() > maxAhead {
			e.What, e.Reason = EventHeld, "HLC is more than the maximum offset ahead of the clock"
			evs = append(evs, e)
			continue
		}
		if isMembership(op.Kind) {
			if why := m.verdicts[id]; why != "" {
				e.What, e.Reason = EventRefused, why
				evs = append(evs, e)
				continue
			}
			e = membershipEvent(e, m, op, standing, mops, data)
			evs = append(evs, e)
			continue
		}
		if why := judgeData(m, op, id); why != "" {
			e.What, e.Reason = EventRefused, why
			evs = append(evs, e)
		}
	}
	return evs
}

// membershipEvent describes a counted membership op.
func membershipEvent(e Event, m *membership, op *oplog.Op, standing map[oplog.Key]bool, mops []*mop, data []*oplog.Op) Event {
	body, _ := DecodeBody(op)
	switch b := body.(type) {
	case *Genesis:
		e.What, e.Subject, e.Tier = EventGenesis, b.Root, TierAdmin
	case *Grant:
		e.Subject, e.Tier = b.Subject, b.Tier
		switch {
		case b.Tier == TierInvite:
			e.What = EventInvite
		case m.tierAt(op.Author, oplog.OrderKey(op, e.Op)) == TierInvite:
			e.What = EventRedeem
		case standing[b.Subject]:
			e.What = EventRegrant
		default:
			e.What = EventAdmit
		}
		standing[b.Subject] = true
	case *Deny:
		e.What, e.Subject, e.Reason = EventDeny, b.Subject, b.Reason
		standing[b.Subject] = false
		e.Fell = fellWith(m, e.Op, mops, data)
	}
	return e
}

// fellWith lists the ops that count without deny d but not with it: the
// subject's cut ops and, transitively, the grants, denies and publications
// that depended on them. data are the seed and serve ops.
func fellWith(m *membership, d oplog.ID, mops []*mop, data []*oplog.Op) []oplog.ID {
	without := make([]*mop, 0, len(mops))
	for _, o := range mops {
		if o.id != d {
			without = append(without, o)
		}
	}
	alt := foldMembership(m.cluster, without)
	var fell []oplog.ID
	for _, o := range without {
		if alt.verdicts[o.id] == "" && m.verdicts[o.id] != "" {
			fell = append(fell, o.id)
		}
	}
	for _, op := range data {
		id := op.ID()
		if judgeData(alt, op, id) == "" && judgeData(m, op, id) != "" {
			fell = append(fell, id)
		}
	}
	slices.SortFunc(fell, func(a, b oplog.ID) int { return bytes.Compare(a[:], b[:]) })
	return fell
}

// judgeData says why a seed, serve, claim or load op does not count, or "".
func judgeData(m *membership, op *oplog.Op, id oplog.ID) string {
	body, err := DecodeBody(op)
	if err != nil {
		return err.Error()
	}
	need := TierMember
	switch b := body.(type) {
	case *Seed:
		need = TierPublisher
	case *Serve:
		need = TierPublisher
		if b.Node != op.Author {
			return "a service must be on its author"
		}
	case *Claim:
		if b.Node != op.Author {
			return "a claim must be about its author"
		}
	case *Load:
		if b.Node != op.Author {
			return "a load report must be about its author"
		}
	}
	return m.authorize(op, id, need)
}

// dedup returns ops without duplicates, in total order.
func dedup(ops []*oplog.Op) []*oplog.Op {
	type keyed struct {
		key [oplog.OrderKeyLen]byte
		op  *oplog.Op
	}
	ks := make([]keyed, 0, len(ops))
	for _, op := range ops {
		ks = append(ks, keyed{oplog.OrderKey(op, op.ID()), op})
	}
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(a.key[:], b.key[:]) })
	out := make([]*oplog.Op, 0, len(ks))
	for i, k := range ks {
		if i == 0 || k.key != ks[i-1].key {
			out = append(out, k.op)
		}
	}
	return out
}
