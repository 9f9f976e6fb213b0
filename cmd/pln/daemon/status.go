package daemon

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// Status is what 'pln status' shows.
type Status struct {
	Node        oplog.Key       `json:"node"`
	Name        string          `json:"name"`
	Cluster     oplog.ClusterID `json:"cluster"`
	ClusterName string          `json:"cluster_name"`
	Running     bool            `json:"running"`
	Now         oplog.HLC       `json:"now"`
	View        string          `json:"view"` // digest
	Ops         uint64          `json:"ops"`
	Frontier    oplog.HLC       `json:"frontier"`
	Pending     int             `json:"pending"`
	Members     []MemberStatus  `json:"members"`
	Peers       []PeerStatus    `json:"peers"`
	Seeds       []SeedStatus    `json:"seeds"`
	Claims      []ClaimStatus   `json:"claims"`
}

// MemberStatus is one key in the cluster.
type MemberStatus struct {
	Key      oplog.Key         `json:"key"`
	Name     string            `json:"name"`
	Tier     reducers.Tier     `json:"tier"`
	Props    map[string]string `json:"props,omitempty"`
	Self     bool              `json:"self,omitempty"`
	Root     bool              `json:"root,omitempty"`
	Live     bool              `json:"live"`
	Active   bool              `json:"active"`
	Denied   bool              `json:"denied,omitempty"`
	Expires  oplog.HLC         `json:"expires,omitempty"`
	LastLoad oplog.HLC         `json:"last_load,omitempty"`
}

// PeerStatus is another node as this one sees it: live or not, linked
// directly or not, where, how far, and when it last reported.
type PeerStatus struct {
	Key       oplog.Key     `json:"key"`
	Name      string        `json:"name"`
	Live      bool          `json:"live"`
	Direct    bool          `json:"direct"`
	Addr      string        `json:"addr,omitempty"`
	RTT       time.Duration `json:"rtt,omitempty"`
	LastLoad  oplog.HLC     `json:"last_load,omitempty"`
	Estimated time.Duration `json:"rtt_estimate,omitempty"` // from network coordinates
}

// SeedStatus is one published seed.
type SeedStatus struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Digest      string   `json:"digest"`
	MinReplicas int64    `json:"min_replicas"`
	MaxReplicas int64    `json:"max_replicas"`
	Want        int      `json:"want"`
	Ready       int      `json:"ready"`
	Where       []string `json:"where"`       // nodes with a ready replica
	Placed      []string `json:"placed"`      // nodes placement chooses now
	Copies      []string `json:"copies"`      // live nodes that hold the artifact (see reducers.Keepers)
	CallsPerSec float64  `json:"calls_per_s"` // served, summed over the last load reports
}

// ClaimStatus is one node's claim on a seed.
type ClaimStatus struct {
	Node  oplog.Key `json:"node"`
	Name  string    `json:"name"`
	Seed  string    `json:"seed"`
	State string    `json:"state"`
	HLC   oplog.HLC `json:"hlc"`
}

func init() { register("status", status) }

func status(_ context.Context, n *Node, _ struct{}) (*Status, error) {
	seq, v := n.Position()
	now := n.nowHLC()
	s := &Status{
		Node: n.self, Cluster: n.cluster, ClusterName: v.Name, Now: now,
		View: v.Digest().String(),
		Ops:  seq, Frontier: v.Frontier, Pending: v.Pending,
		Members: []MemberStatus{}, Peers: []PeerStatus{}, Seeds: []SeedStatus{}, Claims: []ClaimStatus{},
	}
	s.Peers = n.peerStatus(v, now)
	if m := v.Member(n.self); m != nil {
		s.Name = m.Name()
	}
	for _, k := range v.MemberKeys() {
		m := v.Members[k]
		ms := MemberStatus{Key: k, Name: m.Name(), Tier: m.Tier, Props: m.Props, Self: k == n.self, Root: m.Root,
			Live: v.Live(k, now), Active: m.Active(now), Denied: m.Denied, Expires: m.Expires}
		if l := v.Loads[k]; l != nil {
			ms.LastLoad = l.HLC
		}
		s.Members = append(s.Members, ms)
	}
	for _, name := range v.SeedNames() {
		sd := v.Seeds[name]
		p := reducers.Explain(v, name, now)
		ss := SeedStatus{Name: name, Kind: sd.Kind, Digest: sd.Digest.String(),
			MinReplicas: sd.MinReplicas, MaxReplicas: sd.MaxReplicas, Want: p.Want, Where: []string{}, Placed: []string{}, Copies: []string{}}
		for _, c := range v.ClaimsFor(name) {
			if c.State == reducers.ClaimReady && c.Digest == sd.Digest && v.Live(c.Node, now) {
				ss.Ready++
				ss.Where = append(ss.Where, nameOf(v, c.Node))
			}
		}
		for _, k := range p.Nodes {
			ss.Placed = append(ss.Placed, nameOf(v, k))
		}
		for _, k := range v.LiveNodes(now) {
			l := v.Loads[k]
			ss.CallsPerSec += float64(l.Seeds[name].ServedMilliCPS) / 1000
			if slices.Contains(l.Cached, sd.Digest) {
				ss.Copies = append(ss.Copies, nameOf(v, k))
			}
		}
		s.Seeds = append(s.Seeds, ss)
	}
	for _, c := range v.Claims {
		s.Claims = append(s.Claims, ClaimStatus{Node: c.Node, Name: nameOf(v, c.Node), Seed: c.Seed, State: c.State, HLC: c.HLC})
	}
	slices.SortFunc(s.Claims, func(a, b ClaimStatus) int {
		if a.Seed != b.Seed {
			return cmp.Compare(a.Seed, b.Seed)
		}
		return cmp.Compare(a.Node.String(), b.Node.String())
	})
	return s, nil
}

// nameOf is a key's name in the view, or its short form.
func nameOf(v *reducers.View, k oplog.Key) string {
	if m := v.Member(k); m != nil {
		return m.Name()
	}
	return k.Short()
}

// peerStatus lists every other active node and every linked peer.
func (n *Node) peerStatus(v *reducers.View, now oplog.HLC) []PeerStatus {
	links := map[oplog.Key]netx.PeerInfo{}
	if m := n.mesh.Load(); m != nil {
		for _, p := range m.Peers() {
			links[p.Key] = p
		}
	}
	out := []PeerStatus{}
	for _, k := range v.MemberKeys() {
		m := v.Members[k]
		link, direct := links[k]
		if k == n.self || m.Root || (!direct && !(m.Active(now) && m.Tier.Node())) {
			continue
		}
		ps := PeerStatus{Key: k, Name: m.Name(), Live: v.Live(k, now), Direct: direct, Addr: link.Addr, RTT: link.RTT}
		if l := v.Loads[k]; l != nil {
			ps.LastLoad = l.HLC
			if ps.Addr == "" && len(l.Addrs) > 0 {
				ps.Addr = l.Addrs[0]
			}
		}
		if v.Loads[k] != nil && v.Loads[n.self] != nil {
			ps.Estimated = time.Duration(v.RTT(n.self, k)) * time.Microsecond
		}
		out = append(out, ps)
	}
	return out
}
