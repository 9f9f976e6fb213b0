package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/oplog/store"
)

// LogSource is a whole log read for an offline replay.
type LogSource struct {
	Cluster oplog.ClusterID
	Node    oplog.Key   // whose log it is; zero if unknown
	Ops     []*oplog.Op // in the order that node saw them
	Skipped []BadOp     // ops that did not decode (or verify)
}

// ReadLog reads a log from an export file or a node's data directory. Ops
// from a directory were verified when they arrived; ops from a file are
// verified only if verify is set (every signature, on all cores).
func ReadLog(path string, verify bool) (*LogSource, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if fi.IsDir() {
		return readDir(path)
	}
	return readFile(path, verify)
}

func readDir(dir string) (*LogSource, error) {
	path := filepath.Join(dir, StoreFile)
	if _, err := os.Stat(path); err != nil {
		return nil, noCluster(dir)
	}
	opts := store.DefaultOptions()
	opts.ReadOnly = true
	st, err := store.Open(path, opts)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("a node is running in %s; replay a copy: 'pln log export FILE', then 'pln replay FILE'", dir)
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	src := &LogSource{}
	if raw, ok, _ := st.Meta(metaCluster); ok {
		copy(src.Cluster[:], raw)
	}
	if raw, ok, _ := st.Meta(metaNode); ok {
		copy(src.Node[:], raw)
	}
	err = st.ForEachArrival(1, func(_ uint64, op *oplog.Op) error {
		src.Ops = append(src.Ops, op)
		return nil
	})
	return src, err
}

func readFile(path string, verify bool) (*LogSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	lr, err := store.NewLogReader(f)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", path, err)
	}
	h := lr.Header()
	src := &LogSource{Cluster: h.Cluster, Node: h.Node, Ops: make([]*oplog.Op, 0, min(h.Count, 1<<24))}
	for {
		pos, raw, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", path, err)
		}
		op, err := oplog.Decode(raw)
		if err != nil {
			src.Skipped = append(src.Skipped, BadOp{Pos: pos, Reason: err.Error()})
			continue
		}
		src.Ops = append(src.Ops, op)
	}
	if verify {
		src.verify()
	}
	return src, nil
}

// verify drops ops whose signatures fail, checking on every core.
func (src *LogSource) verify() {
	bad := verifyEach(src.Cluster, src.Ops)
	kept := src.Ops[:0]
	for i, op := range src.Ops {
		if bad[i] != nil {
			src.Skipped = append(src.Skipped, BadOp{Pos: i + 1, Reason: bad[i].Error()})
			continue
		}
		kept = append(kept, op)
	}
	src.Ops = kept
}
