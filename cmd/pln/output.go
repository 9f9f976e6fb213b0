package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// emit prints v as indented JSON.
func emit(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table starts an aligned table with the given header.
func table(header ...string) *tabwriter.Writer {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	return w
}

func row(w *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// propsString renders properties as k=v,k=v in key order.
func propsString(p map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, k+"="+p[k])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// parseProps reads repeated k=v flags.
func parseProps(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	p := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("property %q is not key=value", kv)
		}
		p[k] = v
	}
	return p, nil
}

// when renders an HLC as a local time of day, or a date if not today.
func when(h oplog.HLC) string {
	if h == 0 {
		return "-"
	}
	t := h.Time().Local()
	if time.Since(t) < 20*time.Hour && time.Since(t) > -20*time.Hour {
		return t.Format("15:04:05.000")
	}
	return t.Format("2006-01-02 15:04")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
