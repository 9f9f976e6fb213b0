package reducers

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/pln-mesh/pln/oplog"
)

// Building ops for tests: deterministic keys named by strings, one fixed
// epoch for every timestamp, and two ways to make an op — signed, as a node
// would, or forged without a signature where thousands are needed (the fold
// never checks signatures; the store does, at the door).

// epochMillis is t=0 of every test, 2027-01-15T08:00:00Z. It is fixed so
// that op IDs, digests and golden files are the same on every run.
const epochMillis = 1_800_000_000_000

// at is the HLC ms milliseconds after the epoch.
func at(ms int64) oplog.HLC { return oplog.NewHLC(epochMillis+ms, 0) }

var keyCache sync.Map // name → ed25519.PrivateKey

// key is the deterministic key pair called name.
func key(name string) ed25519.PrivateKey {
	if k, ok := keyCache.Load(name); ok {
		return k.(ed25519.PrivateKey)
	}
	s := sha256.Sum256([]byte(name))
	k := ed25519.NewKeyFromSeed(s[:])
	keyCache.Store(name, k)
	return k
}

// pub is the public key called name.
func pub(name string) oplog.Key { return oplog.KeyOf(key(name)) }

// clusterOf is the cluster whose root key is called root.
func clusterOf(root string) oplog.ClusterID { return oplog.ClusterOf(pub(root)) }

// digestOf names an artifact in tests: the SHA-256 of its name.
func digestOf(name string) oplog.Digest { return sha256.Sum256([]byte(name)) }

// encode encodes a body without validating it, so tests can also build ops
// the fold must refuse.
func encode(tb testing.TB, b Body) []byte {
	tb.Helper()
	enc, err := oplog.Marshal(b)
	if err != nil {
		tb.Fatalf("encoding %T: %v", b, err)
	}
	return enc
}

// sign builds a signed op, as a node would.
func sign(tb testing.TB, cl oplog.ClusterID, author string, hlc oplog.HLC, b Body) *oplog.Op {
	tb.Helper()
	op, err := oplog.Sign(cl, key(author), KindOf(b), hlc, encode(tb, b))
	if err != nil {
		tb.Fatal(err)
	}
	return op
}

// forge builds an unsigned op with its ID computed once, as if it had come
// through oplog.Decode. It is for tests that need many ops fast.
func forge(kind oplog.Kind, author oplog.Key, hlc oplog.HLC, body []byte) *oplog.Op {
	if body == nil {
		body = []byte{}
	}
	op, err := oplog.Decode((&oplog.Op{V: oplog.Version, Kind: kind, Author: author, HLC: hlc, Body: body}).Bytes())
	if err != nil {
		panic(fmt.Sprintf("forging a %s op: %v", kind, err))
	}
	return op
}

// forgeBody is forge for a body.
func forgeBody(author oplog.Key, hlc oplog.HLC, b Body) *oplog.Op {
	enc, err := oplog.Marshal(b)
	if err != nil {
		panic(err)
	}
	return forge(KindOf(b), author, hlc, enc)
}
