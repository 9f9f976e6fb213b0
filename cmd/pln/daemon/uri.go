package daemon

import (
	"fmt"
	"strings"

	"github.com/pln-mesh/pln/reducers"
)

// parseSeedURI reads pln://seed/<name>/<fn>.
func parseSeedURI(uri string) (seed, fn string, err error) {
	rest, ok := strings.CutPrefix(uri, "pln://")
	if !ok {
		return "", "", fmt.Errorf("%q is not a pln:// URI (want pln://seed/<name>/<fn>)", uri)
	}
	kind, rest, _ := strings.Cut(rest, "/")
	switch kind {
	case "seed":
	case "service":
		return "", "", fmt.Errorf("%q: calling services from a seed is not supported yet", uri)
	default:
		return "", "", fmt.Errorf("%q: unknown kind %q (want pln://seed/<name>/<fn>)", uri, kind)
	}
	seed, fn, ok = strings.Cut(rest, "/")
	if !ok || fn == "" || strings.Contains(fn, "/") {
		return "", "", fmt.Errorf("%q: want pln://seed/<name>/<fn>", uri)
	}
	if err := reducers.ValidName(seed); err != nil {
		return "", "", fmt.Errorf("%q: %w", uri, err)
	}
	return seed, fn, nil
}
