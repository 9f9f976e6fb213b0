package netx

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
)

// Defaults and limits of ReconcileConfig.
const (
	// DefaultFirstFanout is how many parts the first split of a whole set
	// makes: 64 fingerprints, about 700 bytes, sent once.
	DefaultFirstFanout = 64
	// DefaultMaxFanout caps the parts of any later split (and is the fanout
	// once TargetRoundTrips has passed).
	DefaultMaxFanout = 16
	// DefaultListThreshold is the most items a range may hold to be sent as a
	// list rather than split: about 35 bytes an item against ten a part.
	DefaultListThreshold = 8
	// DefaultTargetRoundTrips is how many round trips the splitting aims to
	// finish in.
	DefaultTargetRoundTrips = 4
	// DefaultMaxMessageBytes bounds one message, in bytes (64 KiB). Keep it
	// within the frame layer's limit.
	DefaultMaxMessageBytes = 64 << 10
	// MinMessageBytes is the smallest MaxMessageBytes allowed (1 KiB): room
	// for a first split's worth of fingerprints and the summary of the rest.
	MinMessageBytes = 1 << 10
	// maxFanoutLimit bounds both fanouts, so a split always fits a message.
	maxFanoutLimit = 64
)

// ReconcileConfig tunes a Reconciler. Zero fields take their defaults; both
// sides of an exchange may differ in everything but MaxMessageBytes, which
// each must accept from the other.
type ReconcileConfig struct {
	// FirstFanout is how many parts the first split of the whole set makes.
	// Default DefaultFirstFanout (64), at most 64.
	FirstFanout int
	// MaxFanout caps later splits. Default DefaultMaxFanout (16), 2 to 64.
	MaxFanout int
	// ListThreshold is the most items a range holds to be listed instead of
	// split. Default DefaultListThreshold (8), at least 2.
	ListThreshold int
	// TargetRoundTrips is how many round trips splitting aims to finish in.
	// Default DefaultTargetRoundTrips (4).
	TargetRoundTrips int
	// MaxMessageBytes bounds every message sent and received, in bytes.
	// Default DefaultMaxMessageBytes (64 KiB), at least MinMessageBytes.
	MaxMessageBytes int
	// Rand is where Initiate reads the exchange's nonce. Default
	// crypto/rand.Reader; tests pass a seeded source.
	Rand io.Reader
}

// DefaultReconcileConfig returns the settings a node runs with.
func DefaultReconcileConfig() ReconcileConfig {
	return ReconcileConfig{
		FirstFanout:      DefaultFirstFanout,
		MaxFanout:        DefaultMaxFanout,
		ListThreshold:    DefaultListThreshold,
		TargetRoundTrips: DefaultTargetRoundTrips,
		MaxMessageBytes:  DefaultMaxMessageBytes,
		Rand:             rand.Reader,
	}
}

func (c ReconcileConfig) withDefaults() (ReconcileConfig, error) {
	d := DefaultReconcileConfig()
	c.FirstFanout = cmp.Or(c.FirstFanout, d.FirstFanout)
	c.MaxFanout = cmp.Or(c.MaxFanout, d.MaxFanout)
	c.ListThreshold = cmp.Or(c.ListThreshold, d.ListThreshold)
	c.TargetRoundTrips = cmp.Or(c.TargetRoundTrips, d.TargetRoundTrips)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, d.MaxMessageBytes)
	if c.Rand == nil {
		c.Rand = d.Rand
	}
	switch {
	case c.FirstFanout < 2 || c.FirstFanout > maxFanoutLimit:
		return c, fmt.Errorf("reconcile config: FirstFanout %d is outside [2, %d]", c.FirstFanout, maxFanoutLimit)
	case c.MaxFanout < 2 || c.MaxFanout > maxFanoutLimit:
		return c, fmt.Errorf("reconcile config: MaxFanout %d is outside [2, %d]", c.MaxFanout, maxFanoutLimit)
	case c.ListThreshold < 2:
		return c, fmt.Errorf("reconcile config: ListThreshold %d is below 2", c.ListThreshold)
	case c.TargetRoundTrips < 1:
		return c, fmt.Errorf("reconcile config: TargetRoundTrips %d is below 1", c.TargetRoundTrips)
	case c.MaxMessageBytes < MinMessageBytes:
		return c, fmt.Errorf("reconcile config: MaxMessageBytes %d is below %d", c.MaxMessageBytes, MinMessageBytes)
	case c.ListThreshold*maxItemBytes+maxBoundBytes+2*binary.MaxVarintLen64 > c.MaxMessageBytes/2:
		return c, fmt.Errorf("reconcile config: a list of %d items does not fit in half of %d bytes", c.ListThreshold, c.MaxMessageBytes)
	}
	return c, nil
}
