package reducers

import (
	"cmp"
	"slices"

	"github.com/pln-mesh/pln/oplog"
)

// ArtifactCopies is how many live nodes keep each seed's artifact on disk
// whether or not they run it. A seed with one replica would otherwise have
// its code only where it was published and where it runs, often the same
// node: lose that node and no survivor could run the seed again.
const ArtifactCopies = 2

// Keepers returns the live nodes that keep seed's artifact at now: the
// ArtifactCopies live nodes with the highest rendezvous hash of the
// artifact's digest, highest first. It is the same on every node with the
// same view, and a node coming or going moves few artifacts. A keeper that
// dies is replaced by the next live node, which fetches the artifact from
// any node that still has it.
func Keepers(v *View, seed string, now oplog.HLC) []oplog.Key {
	s := v.Seeds[seed]
	if s == nil || s.Tombstone || s.Kind != SeedWASM {
		return nil
	}
	name := s.Digest.String()
	keys := slices.Clone(v.liveAt(now).keys)
	slices.SortFunc(keys, func(a, b oplog.Key) int {
		return cmp.Compare(rendezvous(name, b), rendezvous(name, a))
	})
	return keys[:min(len(keys), ArtifactCopies)]
}
