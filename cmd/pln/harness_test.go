package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pln-mesh/pln/cmd/pln/daemon"
)

// The CLI tests drive the real binary, built once by TestMain, in temporary
// data directories: what a user types is what is tested, exit codes and
// stderr included.

// testVersion is stamped into the test binary so 'pln version' can be checked.
const testVersion = "v0.0.0-clitest"

// plnBin is the binary TestMain built.
var plnBin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "pln-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	plnBin = filepath.Join(tmp, "pln")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build",
		"-ldflags", "-X main.version="+testVersion, "-o", plnBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pln:", err)
		os.RemoveAll(tmp)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// cmdTimeout bounds every pln invocation but 'pln up'.
const cmdTimeout = 30 * time.Second

// result is one finished pln invocation.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("pln %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// baseEnv is the environment every pln runs with: no PLN_DIR from the
// caller, and a HOME of its own so the default ~/.pln is never touched.
func baseEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLN_DIR=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+t.TempDir())
}

// runPln runs the binary with extra environment variables and args.
func runPln(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, plnBin, args...)
	cmd.Env = append(baseEnv(t), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("pln %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("pln %s did not finish within %s", strings.Join(args, " "), cmdTimeout)
	}
	return r
}

// dir is a data directory the tests drive pln in.
type dir struct {
	t    *testing.T
	path string
}

// newDir returns a data directory that does not exist yet.
func newDir(t *testing.T, name string) *dir {
	return &dir{t: t, path: filepath.Join(t.TempDir(), name)}
}

// run runs pln --dir d args.
func (d *dir) run(args ...string) result {
	d.t.Helper()
	return runPln(d.t, nil, append([]string{"--dir", d.path}, args...)...)
}

// must runs pln and fails the test unless it succeeds; it returns stdout.
// A success may still note something on stderr.
func (d *dir) must(args ...string) string {
	d.t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		d.t.Fatalf("want success, got %v", r)
	}
	return r.stdout
}

// json runs pln --json and decodes its stdout into v.
func (d *dir) json(v any, args ...string) {
	d.t.Helper()
	out := d.must(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("pln %s --json printed what is not JSON (%v):\n%s", strings.Join(args, " "), err, out)
	}
}

// fail runs pln, expects the one-line failure the CLI promises (non-zero
// exit, exactly one stderr line starting "pln: ") containing every want, and
// checks that the data directory did not change.
func (d *dir) fail(args []string, want ...string) result {
	d.t.Helper()
	before := snapshot(d.t, d.path)
	r := d.run(args...)
	expectFailure(d.t, r, want...)
	if after := snapshot(d.t, d.path); !sameFiles(before, after) {
		d.t.Errorf("pln %s failed but changed %s:\nbefore %v\nafter  %v", strings.Join(args, " "), d.path, before, after)
	}
	return r
}

// expectFailure checks the shape of a failed invocation.
func expectFailure(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("want failure, got %v", r)
	}
	line := strings.TrimSuffix(r.stderr, "\n")
	if !strings.HasPrefix(line, "pln: ") || strings.Contains(line, "\n") {
		t.Errorf("want exactly one stderr line starting 'pln: ', got %v", r)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("stderr does not say %q: %v", w, r)
		}
	}
}

// snapshot hashes every file in a directory (sockets aside); a missing
// directory is the nil snapshot.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if e.IsDir() {
			files[rel+"/"] = "dir"
			return nil
		}
		if e.Type()&fs.ModeSocket != 0 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = fmt.Sprintf("%x", sha256.Sum256(b))[:16]
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameFiles(a, b map[string]string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// copyDir copies a stopped node's data directory (keys and store).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// status is 'pln status --json'.
func (d *dir) status() daemon.Status {
	d.t.Helper()
	var s daemon.Status
	d.json(&s, "status")
	return s
}

// id is 'pln id'.
func (d *dir) id() string {
	d.t.Helper()
	return strings.TrimSpace(d.must("id"))
}

// member finds a key in a status, or nil.
func member(s daemon.Status, key string) *daemon.MemberStatus {
	for i := range s.Members {
		if s.Members[i].Key.String() == key {
			return &s.Members[i]
		}
	}
	return nil
}

// poll calls cond every few milliseconds until it holds or the deadline
// passes.
func poll(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a background process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// upProc is a 'pln up' running in the background.
type upProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error // set when done is closed
}

// loopback is the mesh address every node under test listens on: any free
// port, so parallel tests never meet on the default one.
var loopback = []string{"--listen", "127.0.0.1:0"}

// up starts 'pln up' in d and waits until its socket answers.
func (d *dir) up() *upProc {
	d.t.Helper()
	p := d.start(append([]string{"up"}, loopback...)...)
	poll(d.t, "pln up answers on its socket", 10*time.Second, func() bool {
		select {
		case <-p.done:
			d.t.Fatalf("pln up exited early (%v):\n%s", p.err, p.stderr)
		default:
		}
		r := d.run("status", "--json")
		var s daemon.Status
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &s) == nil && s.Running
	})
	return p
}

// waitLive waits until the running node in d has reported its load, so
// that it counts as live.
func (d *dir) waitLive() {
	d.t.Helper()
	poll(d.t, "the node reports its load", 10*time.Second, func() bool {
		s := d.status()
		m := member(s, s.Node.String())
		return m != nil && m.Live
	})
}

// start runs pln --dir d args in the background. The test's cleanup kills it
// if it is still running.
func (d *dir) start(args ...string) *upProc {
	d.t.Helper()
	cmd := exec.Command(plnBin, append([]string{"--dir", d.path}, args...)...)
	cmd.Env = baseEnv(d.t)
	p := &upProc{t: d.t, cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	d.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *upProc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Fatalf("pln %s still running after 15s:\n%s", strings.Join(p.cmd.Args[1:], " "), p.stderr)
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	}
	p.t.Fatal(p.err)
	return -1
}

// signal sends sig to the process.
func (p *upProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// digest is a made-up artifact digest.
func digest(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
