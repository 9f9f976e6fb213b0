package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// StatusCmd shows the node's view of the cluster.
type StatusCmd struct{}

func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	conn, err := g.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := daemon.Call[daemon.Status](ctx, conn, "status", struct{}{})
	if err != nil {
		return err
	}
	s.Running = conn.Running()
	if g.JSON {
		return emit(s)
	}
	state := "not running (start it with 'pln up')"
	if s.Running {
		state = "running"
	}
	fmt.Printf("node     %s (%s), %s\n", s.Name, s.Node.Short(), state)
	fmt.Printf("cluster  %q %s\n", s.ClusterName, s.Cluster.Short())
	fmt.Printf("view     %s: %d ops, newest %s", s.View[:8], s.Ops, when(s.Frontier))
	if s.Pending > 0 {
		fmt.Printf(", %d held (clock ahead)", s.Pending)
	}
	fmt.Println()

	fmt.Println("\nMEMBERS")
	w := table("NAME", "KEY", "TIER", "LIVE", "LAST LOAD", "PROPS")
	for _, m := range s.Members {
		name, live := m.Name, yesNo(m.Live)
		if m.Self {
			name += " *"
		}
		switch {
		case m.Denied:
			live = "denied"
		case !m.Active:
			live = "expired"
		case m.Root:
			live = "-"
		}
		row(w, name, m.Key.Short(), m.Tier, live, when(m.LastLoad), propsString(m.Props))
	}
	w.Flush()

	if len(s.Peers) > 0 {
		fmt.Println("\nPEERS")
		w = table("NAME", "KEY", "LIVE", "LINK", "ADDR", "RTT", "LAST LOAD")
		for _, p := range s.Peers {
			link, rtt := "indirect", "-"
			if p.Direct {
				link, rtt = "direct", p.RTT.Round(10*time.Microsecond).String()
			}
			row(w, p.Name, p.Key.Short(), yesNo(p.Live), link, orDash(p.Addr), rtt, when(p.LastLoad))
		}
		w.Flush()
	}
	if len(s.Seeds) > 0 {
		fmt.Println("\nSEEDS")
		w = table("NAME", "KIND", "DIGEST", "REPLICAS", "WANT", "READY", "WHERE", "COPIES", "CALLS/S")
		for _, sd := range s.Seeds {
			row(w, sd.Name, sd.Kind, sd.Digest[:12], fmt.Sprintf("%d:%d", sd.MinReplicas, sd.MaxReplicas), sd.Want, sd.Ready, list(sd.Where), len(sd.Copies), fmt.Sprintf("%.1f", sd.CallsPerSec))
		}
		w.Flush()
	}
	if len(s.Claims) > 0 {
		fmt.Println("\nCLAIMS")
		w = table("SEED", "NODE", "STATE", "SINCE")
		for _, cl := range s.Claims {
			row(w, cl.Seed, cl.Name, cl.State, when(cl.HLC))
		}
		w.Flush()
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
