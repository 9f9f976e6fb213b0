package netx

import (
	"crypto/ed25519"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// DefaultPort is the UDP port a node listens on unless told otherwise.
const DefaultPort = 60611

// Config is everything a Mesh needs besides its Host. Start from
// DefaultConfig; every duration has its unit in its name or type.
type Config struct {
	Key     ed25519.PrivateKey // the node key; its certificate is made from it
	Cluster oplog.ClusterID

	// Listen is the UDP address to listen on; default ":60611".
	Listen string
	// Advertise are the addresses other nodes should dial, reported in load
	// ops; default: the listen address if it names a host, else none (peers
	// learn the address they see).
	Advertise []string
	// Wrap, if set, wraps the UDP socket (tests put a Filter here).
	Wrap func(net.PacketConn) net.PacketConn

	// SyncInterval is how often the dialling side of each link runs
	// anti-entropy; default 5 s. It also runs on every new connection.
	SyncInterval time.Duration
	// DialInterval is how often the node looks for peers it should be
	// connected to but is not; default 500 ms.
	DialInterval time.Duration
	// BackoffMin and BackoffMax bound the wait between failed dials of one
	// address, doubling in between; default 250 ms and 30 s.
	BackoffMin, BackoffMax time.Duration
	// DialTimeout bounds one handshake; default 3 s.
	DialTimeout time.Duration
	// IdleTimeout closes a link that has heard nothing for this long;
	// default 10 s. Keep-alives go every third of it.
	IdleTimeout time.Duration
	// FullMesh is the cluster size up to which every node connects to every
	// other; default 16. Larger clusters keep a bounded set (Neighbours).
	FullMesh int
	// MaxPushBatch is how many ops go in one push frame; default 256.
	MaxPushBatch int

	// OnSync, if set, is told of every finished anti-entropy session
	// (tests and benchmarks count rounds and bytes with it).
	OnSync func(peer oplog.Key, st SyncStats)

	Logger *slog.Logger // default: discard
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Listen:       net.JoinHostPort("", strconv.Itoa(DefaultPort)),
		SyncInterval: 5 * time.Second,
		DialInterval: 500 * time.Millisecond,
		BackoffMin:   250 * time.Millisecond,
		BackoffMax:   30 * time.Second,
		DialTimeout:  3 * time.Second,
		IdleTimeout:  10 * time.Second,
		FullMesh:     16,
		MaxPushBatch: 256,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.DialInterval <= 0 {
		c.DialInterval = d.DialInterval
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.FullMesh <= 0 {
		c.FullMesh = d.FullMesh
	}
	if c.MaxPushBatch <= 0 {
		c.MaxPushBatch = d.MaxPushBatch
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
