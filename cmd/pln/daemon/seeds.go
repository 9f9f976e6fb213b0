package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// SeedRequest publishes an artifact the cluster holds (or will hold) under a
// name. Zero limits take the defaults below.
type SeedRequest struct {
	Name        string            `json:"name"`
	Digest      string            `json:"digest"`
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

func seed(_ context.Context, n *Node, r SeedRequest) (*OpResult, error) {
	digest, err := oplog.ParseDigest(r.Digest)
	if err != nil {
		return nil, err
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
	op, err := n.Author(s)
	if err != nil {
		return nil, err
	}
	return result(op), nil
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
