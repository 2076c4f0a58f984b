package rawio_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/internal/rawio"
)

// pairs returns connected socket pairs of the kinds the daemons use: TCP
// on loopback (the DRBD sockets) and Unix (the NBD socket).
func pairs(t *testing.T) map[string][2]net.Conn {
	t.Helper()
	out := map[string][2]net.Conn{}
	for _, nw := range []string{"tcp", "unix"} {
		addr := "127.0.0.1:0"
		if nw == "unix" {
			addr = filepath.Join(t.TempDir(), "s")
		}
		ln, err := net.Listen(nw, addr)
		require.NoError(t, err)
		acc := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				acc <- nil
				return
			}
			acc <- c
		}()
		a, err := net.Dial(nw, ln.Addr().String())
		require.NoError(t, err)
		b := <-acc
		require.NotNil(t, b)
		ln.Close()
		t.Cleanup(func() { a.Close(); b.Close() })
		out[nw] = [2]net.Conn{a, b}
	}
	return out
}

func raw(t *testing.T, c net.Conn) *rawio.Conn {
	t.Helper()
	rc, ok := rawio.Wrap(c).(*rawio.Conn)
	require.True(t, ok, "a %T is a socket: Wrap must make it raw", c)
	require.Same(t, rc, rawio.Wrap(rc), "wrapping twice")
	return rc
}

// Many pieces of random sizes (some empty, more than IOV_MAX in one
// call) written with WriteBuffers while the peer reads with Read in
// random sizes: the stream is the pieces in order, and the caller's
// vector is left as it was.
func TestWriteBuffersAndRead(t *testing.T) {
	for nw, p := range pairs(t) {
		t.Run(nw, func(t *testing.T) {
			w, r := raw(t, p[0]), raw(t, p[1])
			rng := rand.New(rand.NewPCG(1, 2))
			var want []byte
			var v [][]byte
			for range 3000 {
				b := make([]byte, rng.IntN(4096))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				v = append(v, b)
				want = append(want, b...)
			}
			keep := append([][]byte(nil), v...)
			got := make(chan []byte, 1)
			go func() {
				var all []byte
				buf := make([]byte, 1<<20)
				for {
					n, err := r.Read(buf[:1+rng.IntN(len(buf)-1)])
					all = append(all, buf[:n]...)
					if err != nil {
						got <- all
						return
					}
				}
			}()
			n, err := w.WriteBuffers(v)
			require.NoError(t, err)
			require.Equal(t, int64(len(want)), n)
			m, err := w.Write([]byte("end"))
			require.NoError(t, err)
			require.Equal(t, 3, m)
			require.Equal(t, keep, v, "WriteBuffers changed the caller's vector")
			w.Close()
			all := <-got
			require.True(t, bytes.Equal(append(want, "end"...), all), "stream differs (%d vs %d bytes)", len(all), len(want)+3)
		})
	}
}

// TryWriteBuffers never waits: into a socket nobody reads it takes what
// fits and then 0 bytes without an error; once the peer read it all, the
// rest goes through.
func TestTryWriteBuffersDoesNotWait(t *testing.T) {
	for nw, p := range pairs(t) {
		t.Run(nw, func(t *testing.T) {
			w, r := raw(t, p[0]), raw(t, p[1])
			// A TryWriteBuffers that waited would fail here instead of
			// hanging the test.
			require.NoError(t, w.SetWriteDeadline(time.Now().Add(20*time.Second)))
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = byte(i / 4093)
			}
			var want []byte
			sent := 0
			for i := 0; ; i++ {
				require.Less(t, i, 1000, "the socket never filled")
				// Pieces of the chunk that start where the last call
				// stopped, so the stream must be the chunk repeated.
				off := sent % len(chunk)
				n, err := w.TryWriteBuffers([][]byte{chunk[off:], chunk[:off]})
				require.NoError(t, err)
				require.LessOrEqual(t, n, len(chunk))
				want = append(want, append(chunk[off:off:off], append(chunk[off:], chunk[:off]...)[:n]...)...)
				sent += n
				if n == 0 {
					break
				}
			}
			require.Positive(t, sent)
			buf := make([]byte, sent)
			_, err := io.ReadFull(r, buf)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, buf), "the stream is not what TryWriteBuffers said it took")
			n, err := w.TryWriteBuffers([][]byte{[]byte("x")})
			require.NoError(t, err)
			require.Equal(t, 1, n)
		})
	}
}

