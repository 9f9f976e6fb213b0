package wasm

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFixturesMatchChecksums checks the committed .wasm files against
// testdata/wasm/SHA256SUMS, which build.sh writes when it rebuilds them from
// source. A mismatch means a fixture was changed without its source (or
// the other way round): run testdata/wasm/build.sh and commit both.
func TestFixturesMatchChecksums(t *testing.T) {
	dir := filepath.Join("..", "testdata", "wasm")
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not '<sha256>  <file>'", sc.Text())
		}
		code, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := sha256.Sum256(code); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s has sha256 %x; SHA256SUMS says %s (run testdata/wasm/build.sh)", name, got, sum)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{goGuest, cGuest, spin, trap, grow, huge, cold} {
		if !strings.Contains(mustRead(t, filepath.Join(dir, "SHA256SUMS")), "  "+want+"\n") {
			t.Errorf("SHA256SUMS does not list %s", want)
		}
	}
	if n == 0 {
		t.Fatal("SHA256SUMS lists no fixtures")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
