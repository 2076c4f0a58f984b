package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
)

// memDev is a blockdev.Device in memory for the tests (with Discarder and
// ZeroWriter when full is set). It counts calls so tests can tell which
// path the server took.
type memDev struct {
	mu      sync.RWMutex
	b       []byte
	flushes atomic.Int64
	discard atomic.Int64
	zeroes  atomic.Int64
	writes  atomic.Int64
}

func newMemDev(size int) *memDev { return &memDev{b: make([]byte, size)} }

func (m *memDev) Size() int64 { return int64(len(m.b)) }
func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("read %d@%d: %w", len(p), off, blockdev.ErrOutOfRange)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return copy(p, m.b[off:]), nil
}
func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write %d@%d: %w", len(p), off, blockdev.ErrOutOfRange)
	}
	m.writes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}
func (m *memDev) Flush() error { m.flushes.Add(1); return nil }
func (m *memDev) Close() error { return nil }
func (m *memDev) zero(off, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.b[off : off+n])
}

// fullMemDev adds Discard and WriteZeroes.
type fullMemDev struct{ *memDev }

func (m fullMemDev) Discard(off, n int64) error     { m.discard.Add(1); m.zero(off, n); return nil }
func (m fullMemDev) WriteZeroes(off, n int64) error { m.zeroes.Add(1); m.zero(off, n); return nil }

// startServer serves cfg on a unix socket and returns the server and the
// socket path; everything is torn down by t.Cleanup.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	s, err := NewServer(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := ListenUnix(path)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return s, path
}

