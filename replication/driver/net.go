package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/internal/rawio"
	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
)

// The network side: a connector establishes the two sockets exactly as
// DRBD 8.4's conn_connect does (so a kernel DRBD peer pairs with us), and
// a peerConn runs them: per socket a sockWriter that sends the core's
// packets in order (the loop itself while the socket takes them at once,
// else its goroutine) and one reader goroutine that hands packets to the
// loop.
//
//	           listen (SO_REUSEADDR) + every connect-int: connect
//	connector ──────────────────────────────────────────────────────► loop: Node.Connected
//	             first socket we connect: P_INITIAL_DATA (h80)
//	             second:                  P_INITIAL_META
//	             accepted: its first packet says which it is
//	             crossed: keep the accepted one, 50 % retry at once
//	             both sockets alive after sock-check-timeout: done
//
//	peerConn: data writer ◄─ loop ─► meta writer      (ordered queues)
//	          data reader ─► loop ◄─ meta reader      (meta started after
//	                                                  P_CONNECTION_FEATURES)

// connector is one run of the connection loop, until it hands over two
// sockets or is stopped. The loop owns the pointer.
type connector struct {
	stop chan struct{} // closed to stop trying
	done chan struct{} // closed when the goroutine (and its listener) is gone
}

// startConnector begins trying to connect (on the loop). A new connector
// waits for the previous one to close its listener first.
func (r *Resource) startConnector() {
	if r.connector != nil || r.set.peer == nil {
		if r.set.peer == nil {
			r.log.Error("cannot connect: the resource has no peer host section")
		}
		return
	}
	cn := &connector{stop: make(chan struct{}), done: make(chan struct{})}
	prev := r.lastConnDone
	r.connector, r.lastConnDone = cn, cn.done
	seed := r.rand()
	go cn.run(r, prev, rand.New(rand.NewPCG(seed, seed>>1|1)))
}

// stopConnector stops trying (on the loop); it does not wait.
func (r *Resource) stopConnector() {
	if r.connector != nil {
		close(r.connector.stop)
		r.connector = nil
	}
}

// bufControl sets sndbuf-size / rcvbuf-size before connect or listen,
// so that TCP window scaling is negotiated for them.
func bufControl(snd, rcv int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		if snd <= 0 && rcv <= 0 {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			if snd > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, snd)
			}
			if rcv > 0 && serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func (cn *connector) stopped() bool {
	select {
	case <-cn.stop:
		return true
	default:
		return false
	}
}

// wait waits d or until stopped; it reports false when stopped.
func (cn *connector) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-cn.stop:
		return false
	}
}

