package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
	"github.com/pln-mesh/pln/reducers"
)

// LogRequest filters 'pln log'.
type LogRequest struct {
	Kind string `json:"kind,omitempty"`
}

// LogEntry is one op as 'pln log' shows it.
type LogEntry struct {
	Seq     uint64          `json:"seq"`
	ID      oplog.ID        `json:"id"`
	HLC     oplog.HLC       `json:"hlc"`
	Kind    string          `json:"kind"`
	Author  oplog.Key       `json:"author"`
	Name    string          `json:"author_name"`
	Summary string          `json:"summary"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// AuditRequest filters 'pln audit' to events by or about one key.
type AuditRequest struct {
	Peer string `json:"peer,omitempty"`
}

// AuditEntry is an audit event with names resolved.
type AuditEntry struct {
	reducers.Event
	AuthorName  string `json:"author_name"`
	SubjectName string `json:"subject_name,omitempty"`
}

// FileRequest names a file on the node's machine.
type FileRequest struct {
	Path string `json:"path"`
}

// ExportResult reports an export.
type ExportResult struct {
	Path string `json:"path"`
	Ops  int    `json:"ops"`
}

// ImportResult reports an import: ops read, newly stored, already present,
// and those refused with their position in the file and why.
type ImportResult struct {
	Read      int             `json:"read"`
	Added     int             `json:"added"`
	Duplicate int             `json:"duplicate"`
	Bad       []BadOp         `json:"bad"`
	Truncated string          `json:"truncated,omitempty"` // why reading stopped early
	Cluster   oplog.ClusterID `json:"cluster"`
}

// BadOp is an op an import refused.
type BadOp struct {
	Pos    int    `json:"pos"`
	Reason string `json:"reason"`
}

func init() {
	register("log", logList)
	register("audit", audit)
	register("export", export)
	register("import", importLog)
}

func logList(_ context.Context, n *Node, r LogRequest) ([]LogEntry, error) {
	var kind oplog.Kind
	if r.Kind != "" {
		k, err := oplog.ParseKind(r.Kind)
		if err != nil {
			return nil, err
		}
		kind = k
	}
	v := n.View()
	out := []LogEntry{}
	err := n.store.ForEachArrival(1, func(seq uint64, op *oplog.Op) error {
		if kind != 0 && op.Kind != kind {
			return nil
		}
		e := LogEntry{Seq: seq, ID: op.ID(), HLC: op.HLC, Kind: op.Kind.String(), Author: op.Author, Name: nameOf(v, op.Author)}
		body, err := reducers.DecodeBody(op)
		if err != nil {
			e.Summary = "(" + err.Error() + ")"
		} else {
			e.Body, _ = json.Marshal(body)
			e.Summary = summarize(v, body)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// summarize renders a body in a few words for the log table.
func summarize(v *reducers.View, b reducers.Body) string {
	switch b := b.(type) {
	case *reducers.Genesis:
		return fmt.Sprintf("cluster %q root %s", b.Name, b.Root.Short())
	case *reducers.Grant:
		s := fmt.Sprintf("%s → %s", b.Tier, nameOf(v, b.Subject))
		if b.Tier == reducers.TierInvite {
			s += fmt.Sprintf(" (confers %s until %s)", b.Confers, b.Expires)
		}
		return s + props(b.Props)
	case *reducers.Deny:
		return fmt.Sprintf("%s keep=%d %s", nameOf(v, b.Subject), len(b.Keep), b.Reason)
	case *reducers.Seed:
		if b.Tombstone {
			return b.Name + " withdrawn"
		}
		return fmt.Sprintf("%s %s %s replicas %d:%d", b.Name, b.Kind, b.Digest.Short(), b.MinReplicas, b.MaxReplicas)
	case *reducers.Serve:
		if b.Tombstone {
			return b.Name + " withdrawn"
		}
		return fmt.Sprintf("%s %s/%d", b.Name, b.Proto, b.Port)
	case *reducers.Claim:
		return fmt.Sprintf("%s %s", b.Seed, b.State)
	case *reducers.Load:
		return fmt.Sprintf("cpu %d/%dm mem %d/%dMiB inflight %d", b.CPUUsedMilli, b.CPUMilli, b.MemUsedBytes>>20, b.MemBytes>>20, b.InFlight)
	}
	return ""
}

func props(p map[string]string) string {
	if len(p) == 0 {
		return ""
	}
	var parts []string
	for k, v := range p {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return " " + strings.Join(parts, ",")
}

func audit(_ context.Context, n *Node, r AuditRequest) ([]AuditEntry, error) {
	var peer oplog.Key
	if r.Peer != "" {
		k, err := oplog.ParseKey(r.Peer)
		if err != nil {
			return nil, err
		}
		peer = k
	}
	v := n.View()
	out := []AuditEntry{}
	for _, e := range n.audit() {
		if !peer.IsZero() && e.Author != peer && e.Subject != peer {
			continue
		}
		ae := AuditEntry{Event: e, AuthorName: nameOf(v, e.Author)}
		if !e.Subject.IsZero() {
			ae.SubjectName = nameOf(v, e.Subject)
		}
		out = append(out, ae)
	}
	return out, nil
}

// audit folds the whole log into its audit trail.
func (n *Node) audit() []reducers.Event {
	var ops []*oplog.Op
	n.store.ForEachArrival(1, func(_ uint64, op *oplog.Op) error {
		ops = append(ops, op)
		return nil
	})
	return reducers.Audit(n.cluster, ops, n.nowHLC())
}

func export(_ context.Context, n *Node, r FileRequest) (*ExportResult, error) {
	if !filepath.IsAbs(r.Path) {
		return nil, fmt.Errorf("export path %q must be absolute", r.Path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.Path), ".pln-export-*")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	count, err := n.store.Export(tmp, store.LogHeader{Cluster: n.cluster, Node: n.self})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), r.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("export to %s: %w", r.Path, err)
	}
	return &ExportResult{Path: r.Path, Ops: count}, nil
}

// importBatch is how many ops an import stores per transaction.
const importBatch = 1024

func importLog(_ context.Context, n *Node, r FileRequest) (*ImportResult, error) {
	f, err := os.Open(r.Path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	lr, err := store.NewLogReader(f)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", r.Path, err)
	}
	res := &ImportResult{Bad: []BadOp{}, Cluster: lr.Header().Cluster}
	if lr.Header().Cluster != n.cluster {
		return nil, fmt.Errorf("import %s: the log is from cluster %s, this node is in cluster %s; nothing imported", r.Path, lr.Header().Cluster.Short(), n.cluster.Short())
	}
	var batch []*oplog.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		added, err := n.Ingest(batch...)
		if err != nil {
			return err
		}
		for _, a := range added {
			if a {
				res.Added++
			} else {
				res.Duplicate++
			}
		}
		batch = batch[:0]
		return nil
	}
	for {
		pos, raw, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.Truncated = err.Error()
			break
		}
		res.Read++
		op, err := oplog.Decode(raw)
		if err == nil {
			err = op.Verify(n.cluster)
		}
		if err != nil {
			res.Bad = append(res.Bad, BadOp{Pos: pos, Reason: err.Error()})
			continue
		}
		if batch = append(batch, op); len(batch) == importBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	return res, flush()
}