// client is a minimal hand-written NBD client for protocol tests: it
// speaks exactly what the test tells it to, including malformed input.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, path string) *client {
	t.Helper()
	nc, err := net.Dial("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) write(b []byte) {
	c.t.Helper()
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

func (c *client) readN(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	_, err := io.ReadFull(c.br, b)
	require.NoError(c.t, err)
	return b
}

// greet reads the server greeting and sends client flags.
func (c *client) greet(cflags uint32) {
	c.t.Helper()
	h := c.readN(18)
	require.Equal(c.t, uint64(magicNBD), binary.BigEndian.Uint64(h[0:8]))
	require.Equal(c.t, uint64(magicIHaveOpt), binary.BigEndian.Uint64(h[8:16]))
	require.Equal(c.t, uint16(flagFixedNewstyle|flagNoZeroes), binary.BigEndian.Uint16(h[16:18]))
	c.write(binary.BigEndian.AppendUint32(nil, cflags))
}

func (c *client) sendOpt(opt uint32, data []byte) {
	c.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	c.write(append(b, data...))
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (c *client) readOptReply() optReply {
	c.t.Helper()
	h := c.readN(optReplyHeaderSize)
	require.Equal(c.t, uint64(magicOptReply), binary.BigEndian.Uint64(h[0:8]))
	r := optReply{opt: binary.BigEndian.Uint32(h[8:12]), typ: binary.BigEndian.Uint32(h[12:16])}
	r.data = c.readN(int(binary.BigEndian.Uint32(h[16:20])))
	return r
}

func infoGoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// goExport negotiates (optionally structured replies) and enters
// transmission with NBD_OPT_GO; it returns size and transmission flags.
func (c *client) goExport(structured bool) (uint64, uint16) {
	c.t.Helper()
	c.greet(cflagFixedNewstyle | cflagNoZeroes)
	if structured {
		c.sendOpt(optStructuredReply, nil)
		require.Equal(c.t, uint32(repAck), c.readOptReply().typ)
	}
	c.sendOpt(optGo, infoGoData("", infoBlockSize))
	var size uint64
	var flags uint16
	for {
		r := c.readOptReply()
		require.Equal(c.t, uint32(optGo), r.opt)
		if r.typ == repAck {
			return size, flags
		}
		require.Equal(c.t, uint32(repInfo), r.typ)
		if binary.BigEndian.Uint16(r.data) == infoExport {
			size = binary.BigEndian.Uint64(r.data[2:10])
			flags = binary.BigEndian.Uint16(r.data[10:12])
		}
	}
}

func (c *client) request(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	b := make([]byte, requestSize)
	request{flags: flags, typ: typ, cookie: cookie, offset: off, length: length}.encode(b)
	c.write(append(b, payload...))
}

// rep is a decoded reply: a simple reply or one structured chunk.
type rep struct {
	structured bool
	cookie     uint64
	errno      uint32
	flags      uint16 // structured
	typ        uint16 // structured chunk type
	offset     uint64 // OFFSET_DATA
	data       []byte // READ data / OFFSET_DATA data
	msg        string // ERROR message
}

// readReply reads one reply; readLen is the data length for a simple
// READ success (simple replies are not self-describing).
func (c *client) readReply(readLen func(cookie uint64) int) rep {
	c.t.Helper()
	m := binary.BigEndian.Uint32(c.readN(4))
	switch m {
	case magicSimple:
		h := c.readN(12)
		r := rep{errno: binary.BigEndian.Uint32(h[0:4]), cookie: binary.BigEndian.Uint64(h[4:12])}
		if r.errno == 0 && readLen != nil {
			if n := readLen(r.cookie); n > 0 {
				r.data = c.readN(n)
			}
		}
		return r
	case magicStructred:
		h := c.readN(16)
		r := rep{structured: true, flags: binary.BigEndian.Uint16(h[0:2]), typ: binary.BigEndian.Uint16(h[2:4]),
			cookie: binary.BigEndian.Uint64(h[4:12])}
		p := c.readN(int(binary.BigEndian.Uint32(h[12:16])))
		switch r.typ {
		case replyTypeOffsetData:
			r.offset, r.data = binary.BigEndian.Uint64(p[0:8]), p[8:]
		case replyTypeError:
			r.errno = binary.BigEndian.Uint32(p[0:4])
			r.msg = string(p[6 : 6+binary.BigEndian.Uint16(p[4:6])])
		}
		return r
	}
	c.t.Fatalf("bad reply magic %#x", m)
	return rep{}
}

// expectClosed asserts the server closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_, err := c.br.ReadByte()
	require.Error(c.t, err)
	require.True(c.t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "got %v", err)
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

// gateBackend holds every call until the test releases it, to control
// completion order.
type gateBackend struct {
	Backend
	arrived chan uint64 // offsets of calls as they arrive
	mu      sync.Mutex
	gates   map[int64]chan struct{}
}

func newGateBackend(inner Backend) *gateBackend {
	return &gateBackend{Backend: inner, arrived: make(chan uint64, 256), gates: map[int64]chan struct{}{}}
}

func (g *gateBackend) gate(off int64) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.gates[off]
	if !ok {
		ch = make(chan struct{})
		g.gates[off] = ch
	}
	return ch
}

func (g *gateBackend) release(off int64) { close(g.gate(off)) }

func (g *gateBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	ch := g.gate(off)
	g.arrived <- uint64(off)
	<-ch
	return g.Backend.ReadAt(ctx, p, off)
}

func (g *gateBackend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	ch := g.gate(off)
	g.arrived <- uint64(off)
	<-ch
	return g.Backend.WriteAt(ctx, p, off, fua)
}

// errBackend fails every call with err.
type errBackend struct {
	Backend
	err error
}

func (e errBackend) ReadAt(context.Context, []byte, int64) error        { return e.err }
func (e errBackend) WriteAt(context.Context, []byte, int64, bool) error { return e.err }
func (e errBackend) Flush(context.Context) error                        { return e.err }

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// at copies n bytes at off under the device lock (the race detector does
// not see the happens-before a socket reply gives).
func (m *memDev) at(off, n int) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.b[off:off+n]...)
}

// asyncBackend makes any Backend an AsyncBackend: each started request
// runs the synchronous call on a goroutine of its own and reports through
// done, as the replication driver does from its loop.
type asyncBackend struct {
	Backend
	started atomic.Int64
}

func (a *asyncBackend) StartRead(p []byte, off int64, done func(error)) {
	a.started.Add(1)
	go func() { done(a.Backend.ReadAt(context.Background(), p, off)) }()
}

func (a *asyncBackend) StartWrite(p []byte, off int64, fua bool, done func(error)) {
	a.started.Add(1)
	go func() { done(a.Backend.WriteAt(context.Background(), p, off, fua)) }()
}
