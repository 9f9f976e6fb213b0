package reducers

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// The op bodies on their own: what validates, what does not and with what
// message, and how they travel as CBOR.

func manyProps(n int) map[string]string {
	p := map[string]string{}
	for i := range n {
		p[fmt.Sprintf("k%d", i)] = "v"
	}
	return p
}

// validBodies has one good body of each kind, with every field set that can
// be, so that the round trip covers them all.
func validBodies() []Body {
	return []Body{
		&Genesis{Name: "demo", Root: pub("root"), Params: DefaultParams()},
		&Grant{Subject: pub("n1"), Tier: TierAdmin, Props: map[string]string{"zone": "eu", "gpu": "yes"}, Expires: at(60_000)},
		&Grant{Subject: pub("inv"), Tier: TierInvite, Confers: TierMember, Props: map[string]string{"zone": "eu"}, Expires: at(60_000)},
		&Deny{Subject: pub("n1"), Reason: "compromised", Keep: []oplog.ID{{1}, {2}}},
		&Seed{Name: "hello", Kind: SeedWASM, Digest: digestOf("hello"), SizeBytes: 1 << 20, MinReplicas: 1, MaxReplicas: 3, MemoryBytes: 64 << 20, TimeoutMillis: 5000, Concurrency: 8, Policy: map[string]string{"zone": "eu"}},
		&Seed{Name: "hello", Tombstone: true},
		&Serve{Node: pub("n1"), Name: "db", Port: 5432, Proto: "tcp", Policy: map[string]string{"zone": "eu"}},
		&Serve{Node: pub("n1"), Name: "db", Tombstone: true},
		&Claim{Node: pub("n1"), Seed: "hello", Digest: digestOf("hello"), State: ClaimReady, Seq: 42, View: digestOf("view")},
		&Load{
			Node: pub("n1"), CPUMilli: 4000, CPUUsedMilli: 1000, MemBytes: 1 << 30, MemUsedBytes: 1 << 28, InFlight: 3, SaturationPM: 120,
			Seeds:  map[string]SeedLoad{"hello": {DemandMilliCPS: 20_000, ServedMilliCPS: 10_000, LatencyMicros: 900, SaturationPM: 300}},
			Coord:  Coord{X: -100, Y: 200, H: 300},
			Addrs:  []string{"192.0.2.1:7946", "[2001:db8::1]:7946"},
			Relay:  true,
			Cached: []oplog.Digest{digestOf("hello")},
		},
	}
}