// run is DRBD's conn_connect loop.
func (cn *connector) run(r *Resource, prev <-chan struct{}, rng *rand.Rand) {
	defer close(cn.done)
	if prev != nil {
		select {
		case <-prev:
		case <-cn.stop:
			return
		}
	}
	s := &r.set
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-cn.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	var ln net.Listener
	var lastErr string
	for {
		lc := net.ListenConfig{Control: bufControl(s.sndbuf, s.rcvbuf)}
		l, err := lc.Listen(ctx, "tcp", s.local.String())
		if err == nil {
			ln = l
			break
		}
		if msg := err.Error(); msg != lastErr {
			r.log.Warn("cannot listen on the local address; retrying every connect-int",
				zap.String("address", s.local.String()), zap.Error(err))
			lastErr = msg
		}
		if !cn.wait(s.connectInt) {
			return
		}
	}
	defer ln.Close()

	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if ra, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ra.IP.Equal(s.peer.IP) {
				r.log.Warn("closing unexpected connection", zap.Stringer("from", c.RemoteAddr()))
				c.Close()
				continue
			}
			select {
			case accepted <- c:
			case <-ctx.Done():
				c.Close()
				return
			}
		}
	}()

	var data, meta net.Conn
	resolve := false
	release := func() {
		for _, c := range []net.Conn{data, meta} {
			if c != nil {
				c.Close()
			}
		}
	}
	for {
		if data == nil || meta == nil {
			if c := cn.dial(ctx, r); c != nil {
				if data == nil {
					data = c
					sendFirst(c, protocol.CmdInitialData, s.connectInt)
				} else {
					resolve = false
					meta = c
					sendFirst(c, protocol.CmdInitialMeta, s.connectInt)
				}
			}
		}
		if cn.established(r, &data, &meta) {
			break
		}
		if cn.stopped() {
			release()
			return
		}
	retry:
		timeo := s.connectInt
		if rng.IntN(2) == 0 {
			timeo += timeo / 7
		} else {
			timeo -= timeo / 7
		}
		t := time.NewTimer(timeo)
		var c net.Conn
		select {
		case c = <-accepted:
		case <-t.C:
		case <-cn.stop:
		}
		t.Stop()
		if c != nil {
			fp := receiveFirst(c, 4*s.pingTimeo)
			socketOkay(&data)
			socketOkay(&meta)
			switch fp {
			case protocol.CmdInitialData:
				if data != nil {
					r.log.Warn("initial packet S crossed")
					data.Close()
					data = c
					if rng.IntN(2) == 0 {
						goto retry
					}
				} else {
					data = c
				}
			case protocol.CmdInitialMeta:
				resolve = true
				if meta != nil {
					r.log.Warn("initial packet M crossed")
					meta.Close()
					meta = c
					if rng.IntN(2) == 0 {
						goto retry
					}
				} else {
					meta = c
				}
			default:
				r.log.Warn("error receiving initial packet", zap.Stringer("from", c.RemoteAddr()))
				c.Close()
				if rng.IntN(2) == 0 {
					goto retry
				}
			}
		}
		if cn.stopped() {
			release()
			return
		}
		if cn.established(r, &data, &meta) {
			break
		}
	}
	// DRBD closes the listener once connected: a peer that tries again
	// while we are connected is refused rather than left hanging.
	ln.Close()
	for _, c := range []net.Conn{data, meta} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
	}
	r.handOver(func() { r.connEstablished(cn, data, meta, resolve) }, release)
}

// dial is drbd_try_connect: from the local address (any port) to the
// peer; "not there yet" errors are silent.
func (cn *connector) dial(ctx context.Context, r *Resource) net.Conn {
	s := &r.set
	d := net.Dialer{
		Timeout:   s.connectInt,
		LocalAddr: &net.TCPAddr{IP: s.local.IP, Zone: s.local.Zone},
		Control:   bufControl(s.sndbuf, s.rcvbuf),
	}
	c, err := d.DialContext(ctx, "tcp", s.peer.String())
	if err != nil {
		if !quietDialError(err) && ctx.Err() == nil {
			r.log.Warn("connect failed", zap.Stringer("peer", s.peer), zap.Error(err))
		}
		return nil
	}
	return c
}

// quietDialError: the peer is not (yet) reachable; keep trying silently,
// as DRBD stays WFConnection without a message.
func quietDialError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{unix.ECONNREFUSED, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EHOSTUNREACH, unix.ETIMEDOUT, unix.EAGAIN, unix.EINPROGRESS, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, context.Canceled)
}

// established is connection_established: both sockets exist and are
// still alive after sock-check-timeout (ping-timeout by default), which
// gives a peer that crossed its connects time to drop the loser.
func (cn *connector) established(r *Resource, data, meta *net.Conn) bool {
	if *data == nil || *meta == nil {
		return false
	}
	if !cn.wait(r.set.sockCheck) {
		return false
	}
	ok := socketOkay(data)
	return socketOkay(meta) && ok
}

// socketOkay is drbd_socket_okay: a non-blocking peek; a socket the peer
// closed is released and set to nil.
func socketOkay(c *net.Conn) bool {
	if *c == nil {
		return false
	}
	ok := false
	if tc, isTCP := (*c).(*net.TCPConn); isTCP {
		if rc, err := tc.SyscallConn(); err == nil {
			_ = rc.Read(func(fd uintptr) bool {
				var b [4]byte
				n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				ok = n > 0 || errors.Is(err, unix.EAGAIN)
				return true
			})
		}
	}
	if !ok {
		(*c).Close()
		*c = nil
	}
	return ok
}

