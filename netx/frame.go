package netx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Every stream carries frames: a uvarint length, then that many bytes. A
// frame longer than the stream's limit is refused before it is read, so a
// peer cannot make us allocate more than the limit.

// ErrFrame is wrapped by every framing error; a peer that causes one is
// disconnected.
var ErrFrame = errors.New("bad frame")

// writeFrame writes one frame.
func writeFrame(w io.Writer, payload []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame of at most limit bytes. It returns io.EOF only
// at a clean end between frames.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended inside a frame length", ErrFrame)
		}
		return nil, fmt.Errorf("%w: %v", ErrFrame, err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrame, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: stream ended inside a %d-byte frame", ErrFrame, n)
	}
	return b, nil
}
