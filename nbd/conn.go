package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/internal/rawio"
)

// conn serves one client connection.
//
// Goroutines: serve runs the handshake and then the reader loop; each
// request runs in its own handler goroutine (at most MaxInFlight at once);
// one writer goroutine sends the replies, except that a reply ending the
// last request in flight is written by the goroutine that ended it when
// the writer is idle (one non-blocking writev; what the socket does not
// take is left to the writer). Replies leave in completion order, not
// request order: a slow write does not hold back a fast read.
//
//	reader ──req──▶ handler ─┐
//	       ──req──▶ handler ─┼─reply─▶ writer ──writev──▶ socket
//	       ──err──────────────┘
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	kernel bool
	log    *zap.Logger

	structured bool
	stopping   atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc

	replies chan *reply
	slots   chan struct{} // one token per request in flight

	// Direct replies: send writes a reply itself, with one non-blocking
	// writev, when the writer goroutine has nothing to do, which saves a
	// hand-off (and on a small machine a thread wake-up) per request.
	// wmu is held by whoever writes to the socket. A reply the socket took
	// only part of leaves its rest in owed; the writer sends that before
	// anything else and then releases the reply.
	wmu      sync.Mutex
	direct   *rawio.Conn // nil: every reply goes through the writer
	dbufs    net.Buffers // guarded by wmu
	owed     net.Buffers // guarded by wmu
	budget   budget      // payload bytes in flight
	handlers sync.WaitGroup
}

func newConn(s *Server, nc net.Conn, kernel bool) *conn {
	// Reads and writes of the socket make raw system calls (see rawio):
	// a 1 MiB request or reply is copied in and out without the
	// scheduler handing this goroutine's P to another thread meanwhile.
	nc = rawio.Wrap(nc)
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		s:       s,
		nc:      nc,
		br:      bufio.NewReaderSize(nc, 64<<10),
		kernel:  kernel,
		log:     s.log.With(zap.Stringer("remote", remoteName{nc})),
		ctx:     ctx,
		cancel:  cancel,
		replies: make(chan *reply, s.cfg.MaxInFlight),
		slots:   make(chan struct{}, s.cfg.MaxInFlight),
		budget:  newBudget(s.cfg.MaxInFlightBytes),
	}
}

type remoteName struct{ nc net.Conn }

func (r remoteName) String() string {
	if a := r.nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "local"
}

// stop asks the connection to finish: the reader stops at the next
// request boundary (its blocked read is interrupted), in-flight requests
// complete and are answered, then the socket closes. A reply write
// blocked for StopTimeout (the client stopped reading) fails, and the
// writer then drops the connection and the rest of the replies.
func (c *conn) stop() {
	c.stopping.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.StopTimeout))
}

func (c *conn) serve() error {
	defer c.cancel()
	defer c.nc.Close()
	if !c.kernel {
		ok, err := c.handshake()
		if err != nil || !ok {
			if c.stopping.Load() {
				return ErrServerClosed
			}
			return err
		}
	}
	c.log.Debug("nbd transmission started", zap.Bool("structured", c.structured), zap.Bool("kernel", c.kernel))
	return c.transmit()
}

// ---- handshake ----

// errAbort ends the handshake without an error worth reporting.
var errAbort = errors.New("nbd: client aborted the handshake")

func (c *conn) handshake() (bool, error) {
	_ = c.nc.SetDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	if c.stopping.Load() {
		// Close ran before the deadline above replaced its own.
		_ = c.nc.SetReadDeadline(time.Now())
	}
	defer func() {
		if !c.stopping.Load() {
			_ = c.nc.SetDeadline(time.Time{})
		}
	}()
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:8], magicNBD)
	binary.BigEndian.PutUint64(hello[8:16], magicIHaveOpt)
	binary.BigEndian.PutUint16(hello[16:18], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(hello[:]); err != nil {
		return false, fmt.Errorf("nbd: handshake: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return false, fmt.Errorf("nbd: handshake: client flags: %w", err)
	}
	cflags := binary.BigEndian.Uint32(cf[:])
	if cflags&^(cflagFixedNewstyle|cflagNoZeroes) != 0 {
		return false, fmt.Errorf("nbd: handshake: unknown client flags %#x", cflags)
	}
	noZeroes := cflags&cflagNoZeroes != 0
	var hdr [optionHeaderSize]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return false, fmt.Errorf("nbd: handshake: option header: %w", err)
		}
		if m := binary.BigEndian.Uint64(hdr[0:8]); m != magicIHaveOpt {
			return false, fmt.Errorf("%w: option magic %#016x", ErrBadMagic, m)
		}
		opt := binary.BigEndian.Uint32(hdr[8:12])
		n := binary.BigEndian.Uint32(hdr[12:16])
		if n > maxOptionLen {
			return false, fmt.Errorf("nbd: handshake: option %s with %d bytes of data", optName(opt), n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return false, fmt.Errorf("nbd: handshake: option data: %w", err)
		}
		done, err := c.option(opt, data, noZeroes)
		if err != nil || done {
			return done && err == nil, err
		}
	}
}

