// Package rawio does the system calls of non-blocking socket I/O without
// telling Go's scheduler about them.
//
// A read or write of a socket owned by Go's network poller never blocks
// in the kernel (the descriptor is non-blocking; when it would block, the
// goroutine waits in the poller instead). Yet net.Conn makes every such
// call through syscall.Syscall, which marks the thread as in a system call
// for the scheduler: when the call lasts more than 20 us (copying 64 KiB
// or more, as a 1 MiB NBD write or P_DATA does), the runtime's monitor
// thread (sysmon) hands the goroutine's P to another thread, which must be
// woken, and the caller must find a P again when it returns; and a monitor
// that keeps finding such calls polls every 20 us instead of sleeping.
// On the 2-CPU VM this project is measured on, that churn was ~20 % of
// both daemons' CPU under 1 MiB writes (bench/RESULTS.md, section 3).
// Conn makes the same calls with syscall.RawSyscall: the thread keeps its
// P for the few microseconds to a fraction of a millisecond the copy
// takes, as it would for any other work.
//
// Only calls that cannot block go this way: reads and writes of a
// non-blocking socket. Waiting for data or room still parks the goroutine
// in the poller (syscall.RawConn), so deadlines and Close work as for any
// net.Conn.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// IOVMax is Linux's IOV_MAX: the most pieces one writev takes. A write of
// more pieces is made in several calls; callers that gather a batch
// (the driver's socket writer) stop there too.
const IOVMax = 1024

// Conn is a net.Conn whose Read, Write, WriteBuffers and TryWriteBuffers
// make raw system calls. One goroutine may read while another writes;
// reads (and writes) must not overlap each other. Deadlines, Close and
// addresses are the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn
	r  call // the reader's
	w  call // the writer's
}

// call is one side's system call in progress, set up once so that a call
// allocates nothing (RawConn takes a func; a closure per call would
// escape).
type call struct {
	p    []byte   // read into
	iov  [][]byte // write from (consumed as written)
	base [][]byte // iov's array, kept between calls
	one  [1][]byte
	vecs []iovec // writev's array, kept between calls
	n    int
	err  error
	wait bool // wait for the socket when it has no data or room
	fn   func(fd uintptr) bool
}

// Wrap returns c as a *Conn when it is a stream socket whose descriptor
// Go's poller owns (a *net.TCPConn, or a *net.UnixConn of SOCK_STREAM) on
// a system where raw calls are implemented (Linux), and c itself
// otherwise (elsewhere the driver writes every packet from its writer
// goroutine and the NBD server every reply from its writer).
func Wrap(c net.Conn) net.Conn {
	if !implemented {
		return c
	}
	var sc syscall.Conn
	switch c := c.(type) {
	case *Conn:
		return c
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c // stream or not: checked below
	default:
		// Other types (a datagram socket, a test's fault injector
		// embedding a TCPConn) keep their own Read and Write.
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil || !isStream(raw) {
		return c
	}
	rc := &Conn{Conn: c, rc: raw}
	rc.r.fn = func(fd uintptr) bool {
		for {
			n, err := read(fd, rc.r.p)
			switch err {
			case nil:
				rc.r.n = n
				if n == 0 {
					rc.r.err = io.EOF
				}
				return true
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				rc.r.err = err
				return true
			}
		}
	}
	rc.w.fn = func(fd uintptr) bool {
		for len(rc.w.iov) > 0 {
			n, err := writev(fd, rc.w.iov, &rc.w.vecs)
			switch err {
			case nil:
				rc.w.n += n
				consume(&rc.w.iov, n)
				if n == 0 && len(rc.w.iov) > 0 {
					rc.w.err = io.ErrShortWrite // a stream socket took nothing
					return true
				}
			case syscall.EINTR:
			case syscall.EAGAIN:
				return !rc.w.wait
			default:
				rc.w.err = err
				return true
			}
			if !rc.w.wait {
				return true
			}
		}
		return true
	}
	return rc
}

// Read reads what the socket has, waiting for at least one byte.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.r.p, c.r.n, c.r.err = p, 0, nil
	err := c.rc.Read(c.r.fn)
	n, rerr := c.r.n, c.r.err
	c.r.p, c.r.err = nil, nil
	if err != nil {
		return 0, renameOp(err, "read")
	}
	if rerr != nil && rerr != io.EOF {
		rerr = c.opError("read", rerr)
	}
	return n, rerr
}

// renameOp names the poller's errors (a deadline, Close) as net.Conn's
// Read and Write do: RawConn calls its operations "raw-read" and
// "raw-write".
func renameOp(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}

// opError dresses a failed system call as net.Conn's errors are (the
// poller's own errors, a deadline or Close, come from RawConn already
// dressed).
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(),
		Err: os.NewSyscallError(op, err)}
}

// Write writes all of p, waiting for room.
func (c *Conn) Write(p []byte) (int, error) {
	c.w.one[0] = p
	n, err := c.WriteBuffers(c.w.one[:])
	c.w.one[0] = nil
	return int(n), err
}

// WriteBuffers writes all of v with as few writev calls as the socket
// allows, waiting for room. v itself is not changed.
func (c *Conn) WriteBuffers(v [][]byte) (int64, error) {
	n, err := c.write(v, true)
	return int64(n), err
}

// TryWriteBuffers makes one writev attempt and returns what the socket
// took: n may be short, even 0 (the socket is full); err is set only when
// the connection failed. v itself is not changed.
func (c *Conn) TryWriteBuffers(v [][]byte) (int, error) {
	return c.write(v, false)
}

func (c *Conn) write(v [][]byte, wait bool) (int, error) {
	c.w.base = append(c.w.base[:0], v...)
	c.w.iov = c.w.base
	c.w.n, c.w.err, c.w.wait = 0, nil, wait
	err := c.rc.Write(c.w.fn)
	n, werr := c.w.n, c.w.err
	clear(c.w.base) // do not pin the caller's buffers
	c.w.iov, c.w.err = nil, nil
	if err != nil {
		return n, renameOp(err, "write")
	}
	if werr != nil {
		werr = c.opError("write", werr)
	}
	return n, werr
}

// consume drops the first n bytes of *v.
func consume(v *[][]byte, n int) {
	b := *v
	for len(b) > 0 && n >= len(b[0]) {
		n -= len(b[0])
		b[0] = nil
		b = b[1:]
	}
	if len(b) > 0 && n > 0 {
		b[0] = b[0][n:]
	}
	*v = b
}

// WriteBuffers writes all of v to w: with writev on a *Conn, and
// otherwise through net.Buffers (writev where w is a net connection).
func WriteBuffers(w io.Writer, v [][]byte) (int64, error) {
	if c, ok := w.(*Conn); ok {
		return c.WriteBuffers(v)
	}
	b := net.Buffers(v)
	return b.WriteTo(w)
}
