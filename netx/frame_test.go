package netx

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

func TestFrameRoundTrip(t *testing.T) {
	payloads := [][]byte{nil, {0}, []byte("hello"), bytes.Repeat([]byte{0xa5}, 127), bytes.Repeat([]byte{1}, 128), bytes.Repeat([]byte{2}, 70_000)}
	var buf bytes.Buffer
	for _, p := range payloads {
		if err := writeFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, want := range payloads {
		got, err := readFrame(r, 1<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: read %d bytes, wrote %d", i, len(got), len(want))
		}
	}
	if _, err := readFrame(r, 1<<20); err != io.EOF {
		t.Fatalf("after the last frame: %v; want io.EOF", err)
	}
}

func TestFrameLimit(t *testing.T) {
	var buf bytes.Buffer
	writeFrame(&buf, make([]byte, 100))
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(buf.Bytes())), 100); err != nil {
		t.Fatalf("a frame of exactly the limit: %v", err)
	}
	_, err := readFrame(bufio.NewReader(bytes.NewReader(buf.Bytes())), 99)
	if !errors.Is(err, ErrFrame) {
		t.Fatalf("a frame one byte over the limit: %v; want ErrFrame", err)
	}
}

// A peer that announces a huge frame and sends nothing more must not make
// the reader allocate for it: the limit is checked before the buffer is made.
func TestFrameLimitBeforeAllocation(t *testing.T) {
	for _, n := range []uint64{1 << 30, 1 << 40, 1<<64 - 1} {
		hdr := binary.AppendUvarint(nil, n)
		var err error
		allocated := bytesAllocated(func() {
			_, err = readFrame(bufio.NewReaderSize(bytes.NewReader(hdr), 16), 1<<20)
		})
		if !errors.Is(err, ErrFrame) {
			t.Fatalf("a %d-byte frame: %v; want ErrFrame", n, err)
		}
		if allocated > 64<<10 {
			t.Errorf("refusing a %d-byte frame allocated %d bytes", n, allocated)
		}
	}
}

// bytesAllocated is how many bytes f allocates on the heap.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestFrameTruncated(t *testing.T) {
	var buf bytes.Buffer
	writeFrame(&buf, []byte("a frame of some length"))
	full := buf.Bytes()
	cases := map[string][]byte{
		"inside the length":  {0x80},
		"inside the payload": full[:len(full)-3],
		"right after length": full[:1],
		"overlong length":    bytes.Repeat([]byte{0xff}, 11),
	}
	for name, in := range cases {
		_, err := readFrame(bufio.NewReader(bytes.NewReader(in)), 1<<20)
		if !errors.Is(err, ErrFrame) || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v; want ErrFrame, not io.EOF", name, err)
		}
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(nil)), 1<<20); err != io.EOF {
		t.Errorf("an empty stream: %v; want io.EOF", err)
	}
}

// A stream that fails (the link closed, the peer reset the stream, a
// deadline passed) is not a peer that sent a bad frame: the error must come
// through as itself. Wrapped in ErrFrame, every link that closes logs
// "disconnecting peer that broke the protocol", and a sync that times out
// drops a healthy link.
func TestFrameReadErrorsAreNotFramingErrors(t *testing.T) {
	lost := errors.New("link lost")
	inputs := map[string]io.Reader{
		"before a frame":     iotest.ErrReader(lost),
		"inside the length":  io.MultiReader(bytes.NewReader([]byte{0x80}), iotest.ErrReader(lost)),
		"inside the payload": io.MultiReader(bytes.NewReader([]byte{10, 1, 2}), iotest.ErrReader(lost)),
	}
	for name, in := range inputs {
		_, err := readFrame(bufio.NewReader(in), 100)
		if !errors.Is(err, lost) || errors.Is(err, ErrFrame) {
			t.Errorf("%s: %v; want the stream's own error, not ErrFrame", name, err)
		}
	}
}
