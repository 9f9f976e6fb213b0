package cas

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustPut(t testing.TB, s *Store, b []byte) oplog.Digest {
	t.Helper()
	d, n, err := s.Put(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(b)) {
		t.Fatalf("Put stored %d bytes of %d", n, len(b))
	}
	return d
}

// tmpFiles lists what is in the store's temp directory.
func tmpFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestStorePutAndReadBack(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	data := randomBytes(5<<20+17, 1)
	d := mustPut(t, s, data)
	if d != sha256.Sum256(data) {
		t.Fatalf("Put named it %s; its SHA-256 is %x", d, sha256.Sum256(data))
	}
	if !s.Has(d) {
		t.Fatal("Has is false after Put")
	}
	h := d.String()
	info, err := os.Stat(filepath.Join(dir, "cas", h[:2], h))
	if err != nil {
		t.Fatalf("object is not at cas/<2 hex>/<64 hex>: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("object mode %v, want 0600", info.Mode().Perm())
	}
	if info, _ := os.Stat(filepath.Join(dir, "cas")); info.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %v, want 0700", info.Mode().Perm())
	}

	f, size, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("Open gave %d bytes (size %d, err %v); want the %d put", len(got), size, err, len(data))
	}
	got, err = s.ReadAll(d, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %v", err)
	}
	if _, err := s.ReadAll(d, int64(len(data))-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadAll over its limit: %v, want ErrTooLarge", err)
	}

	// Idempotent: the same bytes again change nothing.
	if again := mustPut(t, s, data); again != d {
		t.Fatalf("second Put named it %s, first %s", again, d)
	}
	if l, _ := s.List(); len(l) != 1 {
		t.Fatalf("List after two puts of the same bytes: %d objects", len(l))
	}
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files left behind: %v", names)
	}

	// Reopened, the store still has it.
	if !openStore(t, dir).Has(d) {
		t.Fatal("object gone after reopening the store")
	}
}

// gatedReader yields first, signals that it has, then blocks until gate
// closes before it yields rest.
type gatedReader struct {
	first, rest []byte
	gave        chan struct{}
	gate        chan struct{}
	state       int
}

func (r *gatedReader) Read(b []byte) (int, error) {
	switch r.state {
	case 0:
		n := copy(b, r.first)
		r.first = r.first[n:]
		if len(r.first) == 0 {
			r.state = 1
		}
		return n, nil
	case 1:
		close(r.gave)
		<-r.gate
		r.state = 2
		fallthrough
	default:
		if len(r.rest) == 0 {
			return 0, io.EOF
		}
		n := copy(b, r.rest)
		r.rest = r.rest[n:]
		return n, nil
	}
}

func TestStorePutIsAllOrNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(3<<20, 2)
	d := oplog.Digest(sha256.Sum256(data))
	r := &gatedReader{first: data[:1<<20], rest: data[1<<20:], gave: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Put(r)
		done <- err
	}()
	<-r.gave // the first MiB has been read and written; Put waits for the rest

	if s.Has(d) {
		t.Fatal("Has is true while the object is half written")
	}
	if _, _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a half-written object: %v, want ErrNotFound", err)
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List shows %d objects while one is half written", len(l))
	}
	if names := tmpFiles(t, s); len(names) != 1 {
		t.Fatalf("want one temp file while Put runs, have %v", names)
	}

	close(r.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.Has(d) {
		t.Fatal("Has is false once Put returned")
	}
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files left behind: %v", names)
	}
}

// failingReader yields some bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(b []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(b), r.n)
	r.n -= n
	return n, nil
}

func TestStorePutThatFailsLeavesNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, _, err := s.Put(&failingReader{n: 100000}); err == nil {
		t.Fatal("Put of a failing reader succeeded")
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List shows %d objects after a failed put", len(l))
	}
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files left behind: %v", names)
	}
}

func TestStorePutExpect(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(1<<20, 3)
	want := oplog.Digest(sha256.Sum256(data))
	var wrong oplog.Digest
	wrong[0] = 1

	if _, err := s.PutExpect(bytes.NewReader(data), wrong); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("PutExpect under the wrong digest: %v, want ErrDigestMismatch", err)
	}
	if s.Has(wrong) || s.Has(want) {
		t.Fatal("PutExpect stored bytes that did not match")
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List shows %d objects after a refused put", len(l))
	}
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files left behind: %v", names)
	}

	n, err := s.PutExpect(bytes.NewReader(data), want)
	if err != nil || n != int64(len(data)) || !s.Has(want) {
		t.Fatalf("PutExpect under the right digest: %d bytes, %v", n, err)
	}
}

