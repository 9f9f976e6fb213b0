package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// InviteCmd makes a token.
type InviteCmd struct {
	Subject string        `help:"Admit exactly this key ('pln id' on the joiner); without it, the token admits whoever redeems it first." placeholder:"KEY"`
	Tier    string        `help:"Tier the joiner gets: member, publisher or admin." default:"member" enum:"member,publisher,admin"`
	Props   []string      `name:"prop" help:"Property the joiner gets, key=value (repeatable)." placeholder:"K=V"`
	TTL     time.Duration `name:"ttl" help:"How long the token is valid." default:"1h"`
}

func (c *InviteCmd) Run(ctx context.Context, g *Globals) error {
	props, err := parseProps(c.Props)
	if err != nil {
		return err
	}
	res, err := call[daemon.InviteResult](ctx, g, "invite", daemon.InviteRequest{Subject: c.Subject, Tier: c.Tier, Props: props, TTL: c.TTL})
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	fmt.Println(res.Token)
	return nil
}

// GrantCmd admits a key.
type GrantCmd struct {
	Key   string        `arg:"" help:"The key to admit ('pln id' on that node)."`
	Tier  string        `help:"member, publisher or admin." default:"member"`
	Props []string      `name:"prop" help:"Property, key=value (repeatable)." placeholder:"K=V"`
	TTL   time.Duration `name:"ttl" help:"Expire the grant after this long (default: never)."`
}

func (c *GrantCmd) Run(ctx context.Context, g *Globals) error {
	props, err := parseProps(c.Props)
	if err != nil {
		return err
	}
	res, err := call[daemon.OpResult](ctx, g, "grant", daemon.GrantRequest{Subject: c.Key, Tier: c.Tier, Props: props, TTL: c.TTL})
	return printOp(g, res, err)
}

// DenyCmd revokes a key.
type DenyCmd struct {
	Key     string `arg:"" help:"The key to revoke."`
	Reason  string `help:"Why, for the audit trail."`
	Cascade bool   `help:"Also void everything the key granted or published (for a compromised key)."`
}

func (c *DenyCmd) Run(ctx context.Context, g *Globals) error {
	res, err := call[daemon.OpResult](ctx, g, "deny", daemon.DenyRequest{Subject: c.Key, Reason: c.Reason, Cascade: c.Cascade})
	if err == nil && !g.JSON && len(res.Fell) > 0 {
		defer fmt.Printf("%d ops stopped counting with it (see 'pln audit')\n", len(res.Fell))
	}
	return printOp(g, res, err)
}

// printOp reports an authored op.
func printOp(g *Globals, res daemon.OpResult, err error) error {
	if err != nil {
		return err
	}
	if g.JSON {
		return emit(res)
	}
	fmt.Printf("%s %s at %s\n", res.Kind, res.ID, res.HLC)
	return nil
}
