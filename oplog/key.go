package oplog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Key is an ed25519 public key: a node, an admin, the root or an invite key.
type Key [ed25519.PublicKeySize]byte

// ID names an op: the SHA-256 of its unsigned canonical encoding.
type ID [sha256.Size]byte

// ClusterID names a cluster: the SHA-256 of its root public key.
type ClusterID [sha256.Size]byte

// KeyOf returns the public half of priv.
func KeyOf(priv ed25519.PrivateKey) Key {
	var k Key
	copy(k[:], priv.Public().(ed25519.PublicKey))
	return k
}

// ClusterOf returns the ID of the cluster rooted in root.
func ClusterOf(root Key) ClusterID { return sha256.Sum256(root[:]) }

// String renders the key as lowercase hex, the form the CLI prints and reads.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Short is the first eight hex digits, for tables.
func (k Key) Short() string { return hex.EncodeToString(k[:4]) }

// IsZero reports whether k is the zero key (no key).
func (k Key) IsZero() bool { return k == Key{} }

func (id ID) String() string       { return hex.EncodeToString(id[:]) }
func (id ID) Short() string        { return hex.EncodeToString(id[:4]) }
func (c ClusterID) String() string { return hex.EncodeToString(c[:]) }
func (c ClusterID) Short() string  { return hex.EncodeToString(c[:4]) }

// ParseKey reads a public key written as 64 hex digits.
func ParseKey(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("key %q is %d characters; a key is %d hex digits (see 'pln id')", clip(s), len(s), 2*len(k))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("key %q is not hex; a key is %d hex digits (see 'pln id')", clip(s), 2*len(k))
	}
	return k, nil
}

// ParseID reads an op ID written as 64 hex digits.
func ParseID(s string) (ID, error) {
	k, err := ParseKey(s)
	if err != nil {
		return ID{}, fmt.Errorf("op ID %q is not 64 hex digits", clip(s))
	}
	return ID(k), nil
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

// Digest is the SHA-256 of some content: an artifact, a manifest, a view.
type Digest [sha256.Size]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }
func (d Digest) Short() string  { return hex.EncodeToString(d[:6]) }
func (d Digest) IsZero() bool   { return d == Digest{} }

// ParseDigest reads a digest written as 64 hex digits, as sha256sum prints.
func ParseDigest(s string) (Digest, error) {
	k, err := ParseKey(s)
	if err != nil {
		return Digest{}, fmt.Errorf("digest %q is not a SHA-256 (64 hex digits, as 'sha256sum' prints)", clip(s))
	}
	return Digest(k), nil
}

// Text forms, so that keys, IDs and digests read as hex in JSON.

func (k Key) MarshalText() ([]byte, error)       { return []byte(k.String()), nil }
func (id ID) MarshalText() ([]byte, error)       { return []byte(id.String()), nil }
func (c ClusterID) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
func (d Digest) MarshalText() ([]byte, error)    { return []byte(d.String()), nil }

func (k *Key) UnmarshalText(b []byte) (err error) { *k, err = ParseKey(string(b)); return }
func (id *ID) UnmarshalText(b []byte) (err error) { *id, err = ParseID(string(b)); return }
func (c *ClusterID) UnmarshalText(b []byte) error {
	k, err := ParseKey(string(b))
	*c = ClusterID(k)
	return err
}
func (d *Digest) UnmarshalText(b []byte) (err error) { *d, err = ParseDigest(string(b)); return }