// option answers one option. done is true when transmission starts.
func (c *conn) option(opt uint32, data []byte, noZeroes bool) (done bool, err error) {
	if opt != optAbort && c.s.isClosed() {
		return false, c.optReply(opt, repErrShutdown, []byte("server shutting down"))
	}
	switch opt {
	case optAbort:
		_ = c.optReply(opt, repAck, nil)
		return false, errAbort
	case optList:
		if len(data) != 0 {
			return false, c.optReply(opt, repErrInvalid, []byte("LIST takes no data"))
		}
		name := c.s.cfg.Name
		b := make([]byte, 4, 4+len(name)+len(c.s.cfg.Description))
		binary.BigEndian.PutUint32(b, uint32(len(name)))
		b = append(append(b, name...), c.s.cfg.Description...)
		if err := c.optReply(opt, repServer, b); err != nil {
			return false, err
		}
		return false, c.optReply(opt, repAck, nil)
	case optStructuredReply:
		if len(data) != 0 {
			return false, c.optReply(opt, repErrInvalid, []byte("STRUCTURED_REPLY takes no data"))
		}
		if c.structured {
			return false, c.optReply(opt, repErrInvalid, []byte("structured replies already negotiated"))
		}
		c.structured = true
		return false, c.optReply(opt, repAck, nil)
	case optInfo, optGo:
		return c.infoGo(opt, data)
	case optExportName:
		if !c.nameOK(data) {
			// No way to report an error to EXPORT_NAME: the spec says
			// terminate the session.
			return false, fmt.Errorf("nbd: handshake: unknown export %q", data)
		}
		b := make([]byte, 10, 134)
		binary.BigEndian.PutUint64(b[0:8], c.s.size)
		binary.BigEndian.PutUint16(b[8:10], c.transmissionFlags())
		if !noZeroes {
			b = b[:134]
		}
		if _, err := c.nc.Write(b); err != nil {
			return false, fmt.Errorf("nbd: handshake: %w", err)
		}
		return true, nil
	default:
		// STARTTLS, the meta-context options and anything unknown.
		return false, c.optReply(opt, repErrUnsup, nil)
	}
}

func (c *conn) nameOK(name []byte) bool {
	return len(name) == 0 || string(name) == c.s.cfg.Name
}

func (c *conn) transmissionFlags() uint16 {
	f := c.s.tflag
	if c.structured {
		// Every READ is answered with one content chunk, so DF holds.
		f |= tflagSendDF
	}
	return f
}

