package cas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
)

// The blob protocol between real stores over loopback QUIC.

const testMax = 64 << 20

// holding returns a store in a fresh directory that holds data.
func holding(t testing.TB, data []byte) (*Store, oplog.Digest) {
	t.Helper()
	s := openStore(t, t.TempDir())
	if data == nil {
		return s, oplog.Digest{}
	}
	return s, mustPut(t, s, data)
}

func fetchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// assertHolds fails unless s holds exactly data under d and no partial.
func assertHolds(t *testing.T, s *Store, d oplog.Digest, data []byte) {
	t.Helper()
	got, err := s.ReadAll(d, testMax)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the fetch the store holds %d bytes (%v); want the %d served", len(got), err, len(data))
	}
	if ents, _ := os.ReadDir(s.partialDir()); len(ents) != 0 {
		t.Fatalf("partial download left behind: %v", ents)
	}
}

func TestFetch(t *testing.T) {
	noLeaks(t)
	data := randomBytes(5<<20, 10)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)

	var mu sync.Mutex
	var seen [][2]int64
	err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, func(done, total int64) {
		mu.Lock()
		seen = append(seen, [2]int64{done, total})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if got := a.requests(); !slices.Equal(got, []int64{0}) {
		t.Fatalf("requests at offsets %v, want one from 0", got)
	}
	size := int64(len(data))
	if len(seen) < 2 || seen[0] != [2]int64{0, size} || seen[len(seen)-1] != [2]int64{size, size} {
		t.Fatalf("progress went %v … %v; want from 0 to %d of %d", seen[0], seen[len(seen)-1], size, size)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i][0] < seen[i-1][0] {
			t.Fatalf("progress went backwards: %v then %v", seen[i-1], seen[i])
		}
	}

	// A second fetch of what the store holds asks nobody.
	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	if a.streams() != 1 {
		t.Fatalf("a fetch of an object already stored opened %d streams", a.streams()-1)
	}
}

func TestFetchSkipsAPeerWithoutIt(t *testing.T) {
	noLeaks(t)
	data := randomBytes(300<<10, 11)
	src, d := holding(t, data)
	empty, _ := holding(t, nil)
	net := newTestNet(t)
	without, with := net.addPeer(empty), net.addPeer(src)
	dst, _ := holding(t, nil)

	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{without.key, with.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if !slices.Equal(without.requests(), []int64{0}) || !slices.Equal(with.requests(), []int64{0}) {
		t.Fatalf("requests: %v to the peer without it, %v to the one with it; want one each from 0", without.requests(), with.requests())
	}
}

func TestFetchNobodyHasIt(t *testing.T) {
	noLeaks(t)
	empty, _ := holding(t, nil)
	net := newTestNet(t)
	a, b := net.addPeer(empty), net.addPeer(empty)
	dst, _ := holding(t, nil)
	d := oplog.Digest{1, 2, 3}

	err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key, b.key}, testMax, nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch that nobody can serve: %v, want ErrNotFound", err)
	}
	var fe *FetchError
	if !errors.As(err, &fe) || !slices.Equal(fe.Peers, []oplog.Key{a.key, b.key}) {
		t.Fatalf("error %v does not name both peers", err)
	}
	if err := Fetch(fetchCtx(t), net, dst, d, nil, testMax, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch with no peers: %v, want ErrNotFound", err)
	}
	if dst.Has(d) {
		t.Fatal("stored something nobody had")
	}
}

func TestFetchResumesABrokenStream(t *testing.T) {
	noLeaks(t)
	data := randomBytes(5<<20, 12)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	const n = 1<<20 + 12345
	a.cuts = []int64{n} // the first response ends after n bytes of body
	dst, _ := holding(t, nil)

	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if got := a.requests(); !slices.Equal(got, []int64{0, n}) {
		t.Fatalf("requests at offsets %v, want 0 then %d (resumed where the stream broke)", got, n)
	}
}

func TestFetchResumesOnAnotherPeerAfterAFailedFetch(t *testing.T) {
	noLeaks(t)
	data := randomBytes(2<<20, 13)
	src, d := holding(t, data)
	net := newTestNet(t)
	a, b := net.addPeer(src), net.addPeer(src)
	const n = 700_001
	a.cuts = []int64{n}
	dstDir := t.TempDir()
	dst := openStore(t, dstDir)

	// a's stream breaks after n bytes and a goes away before the retry:
	// the fetch fails and keeps what it has.
	var once sync.Once
	err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, func(done, total int64) {
		if done >= n {
			once.Do(func() { a.setDown(true) })
		}
	})
	if err == nil {
		t.Fatal("fetch from a peer that broke and went away succeeded")
	}
	if dst.Has(d) {
		t.Fatal("half an object stored")
	}

	// After a restart, b is asked for the rest only.
	dst = openStore(t, dstDir)
	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key, b.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if got := b.requests(); !slices.Equal(got, []int64{n}) {
		t.Fatalf("requests to the second peer at offsets %v, want one from %d", got, n)
	}
}