// sendFirst sends P_INITIAL_DATA or P_INITIAL_META: an h80 header with no
// payload. A failure shows later as a dead socket.
func sendFirst(c net.Conn, cmd protocol.Cmd, timeout time.Duration) {
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	_ = protocol.NewWriter(c).WriteMessage(protocol.Message{Packet: &protocol.Initial{Cmd: cmd}})
	_ = c.SetWriteDeadline(time.Time{})
}

// receiveFirst is receive_first_packet: the h80 header of an accepted
// socket's first packet, read without read-ahead (the bytes after it
// belong to the peer's P_CONNECTION_FEATURES). 0 on any failure.
func receiveFirst(c net.Conn, timeout time.Duration) protocol.Cmd {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var hb [8]byte
	if _, err := io.ReadFull(c, hb[:]); err != nil {
		return 0
	}
	h, err := protocol.ParseHeader(protocol.Dialect{}, hb[:])
	if err != nil || h.Length != 0 {
		return 0
	}
	return h.Cmd
}

// peerConn is an established pair of sockets. The loop owns the pointer
// and the failed/metaStarted/failReason fields; the goroutines use the
// sockets, queues and channels.
type peerConn struct {
	data, meta   net.Conn
	dataW, metaW *sockWriter
	stop         chan struct{} // closed by closeConn: readers stop waiting
	// done channels of the writers and readers (metaRDone is closed by
	// the loop itself when the meta reader was never started).
	dataWDone, metaWDone chan struct{}
	dataRDone, metaRDone chan struct{}
	failed               bool
	metaStarted          bool
	failReason           string // first failure seen outside the data reader

	// closing is set by closeConn; from then on the data writer drops
	// P_DATA. appMu is held while a P_DATA is being written: its payload
	// is the application's buffer, which closeConn's completions hand
	// back.
	closing atomic.Bool
	appMu   sync.Mutex
}

// wItem is one entry of a writer's queue: a packet (with the token to
// report as Sent), or a dialect switch at this point of the stream.
type wItem struct {
	msg     protocol.Message
	token   uint64
	dialect *protocol.Dialect
}

// connEstablished takes over the sockets of a connector that finished
// (on the loop) and starts the handshake.
func (r *Resource) connEstablished(cn *connector, data, meta net.Conn, resolve bool) {
	if r.connector != cn {
		data.Close()
		meta.Close()
		return
	}
	r.connector = nil
	c := &peerConn{
		data: data, meta: meta, stop: make(chan struct{}),
		dataWDone: make(chan struct{}), metaWDone: make(chan struct{}),
		dataRDone: make(chan struct{}), metaRDone: make(chan struct{}),
	}
	report := func(toks []uint64, failure string) {
		if failure != "" {
			r.connFailed(c, false, failure)
		}
		for _, t := range toks {
			r.node.Sent(t)
		}
	}
	c.dataW = newSockWriter(data, c.dataWDone, &c.appMu, &c.closing, r.post, report)
	c.metaW = newSockWriter(meta, c.metaWDone, &c.appMu, &c.closing, r.post, report)
	r.conn = c
	go c.dataW.run()
	go c.metaW.run()
	go r.readSocket(c, replication.DataStream, protocol.Dialect{})
	r.log.Info("connection established", zap.Stringer("data_peer", data.RemoteAddr()),
		zap.Stringer("meta_peer", meta.RemoteAddr()), zap.Bool("resolve_conflicts", resolve))
	r.node.Connected(resolve)
}

// startMetaReader starts reading the meta socket once the dialect is
// agreed: the peer sends nothing on it before (on the loop).
func (r *Resource) startMetaReader(c *peerConn, d protocol.Dialect) {
	if !c.metaStarted {
		c.metaStarted = true
		go r.readSocket(c, replication.MetaStream, d)
	}
}

