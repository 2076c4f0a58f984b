package nbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("nbd: server closed")

// Config describes one export.
type Config struct {
	// Backend serves the I/O. Required.
	Backend Backend
	// Name is the export name clients ask for. The empty name (the
	// protocol's "default export") is accepted as well.
	Name string
	// Description is shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION.
	Description string
	// MinBlockSize is the advertised minimum block size: 512 (default) or
	// 4096. Requests not aligned to it fail with EINVAL.
	MinBlockSize uint32
	// ReadOnly advertises NBD_FLAG_READ_ONLY and fails every write.
	ReadOnly bool
	// MaxInFlight bounds the requests one connection may have in flight
	// (default 128, the kernel's default queue depth). The reader stops
	// reading while the bound is reached.
	MaxInFlight int
	// MaxInFlightBytes bounds the payload bytes one connection holds
	// (default 64 MiB); a single request may always proceed alone.
	MaxInFlightBytes int64
	// HandshakeTimeout bounds option haggling (default 30 s).
	HandshakeTimeout time.Duration
	// StopTimeout bounds how long Close waits for a client to take a
	// reply (default 30 s; each reply write after Close began gets this
	// long): a client that stopped reading (stopped, wedged, or behind a
	// dead link) would otherwise hold Close, and with it the daemon's
	// down, for as long as it does not read.
	StopTimeout time.Duration
	// Logger receives one line per connection event; nil logs nothing.
	Logger *zap.Logger
}

// Stats are counters since the server was created. Counts are requests
// as received (including failed ones); Errors counts error replies.
type Stats struct {
	Reads, Writes, Flushes, Trims, Zeroes, Caches int64
	// FUA counts requests that carried NBD_CMD_FLAG_FUA.
	FUA          int64
	Errors       int64
	BytesRead    int64
	BytesWritten int64
	// Connections is the number of client connections open now (socket
	// clients and kernel sockets alike).
	Connections int
	// InFlight is the number of requests being served now.
	InFlight int64
	// DirectReplies counts replies written whole by the goroutine that
	// ended the request, without the connection's writer goroutine.
	DirectReplies int64
}

// Server serves one export over any number of connections.
//
// Server is safe for concurrent use: Serve, ServeConn, Stats, Refuse,
// Drain and Close may be called from any goroutine.
type Server struct {
	cfg   Config
	log   *zap.Logger
	size  uint64 // export size advertised (rounded down to MinBlockSize)
	tflag uint16 // transmission flags before per-connection additions

	reads, writes, flushes, trims, zeroes, caches atomic.Int64
	fua, errs, bytesRead, bytesWritten            atomic.Int64
	inFlight, directs                             atomic.Int64

	refusal atomic.Pointer[error] // non-nil: fail new requests with this

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connWG    sync.WaitGroup
}

