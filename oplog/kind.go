package oplog

import (
	"fmt"
	"strings"
)

// Kind says what an op's body means. DESIGN.md §3 lists each kind, its
// legitimate authors and its merge rule; a new kind goes there too.
type Kind uint8

const (
	KindGenesis Kind = 1 + iota
	KindGrant
	KindDeny
	KindSeed
	KindServe
	KindClaim
	KindLoad
	kindEnd
)

var kindNames = [...]string{
	KindGenesis: "genesis",
	KindGrant:   "grant",
	KindDeny:    "deny",
	KindSeed:    "seed",
	KindServe:   "serve",
	KindClaim:   "claim",
	KindLoad:    "load",
}

// Kinds lists every known kind in numeric order.
func Kinds() []Kind {
	ks := make([]Kind, 0, kindEnd-1)
	for k := KindGenesis; k < kindEnd; k++ {
		ks = append(ks, k)
	}
	return ks
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindGenesis && k < kindEnd }

func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads a kind by name.
func ParseKind(s string) (Kind, error) {
	for k := KindGenesis; k < kindEnd; k++ {
		if kindNames[k] == strings.ToLower(s) {
			return k, nil
		}
	}
	names := make([]string, 0, kindEnd-1)
	for k := KindGenesis; k < kindEnd; k++ {
		names = append(names, kindNames[k])
	}
	return 0, fmt.Errorf("unknown op kind %q (one of %s)", s, strings.Join(names, ", "))
}
