package daemon

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
	"github.com/pln-mesh/pln/reducers"
)

// encodeWire frames a hand-made token body with a correct checksum, so that
// only the checks after the framing can catch what is wrong inside.
func encodeWire(t testing.TB, w tokenWire) string {
	t.Helper()
	b, err := oplog.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return frameToken(b)
}

func frameToken(body []byte) string {
	sum := sha256.Sum256(body)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(append(bytes.Clone(body), sum[:tokenSumLen]...))
}

// wireOf is a token's wire form, for tests that alter one field.
func wireOf(tok *Token) tokenWire {
	w := tokenWire{V: 1, Cluster: tok.Cluster[:], Name: tok.Name, Addrs: tok.Addrs}
	for _, op := range append([]*oplog.Op{tok.Genesis}, tok.Chain...) {
		w.Ops = append(w.Ops, op.Bytes())
	}
	if tok.InviteKey != nil {
		w.Invite = tok.InviteKey.Seed()
	}
	return w
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, cluster oplog.ClusterID, key ed25519.PrivateKey, at oplog.HLC, b reducers.Body) *oplog.Op {
	t.Helper()
	op, err := signBody(cluster, key, at, b)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func opIDs(ops []*oplog.Op) []oplog.ID {
	var ids []oplog.ID
	for _, op := range ops {
		ids = append(ids, op.ID())
	}
	return ids
}

// sameToken reports how two tokens differ, or "".
func sameToken(a, b *Token) string {
	switch {
	case a.Cluster != b.Cluster:
		return "cluster"
	case a.Name != b.Name:
		return "name"
	case a.Genesis.ID() != b.Genesis.ID():
		return "genesis"
	case !slices.Equal(opIDs(a.Chain), opIDs(b.Chain)):
		return "chain"
	case !bytes.Equal(a.InviteKey, b.InviteKey):
		return "invite key"
	case !slices.Equal(a.Addrs, b.Addrs):
		return "addresses"
	}
	return ""
}

func TestTokenRoundTrip(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	sub := newKey(t)
	// b is an admin admitted through an invite: its tokens carry a longer
	// chain (root → a → invite key → b → the new invite).
	b := joinNode(t, clk, a, "b", reducers.TierAdmin)

	for _, tc := range []struct {
		name   string
		issuer *Node
		req    InviteRequest
		chain  int
	}{
		{"invite", a, InviteRequest{Tier: "publisher", Props: map[string]string{"zone": "eu"}, TTL: time.Hour}, 2},
		{"subject", a, InviteRequest{Subject: oplog.KeyOf(sub).String(), Tier: "admin"}, 2},
		{"invite from a joined admin", b, InviteRequest{Tier: "member"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, s := inviteToken(t, tc.issuer, tc.req)
			if strings.ContainsAny(s, " \n\t") || !strings.HasPrefix(s, tokenPrefix) {
				t.Errorf("token is not one word starting %q: %q", tokenPrefix, s)
			}
			if tok.Cluster != a.Cluster() || tok.Name != "test" || tok.Genesis.Kind != oplog.KindGenesis || len(tok.Chain) != tc.chain {
				t.Errorf("parsed token: cluster %s name %q genesis %s, chain of %d (want %d)", tok.Cluster.Short(), tok.Name, tok.Genesis.Kind, len(tok.Chain), tc.chain)
			}
			g := tok.Grant()
			if tc.req.Subject != "" {
				if tok.InviteKey != nil || g.Subject.String() != tc.req.Subject || g.Tier != reducers.TierAdmin {
					t.Errorf("subject token: grant %+v, invite key %v", g, tok.InviteKey != nil)
				}
			} else if tok.InviteKey == nil || g.Subject != oplog.KeyOf(tok.InviteKey) || g.Tier != reducers.TierInvite || g.Confers.String() != tc.req.Tier {
				t.Errorf("invite token: grant %+v, invite key %v", g, tok.InviteKey != nil)
			}
			if enc := tok.Encode(); enc != s {
				t.Errorf("Encode does not give back the token:\n got %s\nwant %s", enc, s)
			}
			again, err := ParseToken("  " + s + "\n")
			if err != nil || sameToken(tok, again) != "" {
				t.Errorf("a token with blanks around it: %v", err)
			}
		})
	}
}

// badTokens are tokens each check must refuse, built from a real cluster.
// The corpus test writes them out as fuzz seeds.
func badTokens(t testing.TB) (good map[string]string, bad map[string]struct{ token, want string }) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	m := joinNode(t, clk, a, "m", reducers.TierMember)
	other := initNode(t, clk, "other")

	inv, invS := inviteToken(t, a, InviteRequest{Tier: "publisher", Props: map[string]string{"zone": "eu"}})
	subj, subjS := inviteToken(t, a, InviteRequest{Subject: m.Self().String(), Tier: "publisher"})
	_, deepS := inviteToken(t, joinNode(t, clk, a, "b", reducers.TierAdmin), InviteRequest{Tier: "member"})
	good = map[string]string{"invite": invS, "subject": subjS, "deep-chain": deepS}

	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(invS, tokenPrefix))
	at := oplog.HLCAt(clk.Now().Add(time.Minute))
	with := func(f func(w *tokenWire)) string {
		w := wireOf(inv)
		f(&w)
		return encodeWire(t, w)
	}
	mChain := func(last *oplog.Op) [][]byte {
		// m's own standing: its redemption and the invite behind it.
		var ops [][]byte
		ops = append(ops, inv.Genesis.Bytes())
		for _, op := range logOf(t, m)[1:] {
			ops = append(ops, op.Bytes())
		}
		return append(ops, last.Bytes())
	}
	root := newKey(t)
	rogue := oplog.ClusterOf(oplog.KeyOf(root))
	rogueGenesis := sign(t, rogue, root, at, &reducers.Genesis{Name: "rogue", Root: oplog.KeyOf(root), Params: reducers.DefaultParams()})
	undecodable, err := oplog.Sign(rogue, root, oplog.KindGrant, at+1, []byte{0xa1, 0x02, 0x09}) // {2: 9}: no subject, tier 9
	if err != nil {
		t.Fatal(err)
	}
	stranger := newKey(t)

	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0x10
	bad = map[string]struct{ token, want string }{
		"empty":         {"", "does not start with"},
		"no-prefix":     {strings.TrimPrefix(invS, tokenPrefix), "does not start with"},
		"other-prefix":  {"pln2" + strings.TrimPrefix(invS, tokenPrefix), "does not start with"},
		"not-base64":    {tokenPrefix + "!!not*base64!!", "not base64url"},
		"too-short":     {tokenPrefix + "AAAA", "damaged"},
		"bad-checksum":  {tokenPrefix + base64.RawURLEncoding.EncodeToString(flipped), "checksum mismatch"},
		"cut":           {invS[:len(invS)-8], "damaged"},
		"too-long":      {tokenPrefix + strings.Repeat("A", MaxTokenBytes), "more than any invite"},
		"not-cbor":      {frameToken([]byte{0xff, 0x00}), "malformed"},
		"unknown-field": {frameToken([]byte{0xa1, 0x09, 0x01}), "malformed"},
		"version-2":     {with(func(w *tokenWire) { w.V = 2 }), "version 2"},
		"no-grants":     {with(func(w *tokenWire) { w.Ops = w.Ops[:1] }), "grants missing"},
		"short-cluster": {with(func(w *tokenWire) { w.Cluster = w.Cluster[:8] }), "cluster or grants missing"},
		"bad-op":        {with(func(w *tokenWire) { w.Ops[1] = []byte{0x80} }), "op 2"},
		"altered-op":    {with(func(w *tokenWire) { w.Ops[2] = bytes.Clone(w.Ops[2]); w.Ops[2][len(w.Ops[2])-1] ^= 1 }), "tampered"},
		// A token claiming another cluster: every op's signature is bound
		// to the cluster it was made for.
		"other-cluster": {with(func(w *tokenWire) { c := other.Cluster(); w.Cluster = c[:] }), "another cluster"},
		"other-genesis": {with(func(w *tokenWire) { w.Ops[0] = logOf(t, other)[0].Bytes() }), "another cluster"},
		// A genesis signed for this cluster by a key that is not its root.
		"forged-genesis": {with(func(w *tokenWire) {
			w.Ops[0] = sign(t, inv.Cluster, stranger, inv.Genesis.HLC, &reducers.Genesis{Name: "test", Root: oplog.KeyOf(stranger)}).Bytes()
		}), "genesis is not its cluster's"},
		"genesis-last": {with(func(w *tokenWire) { w.Ops = [][]byte{w.Ops[0], w.Ops[0]} }), "carries no grant"},
		// A grant signed by a member, who may not grant: only the fold
		// catches it.
		"member-grant": {with(func(w *tokenWire) {
			w.Ops = mChain(sign(t, inv.Cluster, m.key, at, &reducers.Grant{Subject: oplog.KeyOf(stranger), Tier: reducers.TierAdmin}))
			w.Invite = nil
		}), "would not count"},
		// A grant by a key the cluster never admitted.
		"stranger-grant": {with(func(w *tokenWire) {
			w.Ops = [][]byte{w.Ops[0], sign(t, inv.Cluster, stranger, at, &reducers.Grant{Subject: oplog.KeyOf(newKey(t)), Tier: reducers.TierAdmin}).Bytes()}
			w.Invite = nil
		}), "would not count"},
		"wrong-invite-key":   {with(func(w *tokenWire) { w.Invite = stranger.Seed() }), "does not match its invite"},
		"short-invite-key":   {with(func(w *tokenWire) { w.Invite = w.Invite[:16] }), "invite key is 16 bytes"},
		"invite-without-key": {with(func(w *tokenWire) { w.Invite = nil }), "without its key"},
		"subject-with-key": {encodeWire(t, func() tokenWire {
			w := wireOf(subj)
			w.Invite = stranger.Seed()
			return w
		}()), "does not match its invite"},
		// A whole cluster made up by whoever wrote the token, whose one
		// grant does not decode: refused, never a panic.
		"undecodable-grant": {encodeWire(t, tokenWire{V: 1, Cluster: rogue[:], Name: "rogue", Ops: [][]byte{rogueGenesis.Bytes(), undecodable.Bytes()}}), "grant does not decode"},
	}
	return good, bad
}

