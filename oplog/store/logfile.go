package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"github.com/pln-mesh/pln/oplog"
	bolt "go.etcd.io/bbolt"
)

// A log file carries ops between machines and tools (pln log export/import,
// offline replays). It is a CBOR sequence (RFC 8742): a header map
//
//	{"format": "pln-log/1", "cluster": bstr 32, "node": bstr 32, "count": uint}
//
// followed by exactly count ops, each a CBOR byte string holding the op's
// canonical bytes, in the writer's arrival order. Each op frames itself, so a
// reader that meets one damaged op can skip it and carry on; the count catches
// a file cut short between two ops.
const (
	logFormat       = "pln-log/1"
	logFormatPrefix = "pln-log/"
	logVersion      = 1
	// maxFrameBytes bounds one op frame, CBOR head included. The reader refuses
	// a bigger frame before allocating for it.
	maxFrameBytes = oplog.MaxOpBytes + 16
	// maxHeaderBytes bounds the header map.
	maxHeaderBytes = 1024
)

// ErrBadLog is wrapped by every LogReader error about the file's contents.
var ErrBadLog = errors.New("bad pln log file")

// LogHeader describes a log file.
type LogHeader struct {
	Cluster oplog.ClusterID // the cluster whose ops these are
	Node    oplog.Key       // whose log this is; zero if not one node's
	Count   uint64          // how many ops follow the header
}

// logHeaderWire is LogHeader as encoded.
type logHeaderWire struct {
	Format  string  `cbor:"format"`
	Cluster []byte  `cbor:"cluster"`
	Node    []byte  `cbor:"node"`
	Count   *uint64 `cbor:"count"` // a pointer, so a missing count is an error, not zero
}

var logEnc, logDec = func() (cbor.EncMode, cbor.DecMode) {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      16,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return em, dm
}()

// LogWriter writes a log file: NewLogWriter writes the header, Write adds one
// op, Close checks that exactly h.Count ops were written and flushes. The
// count comes first so a reader can tell a complete file from a cut one; a
// writer that does not know it in advance should count first (Export does).
type LogWriter struct {
	bw    *bufio.Writer
	want  uint64
	wrote uint64
	err   error
}

// NewLogWriter writes the header of a log of h.Count ops to w.
func NewLogWriter(w io.Writer, h LogHeader) (*LogWriter, error) {
	hdr, err := logEnc.Marshal(logHeaderWire{Format: logFormat, Cluster: h.Cluster[:], Node: h.Node[:], Count: &h.Count})
	if err != nil {
		return nil, fmt.Errorf("write log header: %w", err)
	}
	lw := &LogWriter{bw: bufio.NewWriterSize(w, 64<<10), want: h.Count}
	if _, err := lw.bw.Write(hdr); err != nil {
		return nil, fmt.Errorf("write log header: %w", err)
	}
	return lw, nil
}

// Write appends one op.
func (lw *LogWriter) Write(op *oplog.Op) error { return lw.writeRaw(op.Bytes()) }

func (lw *LogWriter) writeRaw(raw []byte) error {
	if lw.err != nil {
		return lw.err
	}
	if lw.wrote == lw.want {
		lw.err = fmt.Errorf("write log: more than the %d ops the header announced", lw.want)
		return lw.err
	}
	var head [9]byte
	if _, err := lw.bw.Write(bstrHead(head[:0], len(raw))); err != nil {
		lw.err = fmt.Errorf("write log: %w", err)
		return lw.err
	}
	if _, err := lw.bw.Write(raw); err != nil {
		lw.err = fmt.Errorf("write log: %w", err)
		return lw.err
	}
	lw.wrote++
	return nil
}

// Close flushes the log. It does not close the underlying writer.
func (lw *LogWriter) Close() error {
	if lw.err != nil {
		return lw.err
	}
	if lw.wrote != lw.want {
		return fmt.Errorf("write log: wrote %d ops but the header announced %d", lw.wrote, lw.want)
	}
	if err := lw.bw.Flush(); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// bstrHead appends the CBOR head of a byte string of n bytes, in its shortest
// form.
func bstrHead(b []byte, n int) []byte {
	const major = 2 << 5
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case uint64(n) <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, major|27), uint64(n))
	}
}