// infoGo answers NBD_OPT_INFO and NBD_OPT_GO:
//
//	u32 name length | name | u16 n | n × u16 info request
func (c *conn) infoGo(opt uint32, data []byte) (bool, error) {
	if len(data) < 6 {
		return false, c.optReply(opt, repErrInvalid, []byte("short INFO/GO request"))
	}
	nl := binary.BigEndian.Uint32(data[0:4])
	if uint64(nl) > uint64(len(data)-6) {
		return false, c.optReply(opt, repErrInvalid, []byte("name length beyond option data"))
	}
	name := data[4 : 4+nl]
	rest := data[4+nl:]
	nreq := int(binary.BigEndian.Uint16(rest[0:2]))
	if len(rest) != 2+2*nreq {
		return false, c.optReply(opt, repErrInvalid, []byte("info request count does not match length"))
	}
	if !c.nameOK(name) {
		return false, c.optReply(opt, repErrUnknown, []byte("no such export"))
	}
	var wantName, wantDesc bool
	for i := 0; i < nreq; i++ {
		switch binary.BigEndian.Uint16(rest[2+2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	var exp [12]byte
	binary.BigEndian.PutUint16(exp[0:2], infoExport)
	binary.BigEndian.PutUint64(exp[2:10], c.s.size)
	binary.BigEndian.PutUint16(exp[10:12], c.transmissionFlags())
	if err := c.optReply(opt, repInfo, exp[:]); err != nil {
		return false, err
	}
	// Block sizes go out whether asked or not: clients ignore what they
	// do not understand, and the server enforces them either way.
	var bs [14]byte
	binary.BigEndian.PutUint16(bs[0:2], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:6], c.s.cfg.MinBlockSize)
	binary.BigEndian.PutUint32(bs[6:10], PreferredBlockSize)
	binary.BigEndian.PutUint32(bs[10:14], MaxPayload)
	if err := c.optReply(opt, repInfo, bs[:]); err != nil {
		return false, err
	}
	if wantName {
		b := binary.BigEndian.AppendUint16(nil, infoName)
		if err := c.optReply(opt, repInfo, append(b, c.s.cfg.Name...)); err != nil {
			return false, err
		}
	}
	if wantDesc && c.s.cfg.Description != "" {
		b := binary.BigEndian.AppendUint16(nil, infoDescription)
		if err := c.optReply(opt, repInfo, append(b, c.s.cfg.Description...)); err != nil {
			return false, err
		}
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		return false, err
	}
	return opt == optGo, nil
}

// optReply sends one option reply:
//
//	u64 0x3e889045565a9 | u32 option | u32 reply type | u32 length | data
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, optReplyHeaderSize, optReplyHeaderSize+len(data))
	binary.BigEndian.PutUint64(b[0:8], magicOptReply)
	binary.BigEndian.PutUint32(b[8:12], opt)
	binary.BigEndian.PutUint32(b[12:16], typ)
	binary.BigEndian.PutUint32(b[16:20], uint32(len(data)))
	if _, err := c.nc.Write(append(b, data...)); err != nil {
		return fmt.Errorf("nbd: handshake: reply to %s: %w", optName(opt), err)
	}
	return nil
}

// ---- transmission ----

// reply is one answer on its way to the writer.
type reply struct {
	cookie uint64
	typ    uint16 // command answered
	errno  uint32
	msg    string
	offset uint64
	p      []byte // READ data, returned to the pool after sending
	hdr    [structuredHeaderSize + 8]byte
	sent   bool // written by sendDirect, partly: the writer sends conn.owed
}

var replyPool = sync.Pool{New: func() any { return new(reply) }}

func (c *conn) transmit() error {
	c.direct, _ = c.nc.(*rawio.Conn) // a socket: direct replies
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	if err != nil && !errors.Is(err, errDisc) && !c.stopping.Load() {
		// Hard disconnect: the stream is unusable (bad magic, short
		// read). Close now so the writer stops and the client sees it;
		// cancel lets a backend give up on requests nobody will see.
		c.nc.Close()
		c.cancel()
	}
	// Soft end (DISC, EOF, Close): in-flight requests finish and their
	// replies are written before the socket closes.
	c.handlers.Wait()
	close(c.replies)
	<-writerDone
	switch {
	case errors.Is(err, errDisc):
		return nil
	case c.stopping.Load():
		return ErrServerClosed
	case errors.Is(err, io.EOF):
		return nil
	}
	return err
}

var errDisc = errors.New("nbd: client disconnected (NBD_CMD_DISC)")

func (c *conn) readLoop() error {
	var hdr [requestSize]byte
	for {
		c.slots <- struct{}{}
		if c.stopping.Load() {
			<-c.slots
			return ErrServerClosed
		}
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			<-c.slots
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("nbd: truncated request header: %w", err)
			}
			return err
		}
		req, err := decodeRequest(hdr[:])
		if err != nil {
			<-c.slots
			c.log.Warn("nbd hard disconnect", zap.Error(err))
			return err
		}
		if req.typ == cmdDisc {
			<-c.slots
			return errDisc
		}
		if err := c.dispatch(req); err != nil {
			return err
		}
	}
}