// closeConn ends the current connection (on the loop). The core's
// contract is that Net is carried out after the Ready's messages were
// handed to the sockets: the writers still send what is queued (a peer
// that refuses the handshake must see our P_PROTOCOL or P_STATE, not a
// reset), within ping-timeout, then each socket is shut down for writing
// and closed once its reader saw the peer's end (or ping-timeout later).
func (r *Resource) closeConn() {
	c := r.conn
	if c == nil {
		return
	}
	r.conn = nil
	c.failed = true
	close(c.stop)
	// Requests completed by this connection loss give their buffers back
	// to the NBD server right after this: no P_DATA may be sending from
	// one any more. An interrupted P_DATA is fine, the stream is dead.
	c.closing.Store(true)
	if !c.appMu.TryLock() {
		_ = c.data.SetWriteDeadline(time.Now())
		c.appMu.Lock()
	}
	c.appMu.Unlock()
	if !c.metaStarted {
		close(c.metaRDone)
	}
	c.dataW.close()
	c.metaW.close()
	clear(r.peerBufs)
	deadline := time.Now().Add(r.set.pingTimeo)
	_ = c.data.SetWriteDeadline(deadline)
	_ = c.meta.SetWriteDeadline(deadline)
	go c.shutdown(c.data, c.dataWDone, c.dataRDone, deadline.Add(r.set.pingTimeo))
	go c.shutdown(c.meta, c.metaWDone, c.metaRDone, deadline.Add(r.set.pingTimeo))
}

// shutdown closes one socket after its writer finished: FIN after the
// last packet, then wait for the reader to see the peer's end.
func (c *peerConn) shutdown(conn net.Conn, wDone, rDone chan struct{}, readDeadline time.Time) {
	<-wDone
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = conn.SetReadDeadline(readDeadline)
	<-rDone
	conn.Close()
}

// closeHard closes the sockets at once (the loop is gone).
func (c *peerConn) closeHard() {
	c.dataW.close()
	c.metaW.close()
	c.data.Close()
	c.meta.Close()
}

// connFailed handles a read or write error (on the loop): once per
// connection, close both sockets and tell the core.
//
// NB: a peer that refuses the handshake (protocol mismatch, split brain)
// sends its verdict's cause and closes both sockets at once. Its P_PROTOCOL
// or P_STATE may still sit unread on our data socket when the meta reader
// or a writer notices the close; reporting that first would make this side
// retry forever instead of reaching the same verdict. So only the data
// reader's end fails the connection: other failures make it read what is
// already there, with a deadline of ping-timeout, and then fail with the
// first reason.
func (r *Resource) connFailed(c *peerConn, dataReader bool, reason string) {
	if r.conn != c || c.failed {
		return
	}
	if !dataReader {
		if c.failReason == "" {
			c.failReason = reason
			_ = c.data.SetReadDeadline(time.Now().Add(r.set.pingTimeo))
		}
		return
	}
	if c.failReason != "" {
		reason = c.failReason
	}
	r.closeConn()
	r.node.Disconnected(reason)
}

// failureReason turns a socket error into the words of the log.
func failureReason(op string, err error) string {
	var pe *protocol.ProtocolError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by peer"
	case errors.As(err, &pe):
		return "protocol error: " + pe.Error()
	case errors.Is(err, unix.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, unix.EPIPE):
		return "broken pipe"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return op + " timed out"
	}
	return fmt.Sprintf("%s: %v", op, err)
}