func TestBodiesValidate(t *testing.T) {
	good := &Seed{Name: "hello", Kind: SeedWASM, Digest: digestOf("hello"), MinReplicas: 1, MaxReplicas: 1}
	seed := func(f func(s *Seed)) *Seed { s := *good; f(&s); return &s }
	for _, tc := range []struct {
		name string
		body Body
		want string // a fragment of the error; "" for a valid body
	}{
		{"genesis", &Genesis{Root: pub("root")}, ""},
		{"genesis without root", &Genesis{Name: "x"}, "no root key"},

		{"grant", &Grant{Subject: pub("a"), Tier: TierMember}, ""},
		{"grant without subject", &Grant{Tier: TierMember}, "no subject"},
		{"grant of no tier", &Grant{Subject: pub("a")}, "unknown tier none"},
		{"grant of tier 9", &Grant{Subject: pub("a"), Tier: 9}, "unknown tier tier(9)"},
		{"member grant conferring", &Grant{Subject: pub("a"), Tier: TierMember, Confers: TierAdmin}, "only an invite grant confers"},
		{"invite", &Grant{Subject: pub("a"), Tier: TierInvite, Confers: TierAdmin, Expires: at(1)}, ""},
		{"invite without expiry", &Grant{Subject: pub("a"), Tier: TierInvite, Confers: TierMember}, "an invite must expire"},
		{"invite conferring invite", &Grant{Subject: pub("a"), Tier: TierInvite, Confers: TierInvite, Expires: at(1)}, "must confer member, publisher or admin, not invite"},
		{"invite conferring nothing", &Grant{Subject: pub("a"), Tier: TierInvite, Expires: at(1)}, "not none"},
		{"32 properties", &Grant{Subject: pub("a"), Tier: TierMember, Props: manyProps(32)}, ""},
		{"33 properties", &Grant{Subject: pub("a"), Tier: TierMember, Props: manyProps(33)}, "33 properties; at most 32"},
		{"empty property key", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{"": "x"}}, "keys are non-empty"},
		{"property key with =", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{"a=b": "x"}}, "without '='"},
		{"property key with newline", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{"a\nb": "x"}}, "is not valid"},
		{"property key of 257 bytes", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{strings.Repeat("k", 257): "x"}}, "at most 256 bytes"},
		{"property value of 257 bytes", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{"k": strings.Repeat("v", 257)}}, "at most 256 bytes"},
		{"property value of 256 bytes", &Grant{Subject: pub("a"), Tier: TierMember, Props: map[string]string{"k": strings.Repeat("v", 256)}}, ""},

		{"deny", &Deny{Subject: pub("a")}, ""},
		{"deny without subject", &Deny{}, "no subject"},
		{"deny keeping 4096", &Deny{Subject: pub("a"), Keep: make([]oplog.ID, MaxKeep)}, ""},
		{"deny keeping 4097", &Deny{Subject: pub("a"), Keep: make([]oplog.ID, MaxKeep+1)}, "keeps 4097 ops; at most 4096"},
		{"deny with a long reason", &Deny{Subject: pub("a"), Reason: strings.Repeat("x", MaxReasonBytes+1)}, "reason is 1025 bytes"},

		{"seed", good, ""},
		{"seed without name", seed(func(s *Seed) { s.Name = "" }), `name "" is not valid`},
		{"seed named in capitals", seed(func(s *Seed) { s.Name = "Hello" }), `name "Hello" is not valid`},
		{"seed name with a space", seed(func(s *Seed) { s.Name = "a b" }), "is not valid"},
		{"seed name starting with -", seed(func(s *Seed) { s.Name = "-a" }), "starting with a letter or digit"},
		{"seed name of 63", seed(func(s *Seed) { s.Name = strings.Repeat("a", 63) }), ""},
		{"seed name of 64", seed(func(s *Seed) { s.Name = strings.Repeat("a", 64) }), "1-63"},
		{"seed name with é", seed(func(s *Seed) { s.Name = "café" }), "is not valid"},
		{"seed of kind docker", seed(func(s *Seed) { s.Kind = "docker" }), `kind "docker" is not one of wasm, site, blob`},
		{"seed of kind site", seed(func(s *Seed) { s.Kind = SeedSite }), ""},
		{"seed without digest", seed(func(s *Seed) { s.Digest = oplog.Digest{} }), "has no digest"},
		{"seed of 0 replicas", seed(func(s *Seed) { s.MinReplicas, s.MaxReplicas = 0, 0 }), "replicas 0:0; need 1 ≤ min ≤ max ≤ 1024"},
		{"seed with min above max", seed(func(s *Seed) { s.MinReplicas, s.MaxReplicas = 3, 2 }), "replicas 3:2"},
		{"seed of 1025 replicas", seed(func(s *Seed) { s.MaxReplicas = 1025 }), "replicas 1:1025"},
		{"seed with negative memory", seed(func(s *Seed) { s.MemoryBytes = -1 }), "negative limit"},
		{"seed with negative timeout", seed(func(s *Seed) { s.TimeoutMillis = -1 }), "negative limit"},
		{"seed with a bad policy", seed(func(s *Seed) { s.Policy = map[string]string{"": ""} }), "is not valid"},
		{"seed tombstone", &Seed{Name: "hello", Tombstone: true}, ""},
		{"seed tombstone without name", &Seed{Tombstone: true}, "is not valid"},

		{"serve", &Serve{Node: pub("a"), Name: "db", Port: 1, Proto: "udp"}, ""},
		{"serve on port 0", &Serve{Node: pub("a"), Name: "db", Proto: "tcp"}, "port 0 is not 1-65535"},
		{"serve on port 65536", &Serve{Node: pub("a"), Name: "db", Port: 65536, Proto: "tcp"}, "port 65536"},
		{"serve over sctp", &Serve{Node: pub("a"), Name: "db", Port: 80, Proto: "sctp"}, `protocol "sctp" is not tcp or udp`},
		{"serve without name", &Serve{Node: pub("a"), Port: 80, Proto: "tcp"}, "is not valid"},
		{"serve tombstone", &Serve{Node: pub("a"), Name: "db", Tombstone: true}, ""},

		{"claim", &Claim{Node: pub("a"), Seed: "hello", State: ClaimDraining}, ""},
		{"claim in state zombie", &Claim{Node: pub("a"), Seed: "hello", State: "zombie"}, `state "zombie" is not ready, draining or released`},
		{"claim without state", &Claim{Node: pub("a"), Seed: "hello"}, `state ""`},
		{"claim on a bad name", &Claim{Node: pub("a"), Seed: "Hello", State: ClaimReady}, "is not valid"},

		{"load", &Load{Node: pub("a")}, ""},
		{"load with negative cpu", &Load{CPUMilli: -1}, "negative figure"},
		{"load with negative memory use", &Load{MemUsedBytes: -1}, "negative figure"},
		{"load with negative saturation", &Load{SaturationPM: -1}, "negative figure"},
		{"load of 1025 seeds", &Load{Seeds: func() map[string]SeedLoad {
			m := map[string]SeedLoad{}
			for i := range MaxLoadSeeds + 1 {
				m[fmt.Sprint(i)] = SeedLoad{}
			}
			return m
		}()}, "1025 seeds; at most 1024"},
		{"load of 1025 cached", &Load{Cached: make([]oplog.Digest, MaxLoadCached+1)}, "1025 cached digests"},
		{"load of 17 addresses", &Load{Addrs: make([]string, MaxLoadAddrs+1)}, "17 addresses; at most 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.body.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate accepted it; want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate: %v; want an error containing %q", err, tc.want)
			}
			// EncodeBody validates too; DecodeBody refuses what EncodeBody would.
			if _, encErr := EncodeBody(tc.body); (encErr == nil) != (err == nil) {
				t.Fatalf("EncodeBody: %v, Validate: %v", encErr, err)
			}
			op := &oplog.Op{Kind: KindOf(tc.body), Body: encode(t, tc.body)}
			if _, decErr := DecodeBody(op); (decErr == nil) != (err == nil) || (err != nil && decErr.Error() != err.Error()) {
				t.Fatalf("DecodeBody: %v, Validate: %v", decErr, err)
			}
		})
	}
}

