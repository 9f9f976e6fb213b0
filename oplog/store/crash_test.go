package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// crashChildEnv, when set to a directory, makes TestCrashKeepsAcknowledgedOps
// the child: it appends ops to a store there and prints each acknowledged ID.
const crashChildEnv = "PLN_STORE_CRASH_CHILD"

const (
	crashKillAfter = 150             // acknowledgements before the parent kills the child
	crashDeadline  = 2 * time.Minute // the whole test, child included
)

// kill -9 in the middle of a stream of Appends: every op the child was told
// is stored must be in the store when it is opened again.
func TestCrashKeepsAcknowledgedOps(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedOps$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(crashDeadline, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	var acked []oplog.ID
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		hex, ok := strings.CutPrefix(lines.Text(), "acked ")
		if !ok {
			continue
		}
		id, err := oplog.ParseID(hex)
		if err != nil {
			continue // a line cut by the kill is not an acknowledgement
		}
		if acked = append(acked, id); len(acked) == crashKillAfter {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	if len(acked) < crashKillAfter {
		t.Fatalf("child stopped after %d acknowledgements (%v); stderr:\n%s", len(acked), err, stderr.Bytes())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v; stderr:\n%s", err, stderr.Bytes())
	}

	s, err := Open(filepath.Join(dir, "node.db"), DefaultOptions())
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	for i, id := range acked {
		if ok, err := s.Has(id); err != nil || !ok {
			t.Fatalf("acknowledged op #%d %s lost after kill -9 (%v)", i+1, id.Short(), err)
		}
	}
	ids, seqs := arrivalIDs(t, s, 1)
	for i := range acked {
		if ids[i] != acked[i] || seqs[i] != uint64(i+1) {
			t.Fatalf("arrival #%d is %s seq %d, want %s seq %d", i+1, ids[i].Short(), seqs[i], acked[i].Short(), i+1)
		}
	}
	t.Logf("%d acknowledged before the kill landed, %d stored", len(acked), len(ids))
}

// crashChild appends one op per transaction, with real fsync, and reports each
// acknowledgement on stdout, until killed (or the deadline, if the parent died).
func crashChild(t *testing.T, dir string) {
	s, err := Open(filepath.Join(dir, "node.db"), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(crashDeadline)
	for i := 0; time.Now().Before(stop); i++ {
		op := nthOp(i)
		if _, err := s.Append(op); err != nil {
			t.Fatal(err)
		}
		// One write per line, so a kill cannot interleave two lines.
		fmt.Fprintf(os.Stdout, "acked %s\n", op.ID())
	}
	t.Fatal("child was never killed")
}