// checkRequest validates a request against the export and the
// negotiated features; a non-zero errno is the reply, and the backend is
// never called. It is pure so the fuzzer can drive it directly.
func checkRequest(req request, size uint64, minBlock uint32, structured, readOnly bool) (uint32, string) {
	allowed := uint16(cmdFlagFUA)
	switch req.typ {
	case cmdRead:
		if structured {
			allowed |= cmdFlagDF
		}
	case cmdWrite, cmdFlush, cmdTrim, cmdCache:
	case cmdWriteZeroes:
		allowed |= cmdFlagNoHole | cmdFlagFastZero
	default:
		return errnoInval, "unknown command " + cmdName(req.typ)
	}
	if req.flags&^allowed != 0 {
		return errnoInval, fmt.Sprintf("flags %#x not valid for %s", req.flags, cmdName(req.typ))
	}
	if req.typ == cmdFlush {
		return 0, ""
	}
	if (req.typ == cmdRead || req.typ == cmdWrite) && req.length > MaxPayload {
		if req.typ == cmdRead && structured {
			return errnoOverflow, "read larger than the maximum payload"
		}
		return errnoInval, "payload larger than the maximum payload"
	}
	if readOnly && (req.typ == cmdWrite || req.typ == cmdTrim || req.typ == cmdWriteZeroes) {
		return errnoPerm, "export is read-only"
	}
	mask := uint64(minBlock - 1)
	if req.offset&mask != 0 || uint64(req.length)&mask != 0 {
		return errnoInval, fmt.Sprintf("request not aligned to the minimum block size %d", minBlock)
	}
	if req.offset > size || uint64(req.length) > size-req.offset {
		if req.typ == cmdWrite || req.typ == cmdWriteZeroes {
			return errnoNoSpc, "write beyond the end of the export"
		}
		return errnoInval, "request beyond the end of the export"
	}
	return 0, ""
}

func (c *conn) count(req request) {
	s := c.s
	switch req.typ {
	case cmdRead:
		s.reads.Add(1)
	case cmdWrite:
		s.writes.Add(1)
	case cmdFlush:
		s.flushes.Add(1)
	case cmdTrim:
		s.trims.Add(1)
	case cmdWriteZeroes:
		s.zeroes.Add(1)
	case cmdCache:
		s.caches.Add(1)
	}
	if req.flags&cmdFlagFUA != 0 {
		s.fua.Add(1)
	}
}

// dispatch reads a WRITE payload, then either answers the request with an
// error at once or starts its handler. An error return means the stream
// is broken.
func (c *conn) dispatch(req request) error {
	c.count(req)
	errno, msg := checkRequest(req, c.s.size, c.s.cfg.MinBlockSize, c.structured, c.s.cfg.ReadOnly)
	var p []byte
	needBuf := errno == 0 && req.length > 0 && (req.typ == cmdRead || req.typ == cmdWrite)
	if needBuf {
		c.budget.acquire(int64(req.length))
		p = getPayload(int(req.length))
	}
	if req.typ == cmdWrite {
		var err error
		if p != nil {
			_, err = io.ReadFull(c.br, p)
		} else if req.length > 0 {
			// Keep the stream in sync without buffering a payload we
			// refuse (possibly larger than MaxPayload).
			_, err = io.CopyN(io.Discard, c.br, int64(req.length))
		}
		if err != nil {
			if p != nil {
				c.budget.release(int64(len(p)))
				putPayload(p)
			}
			<-c.slots
			return fmt.Errorf("nbd: truncated WRITE payload: %w", noEOF(err))
		}
	}
	if errno == 0 {
		c.s.inFlight.Add(1)
		if r := c.s.refusal.Load(); r != nil {
			c.s.inFlight.Add(-1)
			errno, msg = errnoOf(*r, req.typ), (*r).Error()
		}
	}
	if errno != 0 {
		if p != nil {
			c.budget.release(int64(len(p)))
			putPayload(p)
		}
		c.send(req, errno, msg, nil)
		return nil
	}
	c.handlers.Add(1)
	if ab, ok := c.s.cfg.Backend.(AsyncBackend); ok && p != nil && (req.typ == cmdRead || req.typ == cmdWrite) {
		c.start(ab, req, p)
		return nil
	}
	go c.handle(req, p)
	return nil
}

// start hands a READ or WRITE with its payload buffer to an AsyncBackend;
// the reply is queued from the backend's completion, as handle would.
func (c *conn) start(b AsyncBackend, req request, p []byte) {
	off, n := int64(req.offset), int64(req.length)
	if req.typ == cmdRead {
		b.StartRead(p, off, func(err error) {
			if err == nil {
				c.s.bytesRead.Add(n)
			}
			c.finish(req, p, err)
		})
		return
	}
	b.StartWrite(p, off, req.flags&cmdFlagFUA != 0, func(err error) {
		if err == nil {
			c.s.bytesWritten.Add(n)
		}
		c.budget.release(n)
		putPayload(p)
		c.finish(req, nil, err)
	})
}