func TestParseTokenRefuses(t *testing.T) {
	_, bad := badTokens(t)
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			tok, err := ParseToken(tc.token)
			if err == nil {
				t.Fatalf("parsed: %+v", tok)
			}
			if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q; want one line about the invite token saying %q", err, tc.want)
			}
		})
	}
}

func TestTokenFresh(t *testing.T) {
	clk := newFakeClock()
	a := initNode(t, clk, "a")
	tok, _ := inviteToken(t, a, InviteRequest{TTL: 10 * time.Minute})
	expires := clk.Now().Add(10 * time.Minute)
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{clk.Now(), true},
		{expires, true},
		{expires.Add(time.Millisecond), false},
		{expires.Add(24 * time.Hour), false},
	} {
		err := tok.Fresh(tc.at)
		if (err == nil) != tc.ok || err != nil && (!errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "expired")) {
			t.Errorf("Fresh at expiry%+v: %v", tc.at.Sub(expires), err)
		}
	}

	// Enroll refuses an expired token and leaves no trace.
	clk.Add(11 * time.Minute)
	cfg := testConfig(t, clk, "late")
	if _, _, err := Enroll(cfg, tok, "late"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Enroll with an expired token: %v", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("a refused join made %s", cfg.Dir)
	}
}

// The fuzz corpus holds one token per file. Names starting "valid-" must
// parse; every other one must be refused. -update rewrites the corpus from
// badTokens (tokens embed fresh keys, so each rewrite differs).
func TestTokenCorpus(t *testing.T) {
	if *update {
		good, bad := badTokens(t)
		os.RemoveAll(tokenCorpus)
		if err := os.MkdirAll(tokenCorpus, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range good {
			writeSeed(t, "valid-"+name, s)
		}
		for name, tc := range bad {
			if len(tc.token) < 4096 { // the corpus stays small; too-long is built in the fuzz test
				writeSeed(t, name, tc.token)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(tokenCorpus, "*.txt"))
	if err != nil || len(files) < 10 {
		t.Fatalf("token corpus %s has %d files (%v); regenerate it with -update", tokenCorpus, len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseToken(string(b))
		if valid := strings.HasPrefix(filepath.Base(f), "valid-"); valid != (err == nil) {
			t.Errorf("%s: ParseToken says %v", f, err)
		}
	}
}

func writeSeed(t *testing.T, name, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tokenCorpus, name+".txt"), []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseToken(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(tokenCorpus, "*.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(tokenPrefix + strings.Repeat("A", MaxTokenBytes))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrToken) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not a one-line token error: %q", err)
			}
			return
		}
		enc := tok.Encode()
		again, err := ParseToken(enc)
		if err != nil {
			t.Fatalf("a parsed token does not re-parse after Encode: %v", err)
		}
		if diff := sameToken(tok, again); diff != "" {
			t.Fatalf("Encode and ParseToken change the token's %s", diff)
		}
		if again.Encode() != enc {
			t.Fatal("Encode is not stable")
		}
		tok.Fresh(testEpoch) // must not panic on any token that parses
	})
}
