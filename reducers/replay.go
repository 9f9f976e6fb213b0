package reducers

import (
	"fmt"

	"github.com/pln-mesh/pln/oplog"
)

// Replay: recomputing, from a node's own log, the decisions it made.
//
// Every claim a node appends records the position it decided from: how many
// ops its log held (Claim.Seq) and the digest of their view (Claim.View). The
// claim's own HLC is the "now" it decided at. Given the log in arrival order,
// CheckClaims folds each prefix again and asks Place the same question.

// Divergence is a claim whose recorded decision the log does not reproduce.
type Divergence struct {
	Seq    uint64    `json:"seq"` // arrival position of the claim op
	Claim  oplog.ID  `json:"claim"`
	HLC    oplog.HLC `json:"hlc"`
	Seed   string    `json:"seed"`
	State  string    `json:"state"`
	Reason string    `json:"reason"`
}

// ReplayReport is the outcome of CheckClaims.
type ReplayReport struct {
	Claims      int          `json:"claims"` // claims by the node that were checked
	Divergences []Divergence `json:"divergences"`
}

// CheckClaims replays ops (in the arrival order of node's log) and checks
// every claim node made: the view at the claim's recorded position must have
// the recorded digest, and Place at the claim's time must agree with it — a
// ready claim from a chosen node, a draining or released one from a node no
// longer chosen.
func CheckClaims(cluster oplog.ClusterID, node oplog.Key, ops []*oplog.Op) ReplayReport {
	var r ReplayReport
	f := NewFolder(cluster)
	folded := 0           // ops[:folded] are in f
	var lastNow oplog.HLC // f has been viewed at this time; Folder time only moves forward
	for i, op := range ops {
		if op.Kind != oplog.KindClaim || op.Author != node {
			continue
		}
		body, err := DecodeBody(op)
		if err != nil {
			continue // not a claim that counts; Audit reports it
		}
		c := body.(*Claim)
		r.Claims++
		d := Divergence{Seq: uint64(i + 1), Claim: op.ID(), HLC: op.HLC, Seed: c.Seed, State: c.State}
		pos := int(c.Seq)
		if pos > i {
			d.Reason = fmt.Sprintf("claims to have decided from %d ops, but only %d came before it", pos, i)
			r.Divergences = append(r.Divergences, d)
			continue
		}
		var v *View
		if pos >= folded && op.HLC >= lastNow {
			for ; folded < pos; folded++ {
				f.Add(ops[folded], op.HLC)
			}
			v, lastNow = f.View(op.HLC), op.HLC
		} else {
			v = Fold(cluster, ops[:pos], op.HLC)
		}
		if !c.View.IsZero() && v.Digest() != c.View {
			d.Reason = fmt.Sprintf("view after %d ops has digest %s; the claim recorded %s", pos, oplog.ID(v.Digest()).Short(), oplog.ID(c.View).Short())
			r.Divergences = append(r.Divergences, d)
			continue
		}
		chosen := Explain(v, c.Seed, op.HLC).Chosen(node)
		switch {
		case c.State == ClaimReady && !chosen:
			d.Reason = "claimed ready, but placement does not choose this node"
		case c.State != ClaimReady && chosen:
			d.Reason = fmt.Sprintf("claimed %s, but placement still chooses this node", c.State)
		default:
			continue
		}
		r.Divergences = append(r.Divergences, d)
	}
	return r
}

// FoldAt folds the ops whose HLC is at or before at, as the view stood then.
func FoldAt(cluster oplog.ClusterID, ops []*oplog.Op, at oplog.HLC) *View {
	var upto []*oplog.Op
	for _, op := range ops {
		if op.HLC <= at {
			upto = append(upto, op)
		}
	}
	return Fold(cluster, upto, at)
}
