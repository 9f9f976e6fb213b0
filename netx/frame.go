package netx

import (
	"bufio"
	"bytes"
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

// appendFrame appends payload to b as one frame, so that a small message
// goes out in a single write.
func appendFrame(b, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// readFrame reads one frame of at most limit bytes. It returns io.EOF only
// at a clean end between frames, ErrFrame when the peer broke the framing
// (a frame cut short, a length over the limit or malformed), and the
// stream's own error when the stream failed (the link closed, a reset, a
// deadline): that is no fault of the peer's.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: stream ended inside a frame length", ErrFrame)
	case errors.Is(err, errVarintOverflow):
		return nil, fmt.Errorf("%w: frame length is not a varint", ErrFrame)
	default:
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrame, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended inside a %d-byte frame", ErrFrame, n)
		}
		return nil, err
	}
	return b, nil
}

// errVarintOverflow is the error binary.ReadUvarint gives for a varint
// longer than 64 bits (the package does not export it).
var errVarintOverflow = func() error {
	_, err := binary.ReadUvarint(bytes.NewReader(bytes.Repeat([]byte{0xff}, 11)))
	return err
}()