// The ends of a connection come back as net.Conn's do: EOF after the
// peer closed, the deadline error, net.ErrClosed when closed under a
// waiting Read, and an error (not a crash: SIGPIPE) writing to a peer
// that is gone.
func TestEnds(t *testing.T) {
	for nw, p := range pairs(t) {
		t.Run(nw, func(t *testing.T) {
			a, b := raw(t, p[0]), raw(t, p[1])
			buf := make([]byte, 16)

			require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
			_, err := b.Read(buf)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.NoError(t, b.SetReadDeadline(time.Time{}))

			n, err := b.Read(nil)
			require.NoError(t, err)
			require.Zero(t, n)

			_, err = a.Write([]byte("hi"))
			require.NoError(t, err)
			n, err = b.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "hi", string(buf[:n]))

			done := make(chan error, 1)
			go func() { _, err := a.Read(buf); done <- err }()
			waitParkedRead(t, "TestEnds")
			require.NoError(t, a.Close())
			require.ErrorIs(t, <-done, net.ErrClosed)

			n, err = b.Read(buf)
			require.ErrorIs(t, err, io.EOF)
			require.Zero(t, n)
			var werr error
			for range 100 { // the first write after the close may still be taken
				if _, werr = b.Write(bytes.Repeat([]byte{1}, 64<<10)); werr != nil {
					break
				}
			}
			require.True(t, errors.Is(werr, syscall.EPIPE) || errors.Is(werr, syscall.ECONNRESET), "%v", werr)
		})
	}
}

// waitParkedRead waits until a goroutine started by the test named fn is
// parked in the poller inside Conn.Read (its stack says so), so that what
// the test does next happens under a waiting Read, not before it.
func waitParkedRead(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "rawio.(*Conn).Read") && strings.Contains(g, fn) {
				return
			}
		}
	}
	t.Fatal("the Read never waited in the poller")
}

// Wrap leaves what is not a socket alone.
func TestWrapNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	require.Equal(t, a, rawio.Wrap(a))
}

// Reads and writes allocate nothing once warm: they are on every
// replicated write.
func TestNoAllocs(t *testing.T) {
	p := pairs(t)["tcp"]
	w, r := raw(t, p[0]), raw(t, p[1])
	v := [][]byte{make([]byte, 24), make([]byte, 4096)}
	buf := make([]byte, 4120)
	once := func() {
		if _, err := w.WriteBuffers(v); err != nil {
			panic(err)
		}
		if _, err := w.TryWriteBuffers(v); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			panic(err)
		}
	}
	require.Zero(t, testing.AllocsPerRun(50, once))
}

// A failed call reads as net.Conn's do: an *net.OpError naming the
// operation and the addresses around the errno.
func TestErrorsAreOpErrors(t *testing.T) {
	p := pairs(t)["tcp"]
	a, b := raw(t, p[0]), raw(t, p[1])
	// Closing with linger 0 resets the connection.
	require.NoError(t, a.Conn.(*net.TCPConn).SetLinger(0))
	require.NoError(t, a.Close())
	_, err := b.Read(make([]byte, 8))
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "read", oe.Op)
	require.Equal(t, b.RemoteAddr(), oe.Addr)
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

// Empty pieces anywhere, more of them in a row than one writev takes, and
// a vector of nothing but empty pieces.
func TestEmptyPieces(t *testing.T) {
	p := pairs(t)["unix"]
	w, r := raw(t, p[0]), raw(t, p[1])
	empties := make([][]byte, 3000)
	v := append(append(append([][]byte{}, empties...), []byte("ab")), empties...)
	v = append(append(v, []byte("cd")), nil)
	n, err := w.WriteBuffers(v)
	require.NoError(t, err)
	require.EqualValues(t, 4, n)
	n, err = w.WriteBuffers(empties)
	require.NoError(t, err)
	require.Zero(t, n)
	m, err := w.TryWriteBuffers(v)
	require.NoError(t, err)
	require.Equal(t, 4, m)
	buf := make([]byte, 8)
	_, err = io.ReadFull(r, buf)
	require.NoError(t, err)
	require.Equal(t, "abcdabcd", string(buf))
}

// A WriteBuffers waiting for room gives up at the write deadline with what
// it wrote and the deadline error, named as net.Conn's Write names it.
func TestWriteBuffersDeadline(t *testing.T) {
	p := pairs(t)["tcp"]
	w := raw(t, p[0])
	// Allocated before the deadline is set: zeroing 64 MiB under the race
	// detector on a loaded machine took the whole 200 ms once, and nothing
	// was written.
	big := make([]byte, 64<<20) // more than both socket buffers hold
	require.NoError(t, w.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
	n, err := w.WriteBuffers([][]byte{big})
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Positive(t, n)
	require.Less(t, n, int64(len(big)))
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "write", oe.Op)
}

// Only stream sockets are wrapped: a zero-byte datagram is not an end of
// stream.
func TestWrapStreamsOnly(t *testing.T) {
	dir := t.TempDir()
	la, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "a"), Net: "unixgram"})
	require.NoError(t, err)
	defer la.Close()
	require.Equal(t, net.Conn(la), rawio.Wrap(la))
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer u.Close()
	require.Equal(t, net.Conn(u), rawio.Wrap(u))
}
