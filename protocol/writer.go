package protocol

import (
	"fmt"
	"io"
	"net"
)

// Writer sends packets on one DRBD socket. It encodes header and fixed part
// into one reused buffer and hands that and the data payload to the socket
// in a single writev (net.Buffers), so a data block is never copied and
// common packets cost no allocation.
//
// A Writer is not safe for concurrent use: the driver serializes each
// socket's packets (DRBD holds the socket's mutex for the same reason: a
// packet must not be interleaved with another).
type Writer struct {
	w    io.Writer
	d    Dialect
	buf  []byte
	iov  [2][]byte
	bufs net.Buffers
}

// NewWriter returns a Writer on w (normally a *net.TCPConn, which gets one
// writev per packet; any io.Writer works) in the pre-agreement dialect.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, MaxHeaderSize, MaxHeaderSize+maxBody)}
}

// SetDialect switches the dialect for the packets written from now on:
// after P_CONNECTION_FEATURES (Agree) and when our integrity algorithm
// changes. An invalid dialect gives ErrDialect and changes nothing.
func (w *Writer) SetDialect(d Dialect) error {
	if err := d.validate(); err != nil {
		return err
	}
	w.d = d
	return nil
}

// Dialect returns the dialect in use.
func (w *Writer) Dialect() Dialect { return w.d }

// WriteMessage encodes m and writes it. A packet the wire cannot carry in
// this dialect gives ErrInvalidPacket or ErrDialect before anything is
// written; a write error is returned wrapped, and leaves the stream in an
// unknown state (drop the connection). The data payload is read, not kept:
// it may be reused when WriteMessage returns.
func (w *Writer) WriteMessage(m Message) error {
	h, buf, tail, err := encode(w.buf[:MaxHeaderSize], w.d, m)
	if err != nil {
		return err
	}
	w.iov[0] = buf[MaxHeaderSize-h.Format.Size():]
	w.iov[1] = tail
	w.bufs = w.iov[:1]
	if len(tail) > 0 {
		w.bufs = w.iov[:2]
	}
	_, err = w.bufs.WriteTo(w.w)
	w.iov[1] = nil // do not pin the caller's payload
	if err != nil {
		return fmt.Errorf("protocol: write %v: %w", h.Cmd, err)
	}
	return nil
}