// Export writes every stored op to w as a log file in arrival order, with h's
// cluster and node and the true count, and returns how many ops it wrote.
// Each op is decoded on the way out, so a damaged store value fails the export
// (ErrCorrupt, naming the seq) rather than producing a bad log. The export is
// one read transaction, a consistent snapshot; while it runs, a commit that
// needs to grow the file waits for it.
func (s *Store) Export(w io.Writer, h LogHeader) (int, error) {
	var n int
	err := s.view(func(tx *bolt.Tx) error {
		count, err := s.counter(tx, keyOps)
		if err != nil {
			return err
		}
		h.Count = count
		lw, err := NewLogWriter(w, h)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketArrival).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq, err := s.seq(k, "arrival")
			if err != nil {
				return err
			}
			if _, err := s.decode(seq, v); err != nil {
				return err
			}
			if n == int(count) {
				return s.corrupt("more ops in arrival than the %d counted", count)
			}
			if err := lw.writeRaw(v); err != nil {
				return err
			}
			n++
		}
		if n != int(count) {
			return s.corrupt("%d ops in arrival, %d counted", n, count)
		}
		return lw.Close()
	})
	return n, err
}

// LogError is a problem with a log file's contents. It wraps ErrBadLog, and
// io.ErrUnexpectedEOF when the file is cut short.
type LogError struct {
	Pos    int    // 1-based op number the problem is in; 0 for the header
	Offset int64  // byte offset in the file where the problem starts
	Msg    string // what is wrong, for a person
	Err    error  // underlying cause, or nil
}

func (e *LogError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *LogError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrBadLog, e.Err}
	}
	return []error{ErrBadLog}
}

// LogReader reads a log file as a stream, one op frame at a time; it never
// holds more than one frame in memory. It checks the framing and the count,
// not the ops: the caller decodes and verifies each one, and can skip a bad op
// and go on, since the next frame is still found.
type LogReader struct {
	br  *bufio.Reader
	h   LogHeader
	off int64 // bytes consumed so far
	pos int   // ops returned so far
	err error // sticky: once framing is lost, nothing after it can be trusted
}

// NewLogReader reads and checks the header of the log in r.
func NewLogReader(r io.Reader) (*LogReader, error) {
	lr := &LogReader{br: bufio.NewReaderSize(r, max(maxHeaderBytes, 4096))}
	peek, perr := lr.br.Peek(maxHeaderBytes)
	if len(peek) == 0 {
		if perr == io.EOF {
			return nil, &LogError{Msg: "not a pln log file: the file is empty"}
		}
		return nil, &LogError{Msg: "read log header", Err: perr}
	}
	if peek[0]>>5 != 5 { // major type 5: map
		return nil, &LogError{Msg: fmt.Sprintf("not a pln log file: it does not start with a header map (first byte 0x%02x)", peek[0])}
	}
	// The format first, alone: a newer format may change the other fields,
	// and deserves "upgrade pln" rather than "unreadable".
	var f struct {
		Format string `cbor:"format"`
	}
	if _, err := logDec.UnmarshalFirst(peek, &f); err == nil && f.Format != logFormat {
		return nil, &LogError{Msg: formatProblem(f.Format)}
	}
	var w logHeaderWire
	rest, err := logDec.UnmarshalFirst(peek, &w)
	if err != nil {
		if perr != nil && len(peek) < maxHeaderBytes && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &LogError{Msg: "pln log file cut short inside its header", Err: io.ErrUnexpectedEOF}
		}
		return nil, &LogError{Msg: fmt.Sprintf("not a pln log file: unreadable header (%v)", err)}
	}
	if w.Format != logFormat {
		return nil, &LogError{Msg: formatProblem(w.Format)}
	}
	if len(w.Cluster) != len(oplog.ClusterID{}) || len(w.Node) != len(oplog.Key{}) {
		return nil, &LogError{Msg: fmt.Sprintf("not a pln log file: header cluster is %d bytes and node %d, want %d and %d",
			len(w.Cluster), len(w.Node), len(oplog.ClusterID{}), len(oplog.Key{}))}
	}
	if w.Count == nil {
		return nil, &LogError{Msg: "not a pln log file: header has no count"}
	}
	copy(lr.h.Cluster[:], w.Cluster)
	copy(lr.h.Node[:], w.Node)
	lr.h.Count = *w.Count
	n := len(peek) - len(rest)
	lr.br.Discard(n) // cannot fail: the bytes are buffered
	lr.off = int64(n)
	return lr, nil
}