// readSocket hands a socket's packets to the loop. The data reader
// switches to the agreed dialect itself right after decoding the peer's
// P_CONNECTION_FEATURES (the next packet already uses it), and stops
// reading while the core's receive backlog is at max-buffers.
func (r *Resource) readSocket(c *peerConn, s replication.Stream, d protocol.Dialect) {
	conn, done := c.data, c.dataRDone
	if s == replication.MetaStream {
		conn, done = c.meta, c.metaRDone
	}
	defer close(done)
	// Raw system calls (see rawio): a 1 MiB P_DATA is copied out of the
	// socket without the scheduler handing the P to another thread.
	rd := protocol.NewReader(rawio.Wrap(conn), r.pool.Get)
	if err := rd.SetDialect(d); err != nil {
		panic(fmt.Sprintf("driver: invalid dialect: %v", err))
	}
	ours := protocol.ConnectionFeatures{ProtocolMin: protocol.ProtocolMin, ProtocolMax: protocol.ProtocolMax, FeatureFlags: r.set.core.Features}
	limit := int64(r.set.core.MaxBuffers)
	for {
		if s == replication.DataStream {
			if r.backlog.Load() >= limit {
				r.pauses.Add(1)
			}
			for r.backlog.Load() >= limit {
				select {
				case <-r.resume:
				case <-c.stop:
					return
				}
			}
		}
		m, err := rd.ReadMessage()
		if err != nil {
			reason := failureReason("receive", err)
			r.post(func() { r.connFailed(c, s == replication.DataStream, reason) })
			return
		}
		agreeDialect(rd, s, m, ours)
		// The packet runs on this goroutine when the loop is idle (no
		// hand-off on a replicated write's path), and so do the packets
		// complete in the read-ahead behind it, before one pump: one disk
		// submission, one writev for the batch, as when the loop takes
		// them. Else it goes to the loop.
		failed := false
		if r.runInline(func() { failed = r.receiveBuffered(c, s, rd, m, ours, limit) }) {
			if failed {
				return
			}
			continue
		}
		if !r.post(func() { r.receive(c, s, m) }) {
			return
		}
	}
}

// agreeDialect switches rd to the dialect agreed by the peer's
// P_CONNECTION_FEATURES (m) on the data stream: the next packet uses it.
func agreeDialect(rd *protocol.Reader, s replication.Stream, m protocol.Message, ours protocol.ConnectionFeatures) {
	if f, ok := m.Packet.(*protocol.ConnectionFeatures); ok && s == replication.DataStream && !rd.Dialect().Agreed() {
		if agreed, err := protocol.Agree(ours, *f); err == nil {
			_ = rd.SetDialect(agreed)
		}
	}
}

// receiveBuffered, on the loop (the reader's runInline), receives m and
// then every packet complete in rd's read-ahead, none of which waits for
// the network, while the data stream's receive backlog is under limit;
// as the reader would one by one. true: reading failed, the core was
// told (connFailed) and the reader stops.
func (r *Resource) receiveBuffered(c *peerConn, s replication.Stream, rd *protocol.Reader, m protocol.Message, ours protocol.ConnectionFeatures, limit int64) bool {
	for {
		r.receive(c, s, m)
		if !rd.Complete() || s == replication.DataStream && int64(r.node.RecvBacklog()) >= limit {
			return false
		}
		var err error
		if m, err = rd.ReadMessage(); err != nil {
			r.connFailed(c, s == replication.DataStream, failureReason("receive", err))
			return true
		}
		agreeDialect(rd, s, m, ours)
	}
}

// receive hands a packet to the core (on the loop), unless its connection
// is gone. Peer write payloads are remembered so that their buffers go
// back to the pool once the disk write is done.
func (r *Resource) receive(c *peerConn, s replication.Stream, m protocol.Message) {
	d, isData := m.Packet.(*protocol.Data)
	if r.conn != c || c.failed {
		if isData && len(d.Payload) > 0 {
			r.pool.Put(d.Payload)
		}
		return
	}
	if isData && len(d.Payload) > 0 {
		switch d.Cmd {
		case protocol.CmdData, protocol.CmdRSDataReply:
			r.peerBufs[&d.Payload[0]] = struct{}{}
		case protocol.CmdDataReply:
			// The core copies a read reply into the request's buffer.
			defer r.pool.Put(d.Payload)
		}
	}
	if err := r.node.Receive(s, m); err != nil {
		r.log.Debug("packet refused by the core", zap.Stringer("stream", s), zap.Error(err))
	}
}
