package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// LogCmd groups the log verbs; bare 'pln log' lists it.
type LogCmd struct {
	List   LogListCmd   `cmd:"" default:"withargs" help:"List the ops in the order this node received them."`
	Export LogExportCmd `cmd:"" help:"Write the whole log to a file."`
	Import LogImportCmd `cmd:"" help:"Add the ops in a log file (each one verified)."`
}

// LogListCmd lists ops.
type LogListCmd struct {
	Kind string `help:"Only ops of this kind (genesis, grant, deny, seed, serve, claim, load)."`
}

func (c *LogListCmd) Run(ctx context.Context, g *Globals) error {
	entries, err := call[[]daemon.LogEntry](ctx, g, "log", daemon.LogRequest{Kind: c.Kind})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(entries)
	}
	w := table("SEQ", "TIME", "KIND", "AUTHOR", "ID", "WHAT")
	for _, e := range entries {
		row(w, e.Seq, when(e.HLC), e.Kind, e.Name, e.ID.Short(), e.Summary)
	}
	return w.Flush()
}

// LogExportCmd writes the log to a file.
type LogExportCmd struct {
	File string `arg:"" type:"path" help:"File to write (replaced if it exists)."`
}

func (c *LogExportCmd) Run(ctx context.Context, g *Globals) error {
	path, err := filepath.Abs(c.File)
	if err != nil {
		return err
	}
	res, err := call[daemon.ExportResult](ctx, g, "export", daemon.FileRequest{Path: path})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	fmt.Printf("exported %d ops to %s\n", res.Ops, res.Path)
	return nil
}

// LogImportCmd adds ops from a file.
type LogImportCmd struct {
	File string `arg:"" type:"existingfile" help:"A file written by 'pln log export'."`
}

func (c *LogImportCmd) Run(ctx context.Context, g *Globals) error {
	path, err := filepath.Abs(c.File)
	if err != nil {
		return err
	}
	res, err := call[daemon.ImportResult](ctx, g, "import", daemon.FileRequest{Path: path})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	for _, b := range res.Bad {
		fmt.Printf("op %d skipped: %s\n", b.Pos, b.Reason)
	}
	if res.Truncated != "" {
		fmt.Printf("stopped early: %s\n", res.Truncated)
	}
	fmt.Printf("read %d ops: %d new, %d already here, %d bad\n", res.Read, res.Added, res.Duplicate, len(res.Bad))
	return nil
}

// AuditCmd prints the audit trail.
type AuditCmd struct {
	Peer string `help:"Only events by or about this key." placeholder:"KEY"`
}

func (c *AuditCmd) Run(ctx context.Context, g *Globals) error {
	evs, err := call[[]daemon.AuditEntry](ctx, g, "audit", daemon.AuditRequest{Peer: c.Peer})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(evs)
	}
	w := table("TIME", "EVENT", "KIND", "BY", "SUBJECT", "OP", "DETAIL")
	for _, e := range evs {
		detail := e.Reason
		if e.Tier != reducers.TierNone {
			detail = strings.TrimSpace(e.Tier.String() + " " + detail)
		}
		if len(e.Fell) > 0 {
			detail += fmt.Sprintf(" (%d ops fell with it)", len(e.Fell))
		}
		subject := "-"
		if e.SubjectName != "" {
			subject = e.SubjectName
		}
		row(w, when(e.HLC), e.What, e.KindStr, e.AuthorName, subject, e.Op.Short(), detail)
	}
	return w.Flush()
}

// ReplayCmd folds a log offline.
type ReplayCmd struct {
	Path   string `arg:"" type:"path" help:"A log file from 'pln log export', or a node's data directory." placeholder:"FILE|DIR"`
	At     string `help:"Fold only the ops up to this time (RFC 3339 or HLC)." placeholder:"HLC"`
	Check  bool   `help:"Recompute every claim the log's node made, from the view it had, and list divergences."`
	Verify bool   `help:"Check every op's signature too (slower; a node's own log was checked as it arrived)."`
}

func (c *ReplayCmd) Run(g *Globals) error {
	src, err := daemon.ReadLog(c.Path, c.Verify)
	if err != nil {
		return err
	}
	at := oplog.HLC(0)
	for _, op := range src.Ops {
		at = max(at, op.HLC)
	}
	if c.At != "" {
		if at, err = oplog.ParseHLC(c.At); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	if c.Check {
		return c.check(g, src)
	}
	v := reducers.FoldAt(src.Cluster, src.Ops, at)
	var places []reducers.Placement
	for _, name := range v.SeedNames() {
		places = append(places, reducers.Explain(v, name, at))
	}
	if g.JSON {
		return emit(map[string]any{"at": at, "view": v.Digest(), "ops": len(src.Ops), "skipped": src.Skipped,
			"members": v.Members, "seeds": v.Seeds, "placements": places})
	}
	for _, b := range src.Skipped {
		fmt.Printf("op %d skipped: %s\n", b.Pos, b.Reason)
	}
	fmt.Printf("cluster %q %s at %s: %d ops, view %s\n", v.Name, src.Cluster.Short(), at, len(src.Ops), oplog.ID(v.Digest()).Short())
	w := table("MEMBER", "KEY", "TIER", "LIVE", "PROPS")
	for _, k := range v.MemberKeys() {
		m := v.Members[k]
		live := yesNo(v.Live(k, at))
		if m.Denied {
			live = "denied"
		}
		row(w, m.Name(), k.Short(), m.Tier, live, propsString(m.Props))
	}
	w.Flush()
	for _, p := range places {
		fmt.Printf("\nseed %s: want %d, demand %.1f calls/s\n", p.Seed, p.Want, float64(p.DemandMilliCPS)/1000)
		w := table("NODE", "SCORE", "DEMAND", "STICKY", "CACHED", "CHOSEN")
		for _, cand := range p.Ranked {
			row(w, v.Members[cand.Node].Name(), cand.Score, cand.Demand, yesNo(cand.Sticky), yesNo(cand.Cached), yesNo(cand.Chosen))
		}
		w.Flush()
	}
	return nil
}

func (c *ReplayCmd) check(g *Globals, src *daemon.LogSource) error {
	if src.Node.IsZero() {
		return fmt.Errorf("replay --check needs to know whose log this is, and %s does not say", c.Path)
	}
	r := reducers.CheckClaims(src.Cluster, src.Node, src.Ops)
	if g.JSON {
		if err := emit(r); err != nil {
			return err
		}
	} else {
		for _, d := range r.Divergences {
			fmt.Printf("op %d (claim %s on %s, %s at %s): %s\n", d.Seq, d.Claim.Short(), d.Seed, d.State, d.HLC, d.Reason)
		}
		fmt.Printf("checked %d claims by %s: %d divergences\n", r.Claims, src.Node.Short(), len(r.Divergences))
	}
	if len(r.Divergences) > 0 {
		return fmt.Errorf("replay found %d divergences", len(r.Divergences))
	}
	return nil
}