func formatProblem(f string) string {
	if v, ok := strings.CutPrefix(f, logFormatPrefix); ok {
		if n, err := strconv.Atoi(v); err == nil && n > logVersion {
			return fmt.Sprintf("log format %s is newer than this build (it reads %s); upgrade pln", f, logFormat)
		}
	}
	return fmt.Sprintf("not a pln log file: format %q, want %q", f, logFormat)
}

// Header returns the log's header.
func (lr *LogReader) Header() LogHeader { return lr.h }

// Offset returns how many bytes of the file have been consumed.
func (lr *LogReader) Offset() int64 { return lr.off }

// Next returns the next op's raw bytes and its 1-based position in the file.
// raw is the caller's to keep. At the end of a complete log it returns io.EOF.
// A file cut short, a frame that is not a byte string or is larger than an op
// can be, or data after the last op, gives a *LogError naming the position
// and byte offset; the reader stops there.
func (lr *LogReader) Next() (pos int, raw []byte, err error) {
	if lr.err != nil {
		return 0, nil, lr.err
	}
	pos, raw, err = lr.next()
	if err != nil {
		lr.err = err
	}
	return pos, raw, err
}

func (lr *LogReader) next() (int, []byte, error) {
	pos, start := lr.pos+1, lr.off
	where := func(msg string, args ...any) string {
		return fmt.Sprintf("pln log damaged at byte %d (op %d of %d): %s", start, pos, lr.h.Count, fmt.Sprintf(msg, args...))
	}
	if uint64(lr.pos) == lr.h.Count {
		if _, err := lr.br.ReadByte(); err == io.EOF {
			return 0, nil, io.EOF
		} else if err != nil {
			return 0, nil, &LogError{Pos: pos, Offset: start, Msg: "read log", Err: err}
		}
		return 0, nil, &LogError{Pos: pos, Offset: start, Msg: fmt.Sprintf("pln log has data at byte %d after its %d ops", start, lr.h.Count)}
	}

	b, err := lr.br.ReadByte()
	if err == io.EOF {
		return 0, nil, &LogError{Pos: pos, Offset: start, Err: io.ErrUnexpectedEOF,
			Msg: fmt.Sprintf("pln log cut short at byte %d: it ends after %d of %d ops", start, lr.pos, lr.h.Count)}
	} else if err != nil {
		return 0, nil, &LogError{Pos: pos, Offset: start, Msg: "read log", Err: err}
	}
	if major := b >> 5; major != 2 {
		return 0, nil, &LogError{Pos: pos, Offset: start, Msg: where("frame is CBOR major type %d, not a byte string", major)}
	}
	var n uint64
	switch info := b & 31; {
	case info < 24:
		n = uint64(info)
	case info <= 27:
		var buf [8]byte
		w := 1 << (info - 24)
		if _, err := io.ReadFull(lr.br, buf[8-w:]); err != nil {
			return 0, nil, lr.short(pos, start, where("frame length cut short"), err)
		}
		n = binary.BigEndian.Uint64(buf[:])
	default:
		return 0, nil, &LogError{Pos: pos, Offset: start, Msg: where("frame has an indefinite or reserved length (0x%02x)", b)}
	}
	head := headLen(b)
	if n > maxFrameBytes-uint64(head) {
		return 0, nil, &LogError{Pos: pos, Offset: start, Msg: where("frame of %d bytes is larger than any op can be (limit %d)", n, oplog.MaxOpBytes)}
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(lr.br, raw); err != nil {
		return 0, nil, lr.short(pos, start, where("op cut short"), err)
	}
	lr.pos = pos
	lr.off = start + int64(head) + int64(n)
	return pos, raw, nil
}

// headLen is the length of a CBOR head whose first byte is b (info ≤ 27).
func headLen(b byte) int {
	if info := b & 31; info >= 24 {
		return 1 + 1<<(info-24)
	}
	return 1
}

// short reports a read that ended inside a frame.
func (lr *LogReader) short(pos int, start int64, msg string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = io.ErrUnexpectedEOF
	}
	return &LogError{Pos: pos, Offset: start, Msg: msg, Err: err}
}
