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
	out  net.Buffers // what Flush writes

	// Buffered packets (Buffer/Flush): headers copied into arena, data
	// payloads referenced, all sent with one writev by Flush.
	arena   []byte
	pending []pendingPacket
	// done is how many bytes of pending[0] a partial FlushSome already
	// wrote.
	done int
}

// pendingPacket is a buffered packet: its header and fixed part at
// arena[off:off+n], and the payload it references.
type pendingPacket struct {
	off, n int
	tail   []byte
}

// NewWriter returns a Writer on w (normally a *net.TCPConn, which gets one
// writev per packet, or a BuffersWriter; any io.Writer works) in the
// pre-agreement dialect.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, MaxHeaderSize, MaxHeaderSize+maxBody)}
}

// BuffersWriter is a writer with its own gather write (the driver's raw
// socket, rawio.Conn): the Writer hands it a packet's pieces at once
// instead of going through net.Buffers.
type BuffersWriter interface {
	// WriteBuffers writes all of v, or fails; v itself is not changed.
	WriteBuffers(v [][]byte) (int64, error)
}

// writeBufs writes all of *v to w.w in as few calls as it allows. v is a
// field of w (no allocation); net.Buffers.WriteTo consumes it.
func (w *Writer) writeBufs(v *net.Buffers) (int64, error) {
	if bw, ok := w.w.(BuffersWriter); ok {
		return bw.WriteBuffers(*v)
	}
	return v.WriteTo(w.w)
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
	_, err = w.writeBufs(&w.bufs)
	w.iov[1] = nil // do not pin the caller's payload
	if err != nil {
		return fmt.Errorf("protocol: write %v: %w", h.Cmd, err)
	}
	return nil
}

// Buffer encodes m and keeps it for the next Flush, so that a batch of
// packets costs one writev instead of one each (what TCP_CORK achieves
// for DRBD). Header and fixed part are copied; the data payload is only
// referenced and must stay untouched until Flush returns. Encoding errors
// come back at once and buffer nothing.
func (w *Writer) Buffer(m Message) error {
	h, buf, tail, err := encode(w.buf[:MaxHeaderSize], w.d, m)
	if err != nil {
		return err
	}
	hb := buf[MaxHeaderSize-h.Format.Size():]
	w.pending = append(w.pending, pendingPacket{off: len(w.arena), n: len(hb), tail: tail})
	w.arena = append(w.arena, hb...)
	return nil
}

// Buffered reports how many packets wait for Flush.
func (w *Writer) Buffered() int { return len(w.pending) }

// Flush writes every buffered packet, in order, with one writev (more if
// there are over IOV_MAX pieces), starting where a partial FlushSome
// stopped. A write error is returned wrapped and leaves the stream in an
// unknown state (drop the connection); the buffer is empty afterwards
// either way.
func (w *Writer) Flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	n := len(w.pending)
	w.out = w.iovecs(0) // consumed by WriteTo: not w.bufs, which keeps its capacity
	_, err := w.writeBufs(&w.out)
	w.out = nil
	w.reset()
	if err != nil {
		return fmt.Errorf("protocol: write %d buffered packets: %w", n, err)
	}
	return nil
}

// FlushSome hands the buffered packets to write once, as one vector of
// at most maxIov pieces (write is normally a writev on a non-blocking
// socket, which may take only a prefix). What write did not take stays
// buffered, in order, for the next FlushSome or Flush: the socket never
// sees a packet cut short by it. all reports that nothing is left. An
// error from write is returned wrapped and, like Flush's, leaves the
// stream in an unknown state; the buffer is empty afterwards.
//
// Payloads of packets not yet written stay referenced: the caller keeps
// them untouched until a later flush wrote them.
func (w *Writer) FlushSome(maxIov int, write func(iov [][]byte) (int, error)) (all bool, err error) {
	if len(w.pending) == 0 {
		return true, nil
	}
	iov := w.iovecs(maxIov)
	n, err := write(iov)
	clear(w.bufs)
	if err != nil {
		np := len(w.pending)
		w.reset()
		return false, fmt.Errorf("protocol: write %d buffered packets: %w", np, err)
	}
	// Drop what was written: whole packets, then part of the next.
	i := 0
	for ; i < len(w.pending) && n > 0; i++ {
		p := w.pending[i]
		left := p.n + len(p.tail) - w.done
		if n < left {
			w.done += n
			n = 0
			break
		}
		n -= left
		w.done = 0
	}
	if i == len(w.pending) {
		w.reset()
		return true, nil
	}
	// Move the rest to the front: the buffer keeps its capacity (no
	// allocation for the next packets).
	k := copy(w.pending, w.pending[i:])
	clear(w.pending[k:])
	w.pending = w.pending[:k]
	return false, nil
}

// iovecs builds the vector of what is buffered and not yet written, at
// most maxIov pieces (0: all) in w.bufs.
func (w *Writer) iovecs(maxIov int) net.Buffers {
	bufs := w.bufs[:0]
	skip := w.done
	for _, p := range w.pending {
		for _, b := range [2][]byte{w.arena[p.off : p.off+p.n], p.tail} {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			bufs = append(bufs, b[skip:])
			skip = 0
			if maxIov > 0 && len(bufs) == maxIov {
				w.bufs = bufs
				return bufs
			}
		}
	}
	w.bufs = bufs
	return bufs
}

// reset empties the buffer without pinning the callers' payloads.
func (w *Writer) reset() {
	clear(w.bufs)
	w.bufs = w.bufs[:0]
	clear(w.pending)
	w.pending = w.pending[:0]
	w.arena = w.arena[:0]
	w.done = 0
}