// finish queues the reply of a request that ended, p being READ data to
// send (owned by the reply from here on) or nil.
func (c *conn) finish(req request, p []byte, err error) {
	c.s.inFlight.Add(-1)
	if err != nil {
		if p != nil {
			c.budget.release(int64(len(p)))
			putPayload(p)
		}
		c.send(req, errnoOf(err, req.typ), err.Error(), nil)
	} else {
		c.send(req, 0, "", p)
	}
	c.handlers.Done()
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// handle runs one request at the backend and queues its reply. A READ
// reply is queued only after the read completed: a simple reply cannot
// take back a success header.
func (c *conn) handle(req request, p []byte) {
	b := c.s.cfg.Backend
	off, n := int64(req.offset), int64(req.length)
	fua := req.flags&cmdFlagFUA != 0
	var err error
	switch req.typ {
	case cmdRead:
		if p != nil {
			err = b.ReadAt(c.ctx, p, off)
			if err == nil {
				c.s.bytesRead.Add(n)
			}
		}
	case cmdWrite:
		if p != nil {
			err = b.WriteAt(c.ctx, p, off, fua)
			if err == nil {
				c.s.bytesWritten.Add(n)
			}
			c.budget.release(int64(len(p)))
			putPayload(p)
			p = nil
		}
	case cmdFlush:
		err = b.Flush(c.ctx)
	case cmdTrim:
		if n > 0 {
			err = b.Trim(c.ctx, off, n, fua)
		}
	case cmdWriteZeroes:
		if n > 0 {
			err = b.WriteZeroes(c.ctx, off, n, ZeroOptions{
				NoHole: req.flags&cmdFlagNoHole != 0,
				Fast:   req.flags&cmdFlagFastZero != 0,
				FUA:    fua,
			})
		}
	case cmdCache:
		// A hint; the backend's own caching (page cache, the peer) is
		// all there is. Success promises nothing, as the spec allows.
	}
	c.finish(req, p, err)
}

// send queues a reply. It never blocks for long: the channel holds
// MaxInFlight replies and at most MaxInFlight requests exist.
func (c *conn) send(req request, errno uint32, msg string, p []byte) {
	if errno != 0 {
		c.s.errs.Add(1)
	}
	r := replyPool.Get().(*reply)
	r.cookie, r.typ, r.errno, r.msg, r.offset, r.p = req.cookie, req.typ, errno, msg, req.offset, p
	if c.direct != nil && c.s.inFlight.Load() == 0 && len(c.replies) == 0 && c.wmu.TryLock() {
		done := c.sendDirect(r)
		c.wmu.Unlock()
		if done {
			c.release(r)
			return
		}
	}
	c.replies <- r
}

// sendDirect writes r to the socket now (wmu held, the writer found idle
// by send) unless a rest is owed: true when all of it went out. When the socket
// took part of it, the rest is owed and r is marked sent: the writer
// sends the rest first and releases r when it comes through the queue.
// When it took nothing (full, or failed), r goes to the writer as usual.
func (c *conn) sendDirect(r *reply) bool {
	if len(c.owed) > 0 {
		return false
	}
	c.dbufs = c.encodeReply(r, c.dbufs[:0])
	total := 0
	for _, b := range c.dbufs {
		total += len(b)
	}
	n, err := c.direct.TryWriteBuffers(c.dbufs)
	if n == total && err == nil {
		c.s.directs.Add(1)
		clear(c.dbufs)
		return true
	}
	if n > 0 {
		rest := c.dbufs
		for n >= len(rest[0]) {
			n -= len(rest[0])
			rest = rest[1:]
		}
		c.owed = append(c.owed[:0], rest...)
		c.owed[0] = c.owed[0][n:]
		r.sent = true
	}
	clear(c.dbufs)
	return false
}

// release returns a reply that was written (or abandoned) and its
// request's slot.
func (c *conn) release(r *reply) {
	if r.p != nil {
		c.budget.release(int64(len(r.p)))
		putPayload(r.p)
	}
	*r = reply{}
	replyPool.Put(r)
	<-c.slots
}

// writeLoop sends replies, batching whatever is queued into one writev.
// READ data goes from the pooled buffer to the socket without a copy.
// After a write error it keeps draining so handlers never block.
func (c *conn) writeLoop() {
	const maxBatch = 32
	batch := make([]*reply, 0, maxBatch)
	bufs := make(net.Buffers, 0, 3*maxBatch)
	var werr error
	for r := range c.replies {
		batch = append(batch[:0], r)
	more:
		for len(batch) < maxBatch {
			select {
			case r2, ok := <-c.replies:
				if !ok {
					break more
				}
				batch = append(batch, r2)
			default:
				break more
			}
		}
		c.wmu.Lock()
		if werr == nil {
			// The rest of a reply the socket took part of goes first.
			bufs = append(bufs[:0], c.owed...)
			for _, r := range batch {
				if !r.sent {
					bufs = c.encodeReply(r, bufs)
				}
			}
			if c.stopping.Load() {
				// Stopping: this write gets its own StopTimeout, so a
				// client that keeps reading gets every reply.
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.StopTimeout))
			}
			if _, werr = rawio.WriteBuffers(c.nc, bufs); werr != nil {
				c.log.Debug("nbd reply write failed", zap.Error(werr))
				// Wake the reader; the connection is gone.
				c.nc.Close()
			}
			clear(bufs)
		}
		clear(c.owed)
		c.owed = c.owed[:0]
		c.wmu.Unlock()
		for i, r := range batch {
			c.release(r)
			batch[i] = nil
		}
	}
}

