package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
)

// UpCmd runs the node in the foreground until interrupted.
type UpCmd struct {
	Listen    string   `help:"UDP address to listen on." default:":60611" placeholder:"ADDR"`
	Advertise []string `help:"Address other nodes should dial (repeatable); default: this machine's addresses." placeholder:"ADDR"`
}

func (c *UpCmd) Run(ctx context.Context, g *Globals) error {
	cfg := g.config()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Mesh.Listen, cfg.Mesh.Advertise = c.Listen, c.Advertise
	return daemon.Run(ctx, cfg, nil)
}

// DownCmd stops the running node.
type DownCmd struct{}

func (c *DownCmd) Run(ctx context.Context, g *Globals) error {
	conn, err := g.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	if !conn.Running() {
		return fmt.Errorf("no node is running in %s", g.Dir)
	}
	if _, err := daemon.Call[struct{}](ctx, conn, "down", struct{}{}); err != nil {
		return err
	}
	// The node answers before it stops; wait until its socket is gone.
	return daemon.WaitDown(ctx, g.config())
}

// InitCmd creates a cluster.
type InitCmd struct {
	Name  string   `help:"Name of the new cluster." default:"pln"`
	Props []string `name:"prop" help:"A property of this node, key=value (repeatable); name= sets its display name." placeholder:"K=V"`
}

func (c *InitCmd) Run(g *Globals) error {
	props, err := parseProps(c.Props)
	if err != nil {
		return err
	}
	n, err := daemon.Init(g.config(), daemon.InitOptions{Name: c.Name, Props: props})
	if err != nil {
		return err
	}
	defer n.Close()
	v := n.View()
	res := map[string]any{"cluster": n.Cluster(), "cluster_name": v.Name, "node": n.Self(), "dir": g.Dir}
	if g.JSON {
		return emit(res)
	}
	fmt.Printf("created cluster %q (%s) in %s\nthis node is %s, an admin; the root key is in %s/%s — keep it safe\nnext: 'pln up' to run the node, 'pln invite' to add another\n",
		v.Name, n.Cluster().Short(), g.Dir, n.Self(), g.Dir, daemon.RootKeyFile)
	return nil
}

// IDCmd prints the node's public key.
type IDCmd struct{}

func (c *IDCmd) Run(g *Globals) error {
	priv, err := daemon.NodeKey(g.Dir)
	if err != nil {
		return err
	}
	k := oplog.KeyOf(priv)
	if g.JSON {
		return emit(map[string]any{"node": k})
	}
	fmt.Println(k)
	return nil
}

// JoinCmd enrols this node with a token and starts it.
type JoinCmd struct {
	Token string `arg:"" help:"The token 'pln invite' printed."`
	Name  string `help:"This node's display name (default: host name), unless the invite sets one."`
	NoUp  bool   `name:"no-up" help:"Only enrol; do not start the node."`
	UpCmd `embed:""`
}

func (c *JoinCmd) Run(ctx context.Context, g *Globals) error {
	t, err := daemon.ParseToken(c.Token)
	if err != nil {
		return err
	}
	plan, err := daemon.PlanJoin(g.config(), t, c.Name)
	if err != nil {
		return err
	}
	// Present the join to the cluster first: only once a member has
	// admitted this node is anything written here.
	if len(t.Addrs) > 0 {
		w, err := netx.Join(ctx, netx.Config{Key: plan.Key(), Cluster: t.Cluster}, t.Addrs, plan.Ops)
		if err != nil {
			return err
		}
		plan.Welcome(w)
	} else {
		fmt.Fprintln(os.Stderr, "note: the token names no address (it was made on a node that never ran): enrolled offline; the cluster learns of this node through 'pln log export/import'")
	}
	n, err := plan.Enroll(t.Addrs)
	if err != nil {
		return err
	}
	n.Close()
	res := plan.Result
	if g.JSON {
		if err := emit(res); err != nil {
			return err
		}
	} else {
		fmt.Printf("joined cluster %q (%s) as %s, %s\n", res.Name, res.Cluster.Short(), res.Node, res.Tier)
	}
	if c.NoUp {
		return nil
	}
	return c.UpCmd.Run(ctx, g)
}

// VersionCmd prints the version.
type VersionCmd struct{}

func (c *VersionCmd) Run(g *Globals) error {
	if g.JSON {
		return emit(map[string]string{"version": version})
	}
	fmt.Println("pln", version)
	return nil
}
