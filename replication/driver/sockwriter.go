package driver

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/gdrbd/gdrbd/internal/rawio"
	"github.com/gdrbd/gdrbd/protocol"
)

// sockWriter sends one socket's packets in the order the loop hands them
// over.
//
// INLINE WHEN IDLE: when nothing is queued and the writer goroutine is
// idle, the loop writes a Ready's packets itself with one non-blocking
// writev and reports their tokens as Sent at once: no hand-off and no
// wake-up of another thread (on a small VM each costs 10-40 us and a
// context switch, and this is on every write's critical path: the
// Primary's P_DATA, the Secondary's P_WRITE_ACK). The loop never blocks
// on the socket: what the socket does not take at once (its buffer full),
// and every packet handed over while the goroutine is busy or has
// something queued, goes to the goroutine, which writes in order and may
// block. So the bytes on the wire are always in hand-over order.
//
// A P_DATA payload is the application's buffer. Whoever writes one holds
// peerConn.appMu (see closeConn); when an inline write leaves part of
// such a packet unwritten, the loop keeps appMu locked and the goroutine
// unlocks it after writing the rest.
type sockWriter struct {
	raw     *rawio.Conn // nil: no inline writes (not a socket)
	w       *protocol.Writer
	done    chan struct{}
	appMu   *sync.Mutex  // peerConn.appMu
	closing *atomic.Bool // peerConn.closing
	// post runs a function on the loop; report (run there) takes the
	// tokens of packets the goroutine sent, or of every packet it could
	// not send after a write failed (failure is then the reason).
	post   func(func()) bool
	report func(toks []uint64, failure string)

	mu   sync.Mutex
	cond sync.Cond
	// Guarded by mu:
	items  []wItem // for the goroutine, in order
	busy   bool    // the goroutine is writing: it owns w
	closed bool    // no more packets
	failed bool    // a write failed: packets handed over now are dropped
	// An inline write that did not finish: w still holds (part of) its
	// packets, the goroutine writes them before items and reports owed.
	hasOwed bool
	owed    []uint64 // their tokens
	owedApp bool     // the loop left appMu locked for the goroutine
	owedErr error    // the inline write failed with this

	inline, handed atomic.Uint64 // hand-overs written inline / by the goroutine

}

func newSockWriter(conn net.Conn, done chan struct{}, appMu *sync.Mutex, closing *atomic.Bool,
	post func(func()) bool, report func(toks []uint64, failure string)) *sockWriter {
	// Raw system calls (see rawio): a 1 MiB P_DATA is copied into the
	// socket without the scheduler handing the P to another thread.
	conn = rawio.Wrap(conn)
	s := &sockWriter{w: protocol.NewWriter(conn), done: done, appMu: appMu, closing: closing, post: post, report: report}
	s.cond.L = &s.mu
	s.raw, _ = conn.(*rawio.Conn)
	return s
}

// send hands packets over (on the loop). The tokens of packets written
// inline are appended to sent, for the caller to report to the core. ok
// is false when the writer is closed or failed: nothing was taken.
func (s *sockWriter) send(its []wItem, sent []uint64) (_ []uint64, ok bool) {
	if len(its) == 0 {
		return sent, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.failed {
		return sent, false
	}
	if s.raw == nil || s.busy || s.hasOwed || len(s.items) > 0 {
		s.items = append(s.items, its...)
		s.handed.Add(1)
		s.cond.Signal()
		return sent, true
	}
	// The goroutine is idle and has nothing: the loop owns w (and appMu
	// is free: only a writer of this socket's P_DATA takes it, and
	// closeConn, which runs on the loop).
	hasApp := anyAppData(its)
	if hasApp {
		s.appMu.Lock()
	}
	n := len(sent)
	for _, it := range its {
		s.buffer(it)
		if it.token != 0 {
			sent = append(sent, it.token)
		}
	}
	all, err := s.w.FlushSome(rawio.IOVMax, s.writev)
	if all && err == nil {
		if hasApp {
			s.appMu.Unlock()
		}
		s.inline.Add(1)
		return sent, true
	}
	// The socket took part (or failed): the goroutine finishes, in order
	// before anything handed over later, and reports these tokens.
	s.hasOwed, s.owedApp, s.owedErr = true, hasApp, err
	s.owed = append(s.owed[:0], sent[n:]...)
	s.handed.Add(1)
	s.cond.Signal()
	return sent[:n], true
}

// buffer encodes one item into w (by its owner).
func (s *sockWriter) buffer(it wItem) {
	if it.dialect != nil {
		if err := s.w.SetDialect(*it.dialect); err != nil {
			panic(fmt.Sprintf("driver: core handed an invalid dialect: %v", err))
		}
		return
	}
	if err := s.w.Buffer(it.msg); err != nil {
		panic(fmt.Sprintf("driver: core emitted a packet the wire cannot carry: %v", err))
	}
}

// writev is one non-blocking writev of the socket: it takes what fits in
// the socket buffer, possibly nothing.
func (s *sockWriter) writev(iov [][]byte) (int, error) {
	return s.raw.TryWriteBuffers(iov)
}

// close ends the writer after what was handed over (on the loop).
func (s *sockWriter) close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Signal()
	s.mu.Unlock()
}