// encodeReply appends the buffers of one reply.
//
// Simple reply (no structured replies negotiated, or a non-READ success):
//
//	u32 0x67446698 | u32 error | u64 cookie | READ data if error == 0
//
// Structured chunk (READ, and every error once negotiated):
//
//	u32 0x668e33ef | u16 flags | u16 type | u64 cookie | u32 length | payload
//	OFFSET_DATA payload: u64 offset | data
//	ERROR payload:       u32 error | u16 message length | message
func (c *conn) encodeReply(r *reply, bufs net.Buffers) net.Buffers {
	h := r.hdr[:]
	if !c.structured || (r.typ != cmdRead && r.errno == 0) {
		binary.BigEndian.PutUint32(h[0:4], magicSimple)
		binary.BigEndian.PutUint32(h[4:8], r.errno)
		binary.BigEndian.PutUint64(h[8:16], r.cookie)
		bufs = append(bufs, h[:simpleReplySize])
		if r.p != nil && r.errno == 0 {
			bufs = append(bufs, r.p)
		}
		return bufs
	}
	binary.BigEndian.PutUint32(h[0:4], magicStructred)
	binary.BigEndian.PutUint16(h[4:6], replyFlagDone)
	binary.BigEndian.PutUint64(h[8:16], r.cookie)
	switch {
	case r.errno != 0:
		msg := r.msg
		if len(msg) > maxNameLen {
			msg = msg[:maxNameLen]
		}
		binary.BigEndian.PutUint16(h[6:8], replyTypeError)
		binary.BigEndian.PutUint32(h[16:20], uint32(6+len(msg)))
		binary.BigEndian.PutUint32(h[20:24], r.errno)
		binary.BigEndian.PutUint16(h[24:26], uint16(len(msg)))
		bufs = append(bufs, h[:26])
		if msg != "" {
			bufs = append(bufs, []byte(msg))
		}
	case r.p == nil:
		// A zero-length READ: a chunk must describe at least one byte,
		// so the answer is NONE.
		binary.BigEndian.PutUint16(h[6:8], replyTypeNone)
		binary.BigEndian.PutUint32(h[16:20], 0)
		bufs = append(bufs, h[:structuredHeaderSize])
	default:
		binary.BigEndian.PutUint16(h[6:8], replyTypeOffsetData)
		binary.BigEndian.PutUint32(h[16:20], uint32(8+len(r.p)))
		binary.BigEndian.PutUint64(h[20:28], r.offset)
		bufs = append(bufs, h[:28], r.p)
	}
	return bufs
}

// budget bounds the payload bytes a connection holds. Only the reader
// acquires, so a plain condition variable is enough; a request larger
// than the whole budget proceeds once nothing else is held.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	max  int64
	used int64
}

func newBudget(max int64) budget {
	return budget{max: max}
}

func (b *budget) acquire(n int64) {
	b.mu.Lock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	for b.used > 0 && b.used+n > b.max {
		b.cond.Wait()
	}
	b.used += n
	b.mu.Unlock()
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.cond != nil {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}