// NewServer checks cfg and returns a server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("nbd: Config.Backend is nil")
	}
	if cfg.MinBlockSize == 0 {
		cfg.MinBlockSize = 512
	}
	if cfg.MinBlockSize != 512 && cfg.MinBlockSize != 4096 {
		return nil, fmt.Errorf("nbd: MinBlockSize %d: want 512 or 4096", cfg.MinBlockSize)
	}
	if len(cfg.Name) > maxNameLen || len(cfg.Description) > maxNameLen {
		return nil, fmt.Errorf("nbd: export name or description longer than %d bytes", maxNameLen)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 128
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = 64 << 20
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	size := cfg.Backend.Size()
	if size < 0 {
		return nil, fmt.Errorf("nbd: backend size %d", size)
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		size:      uint64(size) &^ uint64(cfg.MinBlockSize-1),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	s.tflag = tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendTrim |
		tflagSendWriteZeroes | tflagSendFastZero | tflagCanMultiConn | tflagSendCache
	if cfg.ReadOnly {
		s.tflag |= tflagReadOnly
	}
	return s, nil
}

// Size is the export size clients see: the backend size rounded down to
// the minimum block size, so every byte of the export is addressable.
func (s *Server) Size() int64 { return int64(s.size) }

// KernelFlags are the transmission flags for a kernel attach (netlink
// SERVER_FLAGS or the NBD_SET_FLAGS ioctl): without SEND_FLUSH and
// SEND_FUA the kernel would never send FLUSH or FUA, silently dropping
// the write-ordering guarantees of everything above it.
func (s *Server) KernelFlags() uint64 {
	return uint64(s.tflag &^ (tflagSendCache | tflagSendFastZero))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{
		Reads: s.reads.Load(), Writes: s.writes.Load(), Flushes: s.flushes.Load(),
		Trims: s.trims.Load(), Zeroes: s.zeroes.Load(), Caches: s.caches.Load(),
		FUA: s.fua.Load(), Errors: s.errs.Load(),
		BytesRead: s.bytesRead.Load(), BytesWritten: s.bytesWritten.Load(),
		Connections: n, InFlight: s.inFlight.Load(), DirectReplies: s.directs.Load(),
	}
}

// Connections is the number of open client connections. The replication
// layer refuses to demote while it is not zero.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Refuse makes every request that arrives from now on fail with the NBD
// error reason maps to (ErrReadOnly: EPERM, ErrShutdown: ESHUTDOWN, ...)
// without reaching the backend. Refuse(nil) serves again. Requests
// already at the backend are not affected: Drain waits for them.
func (s *Server) Refuse(reason error) {
	if reason == nil {
		s.refusal.Store(nil)
		return
	}
	s.refusal.Store(&reason)
}

// Drain waits until no request is at the backend. Together with Refuse it
// fences the export before a demotion: Refuse, then Drain.
func (s *Server) Drain(ctx context.Context) error {
	if s.inFlight.Load() == 0 {
		return nil
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.inFlight.Load() != 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("nbd: drain: %d requests still in flight: %w", s.inFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Serve accepts connections on l until Close, serving each in its own
// goroutine. It returns ErrServerClosed after Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		go func() {
			if err := s.ServeConn(nc); err != nil && !errors.Is(err, ErrServerClosed) {
				s.log.Debug("nbd connection ended", zap.Error(err))
			}
		}()
	}
}

// ServeConn runs the fixed-newstyle handshake on nc and then serves
// requests until the client disconnects, the connection fails or the
// server closes. It closes nc.
func (s *Server) ServeConn(nc net.Conn) error {
	if tc, ok := nc.(*net.TCPConn); ok {
		// Replies are small and latency-bound; Nagle would hold them.
		_ = tc.SetNoDelay(true)
	}
	c, err := s.newConn(nc, false)
	if err != nil {
		return err
	}
	defer s.dropConn(c)
	return c.serve()
}

// ServeKernelConn serves requests on nc without a handshake: nc is the
// in-process end of a socketpair whose other end was handed to the
// kernel, which already knows size and flags (KernelFlags). The kernel
// uses simple replies only. It closes nc.
func (s *Server) ServeKernelConn(nc net.Conn) error {
	c, err := s.newConn(nc, true)
	if err != nil {
		return err
	}
	defer s.dropConn(c)
	return c.serve()
}

func (s *Server) newConn(nc net.Conn, kernel bool) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return nil, ErrServerClosed
	}
	c := newConn(s, nc, kernel)
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return c, nil
}

func (s *Server) dropConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// Close stops accepting, lets every connection finish the requests it has
// in flight (replies are sent), closes the connections and returns when
// all are gone. Requests arriving meanwhile are not read. A reply its
// client does not take within Config.StopTimeout is dropped with the
// connection.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.connWG.Wait()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()
	s.connWG.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// unixListener removes its socket file on Close (the file was renamed
// into place, so net's own unlink-on-close would miss it).
type unixListener struct {
	*net.UnixListener
	path string
}

// Addr reports the final path, not the temporary one the socket was
// bound under.
func (l unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l unixListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.path); err == nil && rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = rerr
	}
	return err
}

// ListenUnix listens on a unix socket at path with mode 0600: anyone who
// can connect can write the device. The socket is bound inside a fresh
// 0700 directory, chmodded, then renamed into place, so it is never
// reachable with a wider mode. A stale socket at path is replaced.
func ListenUnix(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".nbd-sock-")
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket == 0 {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: exists and is not a socket", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	return unixListener{UnixListener: l, path: path}, nil
}

// ListenTCP listens on an explicit TCP address (never a wildcard default:
// the caller names it). Accepted connections get TCP_NODELAY in
// ServeConn.
func ListenTCP(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", addr, err)
	}
	return l, nil
}
