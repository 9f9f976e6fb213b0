package cas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/oplog"
)

// Each benchmark stands beside its floor: the same work done by the
// simplest code that could do it, with none of the store's or protocol's
// guarantees. The gap is what those guarantees cost.

// BenchmarkPut64MiB: stream 64 MiB into the store (hash, temp file, fsync,
// rename).
func BenchmarkPut64MiB(b *testing.B) {
	data := randomBytes(64<<20, 40)
	s := openStore(b, b.TempDir())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d, _, err := s.Put(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Remove(d)
		b.StartTimer()
	}
}

// BenchmarkFloorWriteFile64MiB: os.WriteFile of the same bytes and their
// SHA-256, without a temp file, an fsync or a rename.
func BenchmarkFloorWriteFile64MiB(b *testing.B) {
	data := randomBytes(64<<20, 40)
	path := filepath.Join(b.TempDir(), "floor")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		_ = sha256.Sum256(data)
		b.StopTimer()
		os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkFetch16MiB: fetch 16 MiB from a peer over loopback QUIC into
// the store (request, header, body, hash, fsync, rename).
func BenchmarkFetch16MiB(b *testing.B) {
	data := randomBytes(16<<20, 41)
	src, d := holding(b, data)
	net := newTestNet(b)
	a := net.addPeer(src)
	dst := openStore(b, b.TempDir())
	peers := []oplog.Key{a.key}
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Fetch(ctx, net, dst, d, peers, testMax, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		dst.Remove(d)
		b.StartTimer()
	}
}

// BenchmarkFloorQUICStream16MiB: one bare quic-go stream carrying 16 MiB
// from memory to io.Discard over the same loopback connection setup.
func BenchmarkFloorQUICStream16MiB(b *testing.B) {
	data := randomBytes(16<<20, 41)
	_, srvTLS, cliTLS := testTLS(b)
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, testQUIC)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			var t [1]byte
			if _, err := io.ReadFull(st, t[:]); err != nil {
				return
			}
			st.Write(data)
			st.Close()
		}
	})
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), cliTLS, testQUIC)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		st.Write([]byte{1})
		st.Close()
		n, err := io.Copy(io.Discard, st)
		if err != nil || n != int64(len(data)) {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}
