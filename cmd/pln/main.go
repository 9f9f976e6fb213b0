// Command pln turns machines into one self-organising pool of compute.
// 'pln up' runs a node; every other verb talks to it (see 'pln --help').
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Globals are the flags every verb takes.
type Globals struct {
	Dir  string `help:"Data directory of the node." env:"PLN_DIR" default:"~/.pln" type:"path" placeholder:"DIR"`
	JSON bool   `help:"Print JSON instead of a table." name:"json"`
}

// CLI is the whole command line, one field per verb.
type CLI struct {
	Globals

	Up      UpCmd      `cmd:"" help:"Run the node in the foreground (creates a cluster if the directory has none)."`
	Down    DownCmd    `cmd:"" help:"Stop the running node."`
	Init    InitCmd    `cmd:"" help:"Create a new cluster with this node as its first admin."`
	Join    JoinCmd    `cmd:"" help:"Join a cluster with a token from 'pln invite'."`
	ID      IDCmd      `cmd:"" name:"id" help:"Print this node's public key (creating it if needed)."`
	Status  StatusCmd  `cmd:"" help:"Show members, seeds and claims."`
	Invite  InviteCmd  `cmd:"" help:"Make a one-line token that admits a new node."`
	Grant   GrantCmd   `cmd:"" help:"Admit a key, or change its tier or properties."`
	Deny    DenyCmd    `cmd:"" help:"Revoke a key everywhere."`
	Seed    SeedCmd    `cmd:"" help:"Publish an artifact under a name."`
	Unseed  UnseedCmd  `cmd:"" help:"Withdraw a seed."`
	Call    CallCmd    `cmd:"" help:"Call a function of a seed, wherever it runs; output goes to stdout."`
	Bench   BenchCmd   `cmd:"" help:"Measure the cluster: calls per second and latency."`
	Log     LogCmd     `cmd:"" help:"Show, export or import the op log."`
	Audit   AuditCmd   `cmd:"" help:"Show every admission, grant, deny and refused op."`
	Replay  ReplayCmd  `cmd:"" help:"Fold a log offline; show its view and placements, or check its decisions."`
	Dev     DevCmd     `cmd:"" help:"Run a throwaway cluster of several nodes on this machine, to try pln."`
	Version VersionCmd `cmd:"" help:"Print the version."`
}

func main() {
	var cli CLI
	k := kong.Parse(&cli,
		kong.Name("pln"),
		kong.Description("pln turns machines into one self-organising pool of compute."),
		kong.Bind(&cli.Globals),
	)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	k.BindTo(ctx, (*context.Context)(nil))
	err := k.Run()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pln: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

// oneLine keeps an error to the one line the CLI promises.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// connect reaches the node in the data directory.
func (g *Globals) connect() (daemon.Conn, error) {
	return daemon.Connect(g.config())
}

func (g *Globals) config() daemon.Config { return daemon.Config{Dir: g.Dir} }

// call runs one control method against the node.
func call[Resp any](ctx context.Context, g *Globals, method string, req any) (Resp, error) {
	var zero Resp
	c, err := g.connect()
	if err != nil {
		return zero, err
	}
	defer c.Close()
	return daemon.Call[Resp](ctx, c, method, req)
}