// lying returns a store that holds other bytes under d's name.
func lying(t *testing.T, d oplog.Digest, bytes []byte) *Store {
	t.Helper()
	s := openStore(t, t.TempDir())
	p := s.path(d)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFetchRefusesALyingPeer(t *testing.T) {
	noLeaks(t)
	data := randomBytes(1<<20, 14)
	src, d := holding(t, data)
	fake := slices.Clone(data)
	fake[500_000] ^= 1
	net := newTestNet(t)
	liar, honest := net.addPeer(lying(t, d, fake)), net.addPeer(src)

	// Only the liar: nothing is stored, not even the partial.
	dst, _ := holding(t, nil)
	err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{liar.key}, testMax, nil)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("fetch from a liar: %v, want ErrDigestMismatch", err)
	}
	if dst.Has(d) {
		t.Fatal("the liar's bytes were stored")
	}
	if ents, _ := os.ReadDir(dst.partialDir()); len(ents) != 0 {
		t.Fatalf("the liar's bytes were kept to resume from: %v", ents)
	}

	// The liar, then an honest peer: the honest one starts from zero.
	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{liar.key, honest.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if !slices.Equal(liar.requests(), []int64{0, 0}) || !slices.Equal(honest.requests(), []int64{0}) {
		t.Fatalf("requests: %v to the liar, %v to the honest peer; want one each from 0 per fetch", liar.requests(), honest.requests())
	}
}

func TestFetchRetriesAPeerFromZeroAfterMixedBytes(t *testing.T) {
	noLeaks(t)
	data := randomBytes(1<<20, 15)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)

	// A download left by an earlier attempt whose bytes were wrong.
	p, err := dst.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(make([]byte, 1000))
	p.Close()

	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if got := a.requests(); !slices.Equal(got, []int64{1000, 0}) {
		t.Fatalf("requests at offsets %v, want 1000 (resumed) then 0 (after the mismatch)", got)
	}
}

func TestFetchDiscardsADownloadLongerThanTheObject(t *testing.T) {
	noLeaks(t)
	data := randomBytes(10_000, 16)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)
	p, err := dst.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(make([]byte, 20_000))
	p.Close()

	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, d, data)
	if got := a.requests(); !slices.Equal(got, []int64{20_000, 0}) {
		t.Fatalf("requests at offsets %v, want 20000 then 0", got)
	}
}

func TestFetchEnforcesMaxSize(t *testing.T) {
	noLeaks(t)
	data := randomBytes(2<<20, 17)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)

	err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, int64(len(data))-1, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fetch over the limit: %v, want ErrTooLarge", err)
	}
	if dst.Has(d) {
		t.Fatal("stored an object over the limit")
	}
	p, err := dst.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 0 {
		t.Fatalf("%d bytes of an object over the limit were downloaded", p.Len())
	}
	p.Close()

	if err := Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, int64(len(data)), nil); err != nil {
		t.Fatalf("fetch at exactly the limit: %v", err)
	}
}

func TestFetchOfOneDigestRunsOnce(t *testing.T) {
	noLeaks(t)
	data := randomBytes(4<<20, 18)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = Fetch(fetchCtx(t), net, dst, d, []oplog.Key{a.key}, testMax, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	assertHolds(t, dst, d, data)
	if got := a.requests(); len(got) != 1 {
		t.Fatalf("four concurrent fetches of one digest made %d requests, want 1", len(got))
	}
}

func TestFetchStopsWithItsContext(t *testing.T) {
	noLeaks(t)
	data := randomBytes(8<<20, 19)
	src, d := holding(t, data)
	net := newTestNet(t)
	a := net.addPeer(src)
	dst, _ := holding(t, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Fetch(ctx, net, dst, d, []oplog.Key{a.key}, testMax, func(done, total int64) {
		if done > 1<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch whose context ended: %v, want context.Canceled", err)
	}
	p, err := dst.Partial(d)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Len() <= 1<<20 || p.Len() >= int64(len(data)) {
		t.Fatalf("kept %d bytes to resume from; want what arrived before the cancel", p.Len())
	}
}

func TestServeRefusesAMalformedRequest(t *testing.T) {
	noLeaks(t)
	src, _ := holding(t, []byte("x"))
	net := newTestNet(t)
	a := net.addPeer(src)

	st, err := net.OpenStream(fetchCtx(t), a.key, netx.StreamBlob)
	if err != nil {
		t.Fatal(err)
	}
	bad := request{digest: sha256.Sum256([]byte("x"))}.encode()
	bad[0] = 9 // a version from the future
	st.Write(bad)
	st.Close()
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := readResponse(st); err == nil {
		t.Fatal("server answered a malformed request")
	}
}
