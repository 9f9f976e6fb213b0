package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// SeedRequest publishes an artifact the cluster holds (or will hold) under a
// name. Zero limits take the defaults below.
type SeedRequest struct {
	Name        string            `json:"name"`
	File        string            `json:"file,omitempty"`   // an artifact to add to the content store (absolute path)
	Digest      string            `json:"digest,omitempty"` // or one the cluster already holds
	Kind        string            `json:"kind,omitempty"`
	SizeBytes   int64             `json:"size_bytes,omitempty"`
	MinReplicas int64             `json:"min_replicas,omitempty"`
	MaxReplicas int64             `json:"max_replicas,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Timeout     time.Duration     `json:"timeout,omitempty"`
	Concurrency int64             `json:"concurrency,omitempty"`
	Policy      map[string]string `json:"policy,omitempty"`
}

// Seed defaults.
const (
	DefaultMinReplicas = 2
	DefaultMemoryBytes = 64 << 20
	DefaultSeedTimeout = 30 * time.Second
	DefaultConcurrency = 16
)

// UnseedRequest withdraws a seed.
type UnseedRequest struct {
	Name string `json:"name"`
}

func init() {
	register("seed", seed)
	register("unseed", unseed)
}

// SeedResult is the seed op and what it published.
type SeedResult struct {
	OpResult
	Name   string       `json:"name"`
	Digest oplog.Digest `json:"digest"`
	Size   int64        `json:"size_bytes,omitempty"`
}

func seed(_ context.Context, n *Node, r SeedRequest) (*SeedResult, error) {
	var digest oplog.Digest
	var err error
	switch {
	case r.File != "":
		if digest, r.SizeBytes, err = n.addArtifact(r.File, r.Kind); err != nil {
			return nil, err
		}
		if r.Digest != "" && r.Digest != digest.String() {
			return nil, fmt.Errorf("%s has digest %s, not %s", r.File, digest, r.Digest)
		}
	case r.Digest != "":
		if digest, err = oplog.ParseDigest(r.Digest); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("seed what? give a .wasm file, or --digest of an artifact the cluster holds")
	}
	s := &reducers.Seed{
		Name: r.Name, Kind: r.Kind, Digest: digest, SizeBytes: r.SizeBytes,
		MinReplicas: r.MinReplicas, MaxReplicas: r.MaxReplicas, MemoryBytes: r.MemoryBytes,
		TimeoutMillis: r.Timeout.Milliseconds(), Concurrency: r.Concurrency, Policy: r.Policy,
	}
	if s.Kind == "" {
		s.Kind = reducers.SeedWASM
	}
	if s.MinReplicas == 0 {
		s.MinReplicas = DefaultMinReplicas
	}
	if s.MaxReplicas == 0 {
		s.MaxReplicas = s.MinReplicas
	}
	if s.MemoryBytes == 0 {
		s.MemoryBytes = DefaultMemoryBytes
	}
	if s.TimeoutMillis == 0 {
		s.TimeoutMillis = DefaultSeedTimeout.Milliseconds()
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if r.File != "" {
		n.reportLoadNow()
	}
	op, err := n.Author(s)
	if err != nil {
		return nil, err
	}
	return &SeedResult{OpResult: *result(op), Name: s.Name, Digest: s.Digest, Size: s.SizeBytes}, nil
}

// wasmMagic starts every WebAssembly module.
var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// addArtifact puts a file into the node's content store and returns its
// digest and size.
func (n *Node) addArtifact(path, kind string) (oplog.Digest, int64, error) {
	store, err := n.Content()
	if err != nil {
		return oplog.Digest{}, 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return oplog.Digest{}, 0, err
	}
	defer f.Close()
	if kind == "" || kind == reducers.SeedWASM {
		head := make([]byte, len(wasmMagic))
		if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, wasmMagic) {
			return oplog.Digest{}, 0, fmt.Errorf("%s is not a WebAssembly module (build it with GOOS=wasip1 GOARCH=wasm, see the README)", path)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return oplog.Digest{}, 0, err
		}
	}
	if fi, err := f.Stat(); err != nil {
		return oplog.Digest{}, 0, err
	} else if fi.Size() > maxArtifactBytes {
		return oplog.Digest{}, 0, fmt.Errorf("%s is %d MiB; artifacts are at most %d MiB", path, fi.Size()>>20, maxArtifactBytes>>20)
	}
	return store.Put(f)
}

func unseed(_ context.Context, n *Node, r UnseedRequest) (*OpResult, error) {
	if err := reducers.ValidName(r.Name); err != nil {
		return nil, err
	}
	if s := n.View().Seeds[r.Name]; s == nil || s.Tombstone {
		return nil, fmt.Errorf("no seed named %q is published (see 'pln status')", r.Name)
	}
	op, err := n.Author(&reducers.Seed{Name: r.Name, Tombstone: true})
	if err != nil {
		return nil, err
	}
	return result(op), nil
}