func TestStoreConcurrentPutsOfTheSameBytes(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(2<<20, 4)
	want := oplog.Digest(sha256.Sum256(data))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			d, _, err := s.Put(bytes.NewReader(data))
			if err == nil && d != want {
				err = errors.New("wrong digest")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.List()
	if err != nil || !slices.Equal(l, []oplog.Digest{want}) {
		t.Fatalf("List: %v, %v; want just %s", l, err, want.Short())
	}
	if got, err := s.ReadAll(want, 4<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll after concurrent puts: %v", err)
	}
	if names := tmpFiles(t, s); len(names) != 0 {
		t.Fatalf("temp files left behind: %v", names)
	}
}

func TestStoreListAndRemove(t *testing.T) {
	s := openStore(t, t.TempDir())
	var want []oplog.Digest
	for i := range 20 {
		want = append(want, mustPut(t, s, randomBytes(100+i, uint64(100+i))))
	}
	empty := mustPut(t, s, nil)
	want = append(want, empty)
	slices.SortFunc(want, func(a, b oplog.Digest) int { return bytes.Compare(a[:], b[:]) })
	got, err := s.List()
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List: %d objects, %v; want the %d put, in order", len(got), err, len(want))
	}
	if b, err := s.ReadAll(empty, 0); err != nil || len(b) != 0 {
		t.Fatalf("ReadAll of the empty object: %q, %v", b, err)
	}

	gone := want[3]
	if err := s.Remove(gone); err != nil {
		t.Fatal(err)
	}
	if s.Has(gone) {
		t.Fatal("Has is true after Remove")
	}
	if err := s.Remove(gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v, want ErrNotFound", err)
	}
	if _, err := s.ReadAll(gone, 1<<20); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAll after Remove: %v, want ErrNotFound", err)
	}
	got, _ = s.List()
	if !slices.Equal(got, slices.Delete(slices.Clone(want), 3, 4)) {
		t.Fatalf("List after Remove: %d objects, want %d", len(got), len(want)-1)
	}
}

func TestStoreReadAllCatchesACorruptCopy(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(64<<10, 5)
	d := mustPut(t, s, data)
	bad := slices.Clone(data)
	bad[1000] ^= 0x40
	if err := os.WriteFile(s.path(d), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAll(d, 1<<20); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("ReadAll of a corrupt copy: %v, want ErrDigestMismatch", err)
	}
	if s.Has(d) {
		t.Fatal("the corrupt copy is still stored; the node would never fetch a good one")
	}
}

func TestStoreOpenSweepsStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	stale := filepath.Join(s.tmpDir(), "put-stale")
	fresh := filepath.Join(s.tmpDir(), "put-fresh")
	partial := filepath.Join(s.partialDir(), oplog.Digest{9}.String())
	for _, p := range []string{stale, fresh, partial} {
		if err := os.WriteFile(p, []byte("half an object"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTempAge)
	for _, p := range []string{stale, partial} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	openStore(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file survived Open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("Open deleted a temp file a put may still be writing: %v", err)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Errorf("Open deleted a partial download, which should resume: %v", err)
	}
}

func TestPartialResumesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(3<<20+5, 6)
	d := oplog.Digest(sha256.Sum256(data))
	half := len(data) / 2

	s := openStore(t, dir)
	p, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Partial(d); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Partial of the same digest: %v, want ErrBusy", err)
	}
	if _, err := p.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) {
		t.Fatal("a closed partial is visible as an object")
	}

	s = openStore(t, dir) // a restart
	p, err = s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != int64(half) {
		t.Fatalf("resumed partial holds %d bytes, want %d", p.Len(), half)
	}
	if _, err := p.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadAll(d, 4<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll after Commit: %v", err)
	}
	if ents, _ := os.ReadDir(s.partialDir()); len(ents) != 0 {
		t.Fatalf("partial file left after Commit: %v", ents)
	}
	if _, err := p.Write([]byte("more")); err == nil {
		t.Fatal("Write to a committed partial succeeded")
	}
	p, err = s.Partial(d) // let go by Commit
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

func TestPartialCommitRefusesWrongBytes(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(1<<20, 7)
	d := oplog.Digest(sha256.Sum256(data))
	p, err := s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(data)
	bad[len(bad)-1] ^= 1
	p.Write(bad)
	if err := p.Commit(); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Commit of wrong bytes: %v, want ErrDigestMismatch", err)
	}
	if s.Has(d) {
		t.Fatal("wrong bytes stored under the digest")
	}
	p, err = s.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Len() != 0 {
		t.Fatalf("the wrong bytes were kept for resuming: %d", p.Len())
	}
}
