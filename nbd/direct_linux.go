package nbd

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// directWriter makes single non-blocking writev attempts on a socket the
// runtime's poller owns (its descriptor is non-blocking), for replies
// written by the goroutine that ended their request.
type directWriter struct {
	rc  syscall.RawConn
	iov [][]byte
	n   int
	err error
	fn  func(fd uintptr) bool // built once: no allocation per attempt
}

// newDirectWriter returns nil when nc does not expose its descriptor.
func newDirectWriter(nc net.Conn) *directWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	d := &directWriter{rc: rc}
	d.fn = func(fd uintptr) bool {
		d.n, d.err = unix.Writev(int(fd), d.iov)
		return true // one attempt: never wait for room
	}
	return d
}

// writeOnce writes what the socket takes of b now, without waiting: n
// bytes (0 when it is full). err is set when the socket failed.
func (d *directWriter) writeOnce(b net.Buffers) (n int, err error) {
	d.iov, d.n, d.err = b, 0, nil
	if err := d.rc.Write(d.fn); err != nil {
		d.iov = nil
		return 0, err
	}
	d.iov = nil
	n, err = max(d.n, 0), d.err
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		err = nil
	}
	return n, err
}