func TestBodiesRoundTrip(t *testing.T) {
	for _, b := range validBodies() {
		enc, err := EncodeBody(b)
		if err != nil {
			t.Fatalf("%T: EncodeBody: %v", b, err)
		}
		got, err := DecodeBody(&oplog.Op{Kind: KindOf(b), Body: enc})
		if err != nil {
			t.Fatalf("%T: DecodeBody: %v", b, err)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("%T round trip:\ngot  %+v\nwant %+v", b, got, b)
		}
		// Canonical: equal bodies, equal bytes.
		again, _ := EncodeBody(got)
		if string(again) != string(enc) {
			t.Fatalf("%T re-encodes to other bytes", b)
		}
		if KindOf(got) != KindOf(b) {
			t.Fatalf("%T: KindOf changed", b)
		}
		nb, err := NewBody(KindOf(b))
		if err != nil || reflect.TypeOf(nb) != reflect.TypeOf(b) {
			t.Fatalf("NewBody(%s) = %T, %v; want %T", KindOf(b), nb, err, b)
		}
	}
}

func TestDecodeBodyIsStrict(t *testing.T) {
	claim := encode(t, &Claim{Node: pub("a"), Seed: "hello", Digest: digestOf("x"), State: ClaimReady})
	// CBOR by hand: a map header for n pairs, an unsigned key, a text value.
	mapOf := func(n byte) []byte { return []byte{0xa0 | n} }
	text := func(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }
	for _, tc := range []struct {
		name string
		kind oplog.Kind
		body []byte
		want string
	}{
		{"trailing byte", oplog.KindClaim, append(append([]byte{}, claim...), 0x00), "extraneous data"},
		{"unknown field", oplog.KindClaim, append(append(mapOf(claim[0]&0x1f+1), claim[1:]...), append([]byte{0x18, 99}, text("x")...)...), "unknown field"},
		{"duplicate field", oplog.KindDeny, append(append(mapOf(2), append([]byte{0x02}, text("a")...)...), append([]byte{0x02}, text("b")...)...), "duplicate map key"},
		{"indefinite map", oplog.KindDeny, []byte{0xbf, 0x02, 0x61, 'a', 0xff}, "indefinite-length"},
		{"wrong type", oplog.KindDeny, append(mapOf(1), append([]byte{0x02}, 0x01)...), "cannot unmarshal"},
		{"invalid UTF-8", oplog.KindDeny, append(mapOf(1), 0x02, 0x61, 0xff), "invalid UTF-8"},
		{"an array, not a map", oplog.KindLoad, []byte{0x80}, "does not decode"},
		{"empty", oplog.KindLoad, []byte{}, "does not decode"},
		{"tagged", oplog.KindLoad, append([]byte{0xc0}, mapOf(0)...), "tag"},
		{"valid CBOR, invalid body", oplog.KindSeed, encode(t, &Seed{Name: "x"}), "is not one of wasm, site, blob"},
	} {
		_, err := DecodeBody(&oplog.Op{Kind: tc.kind, Body: tc.body})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeBody = %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
	for _, k := range []oplog.Kind{0, 8, 255} {
		if _, err := DecodeBody(&oplog.Op{Kind: k, Body: claim}); !errors.Is(err, oplog.ErrKind) {
			t.Errorf("kind %d: DecodeBody = %v; want oplog.ErrKind", k, err)
		}
		if _, err := NewBody(k); !errors.Is(err, oplog.ErrKind) {
			t.Errorf("kind %d: NewBody = %v; want oplog.ErrKind", k, err)
		}
	}
	// An empty map is a valid load body: every field is optional.
	if _, err := DecodeBody(&oplog.Op{Kind: oplog.KindLoad, Body: mapOf(0)}); err != nil {
		t.Errorf("empty load: %v", err)
	}
}

type notABody struct{}

func (notABody) Validate() error { return nil }

func TestKindOfPanicsOnAForeignBody(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("KindOf accepted a type that is not an op body")
		}
	}()
	KindOf(notABody{})
}

