package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Handler carries out requests. Handle is called from one goroutine per
// connection, so it must be safe for concurrent use; ctx ends when the
// client goes away or the server closes.
type Handler interface {
	Handle(ctx context.Context, req *Request) *Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) *Response

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *Request) *Response { return f(ctx, req) }

// Server answers requests on the control socket.
//
// Safe for concurrent use: Serve runs once, Close from any goroutine.
type Server struct {
	h   Handler
	log *zap.Logger
	// allowUID is the one non-root user let in: the daemon's own.
	allowUID uint32

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewServer returns a server that passes requests to h. log may be nil.
func NewServer(h Handler, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{h: h, log: log, allowUID: uint32(os.Geteuid()), conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}
}

// Listen creates the control socket at path, readable and writable by
// its owner only (0600) in a directory only the owner may enter (0700):
// whoever can connect can take the volume down. A stale socket file (no
// listener behind it) is replaced; the caller must hold the run
// directory's lock so that a live daemon's socket is never removed.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control: %w", err)
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return l, nil
}

// Serve accepts connections until Close. It returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.ln = l
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Shutdown stops accepting and lets the requests in progress finish and
// deliver their replies (the daemon exits after a `down` this way, and
// the `down` still gets its answer). When ctx ends first, it closes like
// Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed && s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	return s.Close()
}

// Close stops accepting, cancels the requests in progress and waits for
// their handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.cancel()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serveConn(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	if err := s.checkPeer(c); err != nil {
		s.log.Warn("control connection refused", zap.Error(err))
		_ = writeMsg(c, &Response{Kind: KindOther, Error: err.Error()})
		return
	}
	var req Request
	if err := readMsg(c, &req); err != nil {
		s.log.Debug("control request unreadable", zap.Error(err))
		return
	}
	// The client sends nothing after its request: a read returning
	// means it went away, and a long wait is abandoned with it.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		var b [1]byte
		_, _ = c.Read(b[:])
		cancel()
	}()
	resp := s.h.Handle(ctx, &req)
	if resp == nil {
		resp = &Response{}
	}
	if err := writeMsg(c, resp); err != nil {
		s.log.Debug("control reply not delivered", zap.Stringer("op", req.Op), zap.Error(err))
	}
}

// checkPeer lets in root and the daemon's own user only.
func (s *Server) checkPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil // tests over pipes
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("control: SO_PEERCRED: %w", cerr)
	}
	if cred.Uid != 0 && cred.Uid != s.allowUID {
		return fmt.Errorf("%w: uid %d is neither root nor the daemon's user", ErrNotPermitted, cred.Uid)
	}
	return nil
}
