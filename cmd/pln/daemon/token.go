package daemon

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// An invite token is everything a joiner needs, on one line:
//
//	"pln1" + base64url( CBOR(tokenWire) ‖ first 4 bytes of its SHA-256 )
//
// It carries the genesis (which names the root, hence the cluster), the
// grants that chain the inviter to the root, the invite grant itself, and —
// for an invite without a subject — the invite key's private half, with which
// the joiner signs one grant for its own node key. Nothing in it is a shared
// secret the cluster must remember: every claim in it is a signed op.
const (
	tokenPrefix = "pln1"
	// MaxTokenBytes bounds a token as typed or pasted.
	MaxTokenBytes = 32 << 10
	tokenSumLen   = 4
)

// Token is a decoded invite.
type Token struct {
	Cluster   oplog.ClusterID
	Name      string             // the cluster's name
	Genesis   *oplog.Op          // the cluster's genesis
	Chain     []*oplog.Op        // grants from the root down; the last is the invite
	InviteKey ed25519.PrivateKey // nil for an invite with a subject
	Addrs     []string           // where to reach the cluster
}

type tokenWire struct {
	V       uint     `cbor:"1,keyasint"`
	Cluster []byte   `cbor:"2,keyasint"`
	Name    string   `cbor:"3,keyasint"`
	Ops     [][]byte `cbor:"4,keyasint"`
	Invite  []byte   `cbor:"5,keyasint,omitempty"`
	Addrs   []string `cbor:"6,keyasint,omitempty"`
}

// Grant returns the invite grant: what the token admits, and until when.
func (t *Token) Grant() *reducers.Grant {
	b, _ := reducers.DecodeBody(t.Chain[len(t.Chain)-1])
	return b.(*reducers.Grant)
}

// Encode renders the token as one line.
func (t *Token) Encode() string {
	w := tokenWire{V: 1, Cluster: t.Cluster[:], Name: t.Name, Addrs: t.Addrs}
	w.Ops = append(w.Ops, t.Genesis.Bytes())
	for _, op := range t.Chain {
		w.Ops = append(w.Ops, op.Bytes())
	}
	if t.InviteKey != nil {
		w.Invite = t.InviteKey.Seed()
	}
	b, err := oplog.Marshal(w)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(append(b, sum[:tokenSumLen]...))
}

func tokenErr(format string, args ...any) error {
	return failf(ErrToken, "invite token "+format, args...)
}

// ParseToken decodes a token and checks everything that does not depend on
// time or on the joiner: its framing, every signature, that the genesis is
// the cluster's, and that the chain of grants really admits what the token
// says. It does not check expiry (see Fresh).
func ParseToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxTokenBytes {
		return nil, tokenErr("is %d bytes, more than any invite; check what was pasted", len(s))
	}
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return nil, tokenErr("does not start with %q; paste the whole line 'pln invite' printed", tokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) <= tokenSumLen {
		return nil, tokenErr("is damaged (not base64url); copy it again in full")
	}
	body, sum := raw[:len(raw)-tokenSumLen], raw[len(raw)-tokenSumLen:]
	if want := sha256.Sum256(body); string(want[:tokenSumLen]) != string(sum) {
		return nil, tokenErr("is damaged (checksum mismatch); copy it again in full")
	}
	var w tokenWire
	if err := oplog.Unmarshal(body, &w); err != nil {
		return nil, tokenErr("is malformed (%v); ask for a new one with 'pln invite'", err)
	}
	if w.V != 1 {
		return nil, tokenErr("is version %d; this pln reads version 1 (upgrade pln)", w.V)
	}
	if len(w.Cluster) != len(oplog.ClusterID{}) || len(w.Ops) < 2 || len(w.Ops) > 64 {
		return nil, tokenErr("is malformed (cluster or grants missing); ask for a new one with 'pln invite'")
	}
	t := &Token{Name: w.Name, Addrs: w.Addrs}
	copy(t.Cluster[:], w.Cluster)
	ops := make([]*oplog.Op, len(w.Ops))
	for i, b := range w.Ops {
		op, err := oplog.Decode(b)
		if err == nil {
			err = op.Verify(t.Cluster)
		}
		if err != nil {
			return nil, tokenErr("has been tampered with or is for another cluster: op %d: %v", i+1, err)
		}
		ops[i] = op
	}
	t.Genesis, t.Chain = ops[0], ops[1:]
	if t.Genesis.Kind != oplog.KindGenesis || oplog.ClusterOf(t.Genesis.Author) != t.Cluster {
		return nil, tokenErr("has been tampered with: its genesis is not its cluster's")
	}
	last := t.Chain[len(t.Chain)-1]
	if last.Kind != oplog.KindGrant {
		return nil, tokenErr("is malformed: it carries no grant")
	}
	// Its signature proves only who wrote it: decode it before Grant does.
	if _, err := reducers.DecodeBody(last); err != nil {
		return nil, tokenErr("is malformed: its grant does not decode (%v); ask for a new one with 'pln invite'", err)
	}
	v := reducers.Fold(t.Cluster, ops, last.HLC)
	g := t.Grant()
	if m := v.Member(g.Subject); m == nil || m.Grant != last.ID() {
		return nil, tokenErr("carries a grant the cluster would not count (its issuer was not entitled to it); ask an admin for a new one")
	}
	if w.Invite != nil {
		if len(w.Invite) != ed25519.SeedSize {
			return nil, tokenErr("is malformed: invite key is %d bytes", len(w.Invite))
		}
		t.InviteKey = ed25519.NewKeyFromSeed(w.Invite)
		if oplog.KeyOf(t.InviteKey) != g.Subject || g.Tier != reducers.TierInvite {
			return nil, tokenErr("has been tampered with: its key does not match its invite")
		}
	} else if g.Tier == reducers.TierInvite {
		return nil, tokenErr("is malformed: an invite without its key")
	}
	return t, nil
}

// Fresh fails if the invite has expired at now.
func (t *Token) Fresh(now time.Time) error {
	g := t.Grant()
	if g.Expires != 0 && oplog.HLCAt(now) > g.Expires {
		return tokenErr("expired at %s (%s ago); ask for a new one with 'pln invite'",
			g.Expires.Time().Format(time.RFC3339), now.Sub(g.Expires.Time()).Round(time.Second))
	}
	return nil
}