func TestTier(t *testing.T) {
	tiers := []Tier{TierNone, TierMember, TierPublisher, TierAdmin, TierInvite}
	names := []string{"none", "member", "publisher", "admin", "invite"}
	for i, tier := range tiers {
		if tier.String() != names[i] {
			t.Errorf("Tier(%d).String() = %q; want %q", tier, tier.String(), names[i])
		}
	}
	if got := Tier(9).String(); got != "tier(9)" {
		t.Errorf("Tier(9).String() = %q", got)
	}

	for _, tc := range []struct {
		in   string
		want Tier
		err  bool
	}{
		{"member", TierMember, false},
		{"publisher", TierPublisher, false},
		{"ADMIN", TierAdmin, false},
		{"Invite", TierInvite, false},
		{"none", TierNone, true},
		{"root", TierNone, true},
		{"", TierNone, true},
	} {
		got, err := ParseTier(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseTier(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), "one of member, publisher, admin, invite") {
			t.Errorf("ParseTier(%q): the error does not list the tiers: %v", tc.in, err)
		}
	}

	// Covers: admin ⊃ publisher ⊃ member; invite covers only invite; nothing
	// covers none.
	covers := map[Tier][]Tier{
		TierNone:      {},
		TierMember:    {TierMember},
		TierPublisher: {TierMember, TierPublisher},
		TierAdmin:     {TierMember, TierPublisher, TierAdmin},
		TierInvite:    {TierInvite},
	}
	for _, have := range tiers {
		for _, need := range tiers {
			want := false
			for _, c := range covers[have] {
				want = want || c == need
			}
			if got := have.Covers(need); got != want {
				t.Errorf("%s.Covers(%s) = %v; want %v", have, need, got, want)
			}
		}
	}

	for _, tier := range tiers {
		want := tier == TierMember || tier == TierPublisher || tier == TierAdmin
		if tier.Node() != want {
			t.Errorf("%s.Node() = %v", tier, tier.Node())
		}
	}

	// Tiers appear by name in JSON, and only known names read back.
	b, err := json.Marshal(struct{ T Tier }{TierPublisher})
	if err != nil || string(b) != `{"T":"publisher"}` {
		t.Errorf("JSON: %s, %v", b, err)
	}
	var back struct{ T Tier }
	if err := json.Unmarshal(b, &back); err != nil || back.T != TierPublisher {
		t.Errorf("JSON round trip: %v, %v", back.T, err)
	}
	if err := json.Unmarshal([]byte(`{"T":"root"}`), &back); err == nil {
		t.Error("JSON accepted tier root")
	}
}

