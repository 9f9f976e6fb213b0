package oplog

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestParseKeyRoundTrip(t *testing.T) {
	k := KeyOf(testKey(4))
	for _, s := range []string{k.String(), "  " + k.String() + "\n", strings.ToUpper(k.String())} {
		got, err := ParseKey(s)
		if err != nil || got != k {
			t.Errorf("ParseKey(%q) = %v, %v; want %v", s, got, err, k)
		}
	}
	if len(k.String()) != 64 || k.Short() != k.String()[:8] {
		t.Errorf("String %q / Short %q", k.String(), k.Short())
	}
	if k.IsZero() || !(Key{}).IsZero() {
		t.Error("IsZero")
	}
}

func TestParseKeyRejects(t *testing.T) {
	k := KeyOf(testKey(4)).String()
	for name, s := range map[string]string{
		"empty":      "",
		"63 digits":  k[:63],
		"65 digits":  k + "0",
		"non-hex":    "g" + k[1:],
		"0x prefix":  "0x" + k[:62],
		"a whole ID": k + k,
	} {
		_, err := ParseKey(s)
		if err == nil {
			t.Errorf("%s: ParseKey(%q) succeeded", name, s)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "pln id") || !strings.Contains(msg, "64 hex digits") {
			t.Errorf("%s: error does not say what a key looks like or where to find one: %v", name, msg)
		}
		if len(err.Error()) > 120 {
			t.Errorf("%s: error quotes too much of the input: %v", name, err)
		}
	}
}

func TestParseIDAndClusterOf(t *testing.T) {
	op := mustSign(t, KindGrant, testHLC, grantBody)
	if got, err := ParseID(op.ID().String()); err != nil || got != op.ID() {
		t.Errorf("ParseID round trip = %v, %v", got, err)
	}
	if _, err := ParseID("abc"); err == nil || !strings.Contains(err.Error(), "op ID") {
		t.Errorf("ParseID(abc) = %v, want an error naming an op ID", err)
	}
	root := KeyOf(rootKey)
	if ClusterOf(root) != ClusterID(sha256.Sum256(root[:])) {
		t.Error("ClusterOf is not the SHA-256 of the root key")
	}
}
