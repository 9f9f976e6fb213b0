package reducers

import (
	"fmt"
	"strings"
)

// Tier is what a grant admits its subject as. Admin ⊃ publisher ⊃ member;
// invite is apart: an invite key may only redeem itself once.
type Tier uint8

const (
	TierNone Tier = iota
	TierMember
	TierPublisher
	TierAdmin
	TierInvite
)

var tierNames = [...]string{"none", "member", "publisher", "admin", "invite"}

func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// ParseTier reads a tier by name.
func ParseTier(s string) (Tier, error) {
	for i, n := range tierNames {
		if i > 0 && n == strings.ToLower(s) {
			return Tier(i), nil
		}
	}
	return TierNone, fmt.Errorf("unknown tier %q (one of member, publisher, admin, invite)", s)
}

// MarshalText and UnmarshalText let tiers appear by name in JSON.
func (t Tier) MarshalText() ([]byte, error) { return []byte(t.String()), nil }
func (t *Tier) UnmarshalText(b []byte) error {
	v, err := ParseTier(string(b))
	*t = v
	return err
}

// Covers reports whether a holder of t may do what needs tier need.
func (t Tier) Covers(need Tier) bool {
	if t == TierInvite || need == TierInvite {
		return t == need
	}
	return t >= need && need != TierNone
}

// Node reports whether the tier belongs to a node (not an invite key).
func (t Tier) Node() bool { return t >= TierMember && t <= TierAdmin }