// run is the writer goroutine: it writes what the loop handed over, in
// order, until closed and empty. After a failure it reports the error
// and the tokens of everything not sent.
func (s *sockWriter) run() {
	defer close(s.done)
	var batch []wItem
	var sent []uint64
	for {
		s.mu.Lock()
		for len(s.items) == 0 && !s.hasOwed && !s.closed {
			s.cond.Wait()
		}
		if len(s.items) == 0 && !s.hasOwed {
			s.mu.Unlock()
			return
		}
		batch = append(batch[:0], s.items...)
		clear(s.items)
		s.items = s.items[:0]
		owed, owedApp, err := s.hasOwed, s.owedApp, s.owedErr
		sent = sent[:0]
		if owed {
			sent = append(sent, s.owed...)
		}
		s.hasOwed, s.owedApp, s.owedErr, s.owed = false, false, nil, s.owed[:0]
		s.busy = true
		s.mu.Unlock()

		if owed && err == nil {
			err = s.w.Flush()
		}
		if owedApp {
			s.appMu.Unlock()
		}
		if err != nil {
			// The batch was not buffered: its tokens were not sent either.
			for _, it := range batch {
				if it.token != 0 {
					sent = append(sent, it.token)
				}
			}
		} else {
			err = s.writeBatch(batch, &sent)
		}
		if err != nil {
			s.fail(err, sent)
			return
		}
		if len(sent) > 0 {
			toks := append([]uint64(nil), sent...)
			s.post(func() { s.report(toks, "") })
		}
		clear(batch)
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}
}

// writeBatch writes items with one writev (Buffer + Flush): under load
// this replaces a syscall per packet. Application payloads are
// referenced until the flush, so a batch with P_DATA holds appMu: a
// connection being closed cannot complete (and hand back) a request
// whose data is still being sent; once it is closing, P_DATA is dropped.
func (s *sockWriter) writeBatch(batch []wItem, sent *[]uint64) error {
	hasApp := anyAppData(batch)
	if hasApp {
		s.appMu.Lock()
		defer s.appMu.Unlock()
	}
	closing := hasApp && s.closing.Load()
	for _, it := range batch {
		if !(closing && it.dialect == nil && isAppData(it.msg)) {
			s.buffer(it)
		}
		if it.token != 0 {
			*sent = append(*sent, it.token)
		}
	}
	return s.w.Flush()
}

// fail reports a write error to the loop with the tokens of every packet
// not sent (they count as sent: the core completed what depended on them
// when the connection dropped, or will).
func (s *sockWriter) fail(err error, sent []uint64) {
	left := append([]uint64(nil), sent...)
	s.mu.Lock()
	s.failed = true
	for _, it := range s.items {
		if it.token != 0 {
			left = append(left, it.token)
		}
	}
	clear(s.items)
	s.items = nil
	s.busy = false
	s.mu.Unlock()
	reason := failureReason("send", err)
	s.post(func() { s.report(left, reason) })
}

// anyAppData reports whether a P_DATA (an application payload) is among
// the items.
func anyAppData(its []wItem) bool {
	for _, it := range its {
		if it.dialect == nil && isAppData(it.msg) {
			return true
		}
	}
	return false
}

// isAppData reports whether a packet's payload is an application buffer
// (P_DATA); other payloads belong to the driver.
func isAppData(m protocol.Message) bool {
	d, ok := m.Packet.(*protocol.Data)
	return ok && d.Cmd == protocol.CmdData
}
