package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// writeBolt makes a bbolt file at path and lets fill shape it.
func writeBolt(t *testing.T, path string, fill func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// Open must refuse every file that is not a pln store it can read, say which
// file and what is wrong, and leave the file byte for byte as it was.
func TestOpenRefusesForeignFilesUntouched(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	cases := []struct {
		name string
		make func(t *testing.T, path string)
		want string // in the message
	}{
		{"short garbage", func(t *testing.T, p string) { os.WriteFile(p, garbage(100), 0o600) }, "not a bbolt database"},
		{"page-sized garbage", func(t *testing.T, p string) { os.WriteFile(p, garbage(64<<10), 0o600) }, "not a bbolt database"},
		{"text file", func(t *testing.T, p string) { os.WriteFile(p, []byte("hello, world\n"), 0o644) }, "not a bbolt database"},
		{"empty file", func(t *testing.T, p string) { os.WriteFile(p, nil, 0o600) }, "empty"},
		{"bbolt without meta", func(t *testing.T, p string) {
			writeBolt(t, p, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
		}, "not a pln store"},
		{"bbolt with another format", func(t *testing.T, p string) {
			writeBolt(t, p, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				return b.Put([]byte(keyFormat), []byte("etcd"))
			})
		}, `format "etcd"`},
		{"newer pln store", func(t *testing.T, p string) {
			s, err := Open(p, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			writeBolt(t, p, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(keyVersion), be64(formatVersion+1)) })
		}, "newer than this build"},
		{"damaged bbolt header", func(t *testing.T, p string) {
			writeBolt(t, p, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
			b, _ := os.ReadFile(p)
			pageSize := int(binary.LittleEndian.Uint32(b[boltMagicOffset+8:]))
			for _, page := range []int{0, pageSize} { // break both meta checksums, keep the magic
				b[page+boltMagicOffset+30] ^= 0xff
			}
			os.WriteFile(p, b, 0o600)
		}, "unreadable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.db")
			tc.make(t, path)
			before := fileHash(t, path)
			info, _ := os.Stat(path)

			for _, ro := range []bool{false, true} {
				opts := DefaultOptions()
				opts.ReadOnly = ro
				s, err := Open(path, opts)
				if err == nil {
					s.Close()
					t.Fatalf("Open(ReadOnly=%v) succeeded on a foreign file", ro)
				}
				if !errors.Is(err, ErrForeign) && !errors.Is(err, ErrCorrupt) {
					t.Errorf("error %q wraps neither ErrForeign nor ErrCorrupt", err)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q should name %s and say %q", err, path, tc.want)
				}
			}
			if fileHash(t, path) != before {
				t.Error("Open modified a file that is not a pln store")
			}
			after, _ := os.Stat(path)
			if after.Mode() != info.Mode() || after.Size() != info.Size() {
				t.Errorf("file mode/size changed: %v %d → %v %d", info.Mode(), info.Size(), after.Mode(), after.Size())
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*")); len(left) != 1 {
				t.Errorf("directory holds %v, want only the original file", left)
			}
		})
	}
}

func TestOpenWhileOpenIsLocked(t *testing.T) {
	s := openTemp(t, false)
	for _, ro := range []bool{false, true} {
		opts := Options{LockTimeout: 100 * time.Millisecond, ReadOnly: ro}
		start := time.Now()
		s2, err := Open(s.Path(), opts)
		took := time.Since(start)
		if err == nil {
			s2.Close()
			t.Fatalf("second Open(ReadOnly=%v) of an open store succeeded", ro)
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "pln up") {
			t.Errorf("error %q: want ErrLocked naming the file and hinting at 'pln up'", err)
		}
		if took < 80*time.Millisecond || took > 2*time.Second {
			t.Errorf("gave up after %v, want about the 100ms lock timeout", took)
		}
	}
	// Once the holder closes, the file opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), DefaultOptions())
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	s2.Close()
}

func TestOpenCreatesPrivateFileAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	s, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("new store has mode %v, want 0600", info.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 {
		t.Errorf("directory holds %v, want only the store (no temp files)", left)
	}
	if n := mustCount(t, s); n != 0 {
		t.Errorf("new store Count = %d", n)
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only Open of a missing store: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("read-only Open created the file")
	}

	s, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, sign(t, 1, 5, nil))
	s.Close()

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if n := mustCount(t, ro); n != 1 {
		t.Errorf("read-only Count = %d, want 1", n)
	}
	if _, err := ro.Append(sign(t, 1, 6, nil)); err == nil {
		t.Error("Append on a read-only store succeeded")
	}
	// Readers share the file.
	ro2, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	ro2.Close()
}
