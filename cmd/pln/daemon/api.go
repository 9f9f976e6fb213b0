package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The control API: each verb is a named method taking and returning JSON.
// The same handler runs inside 'pln up' (over the socket) and inside the CLI
// when no node runs (on the store directly).

type handler func(ctx context.Context, n *Node, req json.RawMessage) (any, error)

var handlers = map[string]handler{}

// register adds a method. Handlers are registered at init by the file that
// implements them.
func register[Req, Resp any](name string, f func(context.Context, *Node, Req) (Resp, error)) {
	handlers[name] = func(ctx context.Context, n *Node, raw json.RawMessage) (any, error) {
		var req Req
		if len(raw) > 0 {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.DisallowUnknownFields()
			if err := d.Decode(&req); err != nil {
				return nil, fmt.Errorf("bad %s request: %v", name, err)
			}
		}
		return f(ctx, n, req)
	}
}

// Conn reaches a node: over its socket if it runs, on its store if not.
type Conn interface {
	call(ctx context.Context, method string, req json.RawMessage) (json.RawMessage, error)
	// Running reports whether a node process answers on the socket.
	Running() bool
	Close() error
}

// Call invokes a control method.
func Call[Resp any](ctx context.Context, c Conn, method string, req any) (Resp, error) {
	var resp Resp
	raw, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	out, err := c.call(ctx, method, raw)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return resp, fmt.Errorf("bad answer from node: %v", err)
	}
	return resp, nil
}

// Connect returns a Conn to the node in dir.
func Connect(cfg Config) (Conn, error) {
	sock := filepath.Join(cfg.Dir, SocketFile)
	if c, err := dialSocket(sock); err == nil {
		return c, nil
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("control socket %s: %w", sock, err)
	}
	if _, err := os.Stat(cfg.Dir); err != nil {
		return nil, noCluster(cfg.Dir)
	}
	return &localConn{cfg: cfg}, nil
}

// localConn opens the node on first use and runs handlers in process.
type localConn struct {
	cfg  Config
	once sync.Once
	node *Node
	err  error
}

func (c *localConn) Running() bool { return false }

func (c *localConn) call(ctx context.Context, method string, req json.RawMessage) (json.RawMessage, error) {
	h, ok := handlers[method]
	if !ok {
		return nil, fmt.Errorf("unknown control method %q", method)
	}
	c.once.Do(func() { c.node, c.err = Open(c.cfg) })
	if c.err != nil {
		return nil, c.err
	}
	resp, err := h(ctx, c.node, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

func (c *localConn) Close() error {
	if c.node != nil {
		return c.node.Close()
	}
	return nil
}

// remoteConn talks HTTP over the Unix socket.
type remoteConn struct {
	http *http.Client
}

func dialSocket(path string) (*remoteConn, error) {
	nc, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	nc.Close()
	return &remoteConn{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}}, nil
}

func (c *remoteConn) Running() bool { return true }

func (c *remoteConn) call(ctx context.Context, method string, req json.RawMessage) (json.RawMessage, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://pln/v1/"+method, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("node did not answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxControlBytes))
	if err != nil {
		return nil, fmt.Errorf("node answer cut short: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("node answered %s", resp.Status)
	}
	return body, nil
}

func (c *remoteConn) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// maxControlBytes bounds a control request or answer.
const maxControlBytes = 64 << 20

// serveControl answers control calls for n.
func serveControl(n *Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, ok := strings.CutPrefix(r.URL.Path, "/v1/")
		h := handlers[method]
		if !ok || h == nil || r.Method != http.MethodPost {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown control method %q", r.URL.Path)})
			return
		}
		req, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBytes))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		resp, err := h(r.Context(), n, req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// WaitDown waits until no node answers on cfg.Dir's socket.
func WaitDown(ctx context.Context, cfg Config) error {
	sock := filepath.Join(cfg.Dir, SocketFile)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if c, err := dialSocket(sock); err != nil {
			return nil
		} else {
			c.Close()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("the node in %s is still running 10s after being told to stop", cfg.Dir)
		case <-t.C:
		}
	}
}
