package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
)

// The network side: a connector establishes the two sockets exactly as
// DRBD 8.4's conn_connect does (so a kernel DRBD peer pairs with us), and
// a peerConn runs them: per socket one writer goroutine that sends the
// core's packets in order and one reader goroutine that hands packets to
// the loop.
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
	if !r.post(func() { r.connEstablished(cn, data, meta, resolve) }) {
		release()
	}
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
// and the failed/metaStarted fields; the goroutines use the sockets and
// queues.
type peerConn struct {
	data, meta   net.Conn
	dataQ, metaQ *queue[wItem]
	stop         chan struct{} // closed by close
	failed       bool
	metaStarted  bool
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
	c := &peerConn{data: data, meta: meta, dataQ: newQueue[wItem](), metaQ: newQueue[wItem](), stop: make(chan struct{})}
	r.conn = c
	go r.writeSocket(c, c.data, c.dataQ)
	go r.writeSocket(c, c.meta, c.metaQ)
	go r.readSocket(c, replication.DataStream, protocol.Dialect{})
	r.log.Info("connection established", zap.Stringer("data_peer", data.RemoteAddr()),
		zap.Stringer("meta_peer", meta.RemoteAddr()), zap.Bool("resolve_conflicts", resolve))
	r.node.Connected(resolve)
}

// closeConn closes the sockets of the current connection (on the loop).
// Tokens of packets that never reached a socket are reported as Sent so
// the core forgets them; it already completed what depended on them.
func (r *Resource) closeConn() {
	c := r.conn
	if c == nil {
		return
	}
	r.conn = nil
	c.failed = true
	close(c.stop)
	c.data.Close()
	c.meta.Close()
	for _, q := range []*queue[wItem]{c.dataQ, c.metaQ} {
		for _, it := range q.drain() {
			if it.token != 0 {
				r.node.Sent(it.token)
			}
		}
	}
	clear(r.peerBufs)
}

// connFailed handles a read or write error (on the loop): once per
// connection, close both sockets and tell the core.
func (r *Resource) connFailed(c *peerConn, reason string) {
	if r.conn != c || c.failed {
		return
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

// writeSocket sends a socket's packets in queue order. After a failure it
// reports the error and the tokens of everything not sent.
func (r *Resource) writeSocket(c *peerConn, conn net.Conn, q *queue[wItem]) {
	w := protocol.NewWriter(conn)
	var batch []wItem
	var sent []uint64
	for {
		var ok bool
		batch, ok = q.popAll(batch[:0])
		if !ok {
			return
		}
		for i, it := range batch {
			if it.dialect != nil {
				if err := w.SetDialect(*it.dialect); err != nil {
					panic(fmt.Sprintf("driver: core handed an invalid dialect: %v", err))
				}
				continue
			}
			if err := w.WriteMessage(it.msg); err != nil {
				var left []uint64
				for _, x := range append(batch[i:], q.drain()...) {
					if x.token != 0 {
						left = append(left, x.token)
					}
				}
				reason := failureReason("send", err)
				if errors.Is(err, protocol.ErrInvalidPacket) || errors.Is(err, protocol.ErrDialect) {
					panic(fmt.Sprintf("driver: core emitted a packet the wire cannot carry: %v", err))
				}
				r.post(func() {
					r.connFailed(c, reason)
					for _, t := range left {
						r.node.Sent(t)
					}
				})
				return
			}
			if it.token != 0 {
				sent = append(sent, it.token)
			}
		}
		if len(sent) > 0 {
			toks := sent
			sent = nil
			r.post(func() {
				for _, t := range toks {
					r.node.Sent(t)
				}
			})
		}
		clear(batch)
	}
}

// readSocket hands a socket's packets to the loop. The data reader
// switches to the agreed dialect itself right after decoding the peer's
// P_CONNECTION_FEATURES (the next packet already uses it), and stops
// reading while the core's receive backlog is at max-buffers.
func (r *Resource) readSocket(c *peerConn, s replication.Stream, d protocol.Dialect) {
	conn := c.data
	if s == replication.MetaStream {
		conn = c.meta
	}
	rd := protocol.NewReader(conn, r.pool.Get)
	if err := rd.SetDialect(d); err != nil {
		panic(fmt.Sprintf("driver: invalid dialect: %v", err))
	}
	ours := protocol.ConnectionFeatures{ProtocolMin: protocol.ProtocolMin, ProtocolMax: protocol.ProtocolMax, FeatureFlags: r.set.core.Features}
	limit := int64(r.set.core.MaxBuffers)
	for {
		if s == replication.DataStream {
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
			r.post(func() { r.connFailed(c, reason) })
			return
		}
		if f, ok := m.Packet.(*protocol.ConnectionFeatures); ok && s == replication.DataStream && !rd.Dialect().Agreed() {
			if agreed, err := protocol.Agree(ours, *f); err == nil {
				_ = rd.SetDialect(agreed)
			}
		}
		if !r.post(func() { r.receive(c, s, m) }) {
			return
		}
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
