package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pln-mesh/pln/netx"
	"github.com/pln-mesh/pln/oplog"
)

// The blob protocol: one netx.StreamBlob stream per request. After the
// stream's type byte, the client sends a fixed 41-byte request and closes
// its side:
//
//	version  1 byte   (1)
//	digest  32 bytes
//	offset   8 bytes  big-endian: where to start, the length of what the
//	                  client already holds
//
// The server reads exactly that much, never more, and answers with a fixed
// 10-byte header:
//
//	version  1 byte   (1)
//	status   1 byte   ok, not found, failed or beyond the end
//	size     8 bytes  big-endian: the object's whole size (ok, beyond the
//	                  end); 0 otherwise
//
// On ok, the raw bytes from offset to size follow, and the stream ends.
// There is no framing inside the body: its length is known from the
// header, so the client can refuse an object over its limit before a byte
// of it arrives and knows a short stream for what it is. On any other
// status the stream ends after the header.
const (
	wireVersion  = 1
	requestSize  = 1 + len(oplog.Digest{}) + 8
	responseSize = 1 + 1 + 8
)

// Response statuses.
const (
	statusOK        byte = 0
	statusNotFound  byte = 1 // the server does not hold the object
	statusFailed    byte = 2 // the server holds it but could not read it
	statusBeyondEnd byte = 3 // the offset is past the end: the client's partial is not a prefix
)

// Time limits on both ends of a transfer.
const (
	// requestTimeout bounds how long a server waits for a request.
	requestTimeout = 10 * time.Second
	// stallTimeout is the longest either end waits for the other to take
	// or give the next chunk of a transfer. A transfer may take as long as
	// it likes while it moves.
	stallTimeout = 30 * time.Second
)

// errBlobProtocol is wrapped by every error that means the peer broke the
// blob protocol.
var errBlobProtocol = errors.New("blob protocol violation")

// request is what a client asks for.
type request struct {
	digest oplog.Digest
	offset int64
}

func (q request) encode() []byte {
	b := make([]byte, 0, requestSize)
	b = append(b, wireVersion)
	b = append(b, q.digest[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(q.offset))
}

// readRequest reads one request, and not a byte more.
func readRequest(r io.Reader) (request, error) {
	var b [requestSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return request{}, fmt.Errorf("%w: request cut short", errBlobProtocol)
		}
		return request{}, err
	}
	if b[0] != wireVersion {
		return request{}, fmt.Errorf("%w: request version %d, want %d", errBlobProtocol, b[0], wireVersion)
	}
	var q request
	copy(q.digest[:], b[1:33])
	off := binary.BigEndian.Uint64(b[33:])
	if off > math.MaxInt64 {
		return request{}, fmt.Errorf("%w: offset %d", errBlobProtocol, off)
	}
	q.offset = int64(off)
	return q, nil
}

// response is the header a server answers with.
type response struct {
	status byte
	size   int64
}

func (h response) encode() []byte {
	b := make([]byte, 0, responseSize)
	b = append(b, wireVersion, h.status)
	return binary.BigEndian.AppendUint64(b, uint64(h.size))
}

// readResponse reads one response header, and not a byte more.
func readResponse(r io.Reader) (response, error) {
	var b [responseSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return response{}, fmt.Errorf("%w: answer cut short", errBlobProtocol)
		}
		return response{}, err
	}
	if b[0] != wireVersion {
		return response{}, fmt.Errorf("%w: answer version %d, want %d", errBlobProtocol, b[0], wireVersion)
	}
	h := response{status: b[1]}
	size := binary.BigEndian.Uint64(b[2:])
	switch {
	case h.status > statusBeyondEnd:
		return response{}, fmt.Errorf("%w: unknown status %d", errBlobProtocol, h.status)
	case size > math.MaxInt64:
		return response{}, fmt.Errorf("%w: size %d", errBlobProtocol, size)
	case size != 0 && (h.status == statusNotFound || h.status == statusFailed):
		return response{}, fmt.Errorf("%w: status %d with a size", errBlobProtocol, h.status)
	}
	h.size = int64(size)
	return h, nil
}

// stream is what serve needs of a *quic.Stream (tests wrap one to cut it).
type stream interface {
	io.Reader
	io.Writer
	Close() error
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Serve answers blob requests from s. The node registers it with
// mesh.Handle(netx.StreamBlob, cas.Serve(store)).
func Serve(s *Store) netx.StreamHandler {
	return func(ctx context.Context, _ oplog.Key, st *quic.Stream) { serve(ctx, s, st) }
}

// serve answers one request. Errors end the stream and are no concern of
// this node's: the client sees them and tries another peer.
func serve(ctx context.Context, s *Store, st stream) {
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead(0)
		st.CancelWrite(0)
	})
	defer stop()

	st.SetReadDeadline(time.Now().Add(requestTimeout))
	q, err := readRequest(st)
	st.CancelRead(0) // nothing more may come, and nothing more is read
	if err != nil {
		st.CancelWrite(0)
		return
	}
	answer := func(h response) {
		st.SetWriteDeadline(time.Now().Add(stallTimeout))
		st.Write(h.encode())
		st.Close()
	}
	f, size, err := s.Open(q.digest)
	switch {
	case errors.Is(err, ErrNotFound):
		answer(response{status: statusNotFound})
		return
	case err != nil:
		answer(response{status: statusFailed})
		return
	}
	defer f.Close()
	if q.offset > size {
		answer(response{status: statusBeyondEnd, size: size})
		return
	}
	w := &stallWriter{st: st}
	if _, err := w.Write(response{status: statusOK, size: size}.encode()); err != nil {
		st.CancelWrite(0)
		return
	}
	if _, err := copyBuf(w, io.NewSectionReader(f, q.offset, size-q.offset)); err != nil {
		st.CancelWrite(0)
		return
	}
	st.Close()
}

// stallWriter gives each write stallTimeout to be taken, so that a client
// that stops reading cannot hold a server's goroutine for ever.
type stallWriter struct{ st stream }

func (w *stallWriter) Write(b []byte) (int, error) {
	w.st.SetWriteDeadline(time.Now().Add(stallTimeout))
	return w.st.Write(b)
}

// stallReader gives each read stallTimeout to bring something.
type stallReader struct{ st stream }

func (r *stallReader) Read(b []byte) (int, error) {
	r.st.SetReadDeadline(time.Now().Add(stallTimeout))
	return r.st.Read(b)
}
