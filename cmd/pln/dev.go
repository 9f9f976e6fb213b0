package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// DevCmd runs a throwaway cluster on this machine.
type DevCmd struct {
	Nodes int    `help:"How many nodes." default:"3"`
	Base  string `help:"Where the nodes' data directories go (default: a new temporary directory, removed on exit)." type:"path" placeholder:"DIR"`
	Keep  bool   `help:"Keep the data directories on exit."`
}

func (c *DevCmd) Run(ctx context.Context, g *Globals) error {
	if c.Nodes < 1 || c.Nodes > 64 {
		return fmt.Errorf("--nodes %d: pick between 1 and 64", c.Nodes)
	}
	base := c.Base
	if base == "" {
		tmp, err := os.MkdirTemp("", "pln-dev-")
		if err != nil {
			return err
		}
		base = tmp
		if !c.Keep {
			defer os.RemoveAll(base)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl, err := daemon.StartDev(ctx, c.Nodes, daemon.DevOptions{Dir: base, Logger: log})
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Printf("%d nodes up in %s; each is a full node with its own data directory:\n\n", c.Nodes, base)
	for _, d := range cl.Nodes() {
		fmt.Printf("  %-4s %-21s pln --dir %s status\n", d.Name, d.Addr, filepath.Join(base, d.Name))
	}
	fmt.Printf("\nTry 'pln --dir %s invite', 'pln --dir %s log'. Ctrl-C stops them all.\n", filepath.Join(base, "n0"), filepath.Join(base, "n1"))
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}
