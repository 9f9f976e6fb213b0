package daemon

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// A node in a process of its own: the test binary run again with
// childNodeEnv set runs one node until its standard input closes. The
// benchmarks of calls between nodes use it, so that each node has its own
// heap and collector, as on two machines, rather than one process paying
// for both nodes' garbage.

const childNodeEnv = "PLN_TEST_CHILD_NODE"

// childSpec is what the child is told: which data directory to run from and
// on which address.
type childSpec struct {
	Echo      bool // a bare QUIC echo server instead of a node
	Dir       string
	Listen    string
	WasmCache string
}

// runChildNode is the child's side: it runs the node, says "ready" on
// standard output, and stops when standard input is closed.
func runChildNode(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child node:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if s.Echo {
		return runChildEcho(ctx)
	}
	mc := testMeshConfig()
	mc.Listen = s.Listen
	cfg := Config{Dir: s.Dir, NoSync: true, Mesh: mc, WasmCache: s.WasmCache}
	if err := Run(ctx, cfg, func(*Node) { fmt.Println("ready") }); err != nil {
		fmt.Fprintln(os.Stderr, "child node:", err)
		return 1
	}
	return 0
}

// moveToChild stops d in this process and runs it again, from the same
// directory and address, in a child process, which ends with the test.
func moveToChild(t testing.TB, cl *DevCluster, d *DevNode) {
	t.Helper()
	if err := cl.Stop(d); err != nil {
		t.Fatal(err)
	}
	if line := startChild(t, childSpec{Dir: d.Dir, Listen: d.Addr, WasmCache: sharedWasmCache}); line != "ready" {
		t.Fatalf("the child node %s did not start (its errors are above)", d.Name)
	}
}

// startChild starts a child process, which ends with the test, and returns
// the first line it prints.
func startChild(t testing.TB, s childSpec) string {
	t.Helper()
	spec, _ := json.Marshal(s)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childNodeEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("the child process did not stop when told; killed it")
		}
	})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		first <- sc.Text()
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case line := <-first:
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("the child process said nothing within 30 s")
		return ""
	}
}

// runChildEcho serves bare QUIC on loopback, echoing every stream, and
// prints its address.
func runChildEcho(ctx context.Context) int {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	cert, err := certFor(key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child echo:", err)
		return 1
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, NextProtos: []string{"echo"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child echo:", err)
		return 1
	}
	defer ln.Close()
	fmt.Println(ln.Addr())
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return 0
		}
		go func() {
			for {
				s, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				go func() {
					io.Copy(s, s)
					s.Close()
				}()
			}
		}()
	}
}