func TestParamsDefaults(t *testing.T) {
	d := DefaultParams()
	if d.MaxOffsetMillis != 5000 || d.LoadIntervalMillis != 2000 || d.LiveIntervals != 3 || d.ReplicaMilliCPS != 50_000 {
		t.Errorf("DefaultParams changed: %+v (DESIGN.md §3 and the scenarios assume these)", d)
	}
	if got := (Params{}).withDefaults(); got != d {
		t.Errorf("zero params fill to %+v; want the defaults %+v", got, d)
	}
	custom := Params{MaxOffsetMillis: 1, LoadIntervalMillis: 2, LiveIntervals: 3, RetentionMillis: 4, ReplicaMilliCPS: 5}
	if got := custom.withDefaults(); got != custom {
		t.Errorf("set params were overwritten: %+v", got)
	}
	if got := (Params{MaxOffsetMillis: -1}).withDefaults(); got.MaxOffsetMillis != d.MaxOffsetMillis {
		t.Errorf("a negative MaxOffset is kept: %+v", got)
	}
}

func TestMemberNameAndActive(t *testing.T) {
	m := &Member{Key: pub("n1"), Tier: TierMember, Props: map[string]string{"name": "pi"}, Expires: at(1000)}
	if m.Name() != "pi" {
		t.Errorf("Name() = %q", m.Name())
	}
	if (&Member{Key: pub("n1")}).Name() != pub("n1").Short() {
		t.Error("a member without a name property is not named by its short key")
	}
	for _, tc := range []struct {
		m    *Member
		now  oplog.HLC
		want bool
	}{
		{m, at(1000), true},
		{m, at(1000) + 1, false},
		{&Member{Tier: TierMember}, at(1 << 40), true},
		{&Member{Tier: TierMember, Denied: true}, at(0), false},
		{&Member{}, at(0), false},
		{nil, at(0), false},
	} {
		if got := tc.m.Active(tc.now); got != tc.want {
			t.Errorf("%+v.Active(%s) = %v; want %v", tc.m, rel(tc.now), got, tc.want)
		}
	}
}
