package crdt

import (
	"bytes"
	"encoding/hex"
	"strconv"
)

// Stamp is the position of an update in the cluster's total order: the HLC
// of the op that made it, then the op's ID. Comparing stamps therefore
// agrees with the order every node folds ops in, and two distinct ops never
// compare equal.
type Stamp struct {
	HLC uint64
	ID  [32]byte
}

// Compare orders stamps by HLC, then by ID bytes. It returns -1, 0 or +1.
func Compare(a, b Stamp) int {
	switch {
	case a.HLC < b.HLC:
		return -1
	case a.HLC > b.HLC:
		return 1
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// Less reports whether s orders before t.
func (s Stamp) Less(t Stamp) bool { return Compare(s, t) < 0 }

// IsZero reports whether s is the zero stamp, which orders before every
// stamp an op can carry.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// String renders the raw HLC and the first four ID bytes, for test failures
// and debug logs; crdt does not know how to print an HLC as a time.
func (s Stamp) String() string {
	return strconv.FormatUint(s.HLC, 10) + "/" + hex.EncodeToString(s.ID[:4])
}
