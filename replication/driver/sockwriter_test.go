package driver

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// swHarness runs a sockWriter on a real TCP connection with a stand-in
// for the event loop: send is called from the loop goroutine, and the
// writer's reports run there too.
type swHarness struct {
	t       *testing.T
	sw      *sockWriter
	out     net.Conn // the sending end
	peer    net.Conn // the receiving end
	loop    chan func()
	appMu   sync.Mutex
	closing atomic.Bool

	mu      sync.Mutex // guards the fields below (written on the loop)
	tokens  map[uint64]int
	failure string
}

func newSWHarness(t *testing.T) *swHarness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	out, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	peer := <-acc
	require.NotNil(t, peer)
	// Small buffers: a few 64 KiB packets fill the socket. (The receive
	// buffer stays above the loopback MSS: below it Linux reopens a closed
	// window only through zero-window probes, seconds apart.)
	require.NoError(t, out.(*net.TCPConn).SetWriteBuffer(4096))
	require.NoError(t, peer.(*net.TCPConn).SetReadBuffer(256<<10))
	h := &swHarness{t: t, out: out, peer: peer, loop: make(chan func(), 1024), tokens: map[uint64]int{}}
	post := func(f func()) bool { h.loop <- f; return true }
	report := func(toks []uint64, failure string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, tk := range toks {
			h.tokens[tk]++
		}
		if failure != "" && h.failure == "" {
			h.failure = failure
		}
	}
	h.sw = newSockWriter(out, make(chan struct{}), &h.appMu, &h.closing, post, report)
	go h.sw.run()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for f := range h.loop {
			f()
		}
	}()
	t.Cleanup(func() {
		h.sw.close()
		<-h.sw.done
		out.Close()
		peer.Close()
		close(h.loop)
		<-loopDone
	})
	return h
}

// send hands items over on the loop and records the tokens reported at
// once.
func (h *swHarness) send(its []wItem) bool {
	var ok bool
	done := make(chan struct{})
	h.loop <- func() {
		var sent []uint64
		sent, ok = h.sw.send(its, nil)
		h.mu.Lock()
		for _, tk := range sent {
			h.tokens[tk]++
		}
		h.mu.Unlock()
		close(done)
	}
	<-done
	return ok
}

func (h *swHarness) tokenCounts() (map[uint64]int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[uint64]int, len(h.tokens))
	for k, v := range h.tokens {
		m[k] = v
	}
	return m, h.failure
}

var swDialect = protocol.Dialect{Version: 101}

func swItems(from, n int, payload int) ([]wItem, []byte) {
	var want bytes.Buffer
	w := protocol.NewWriter(&want)
	_ = w.SetDialect(swDialect)
	its := []wItem{{dialect: &swDialect}}
	for i := from; i < from+n; i++ {
		var m protocol.Message
		if payload > 0 && i%2 == 0 {
			m = protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: uint64(i), BlockID: uint64(i), SeqNum: uint32(i),
				Payload: bytes.Repeat([]byte{byte(i)}, payload)}}
		} else {
			m = protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: uint64(i), BlockID: uint64(i), BlockSize: 4096, SeqNum: uint32(i)}}
		}
		_ = w.WriteMessage(m)
		its = append(its, wItem{msg: m, token: uint64(i + 1)})
	}
	return its, want.Bytes()
}

// With a reader keeping up, the loop writes every batch itself and gets
// the tokens back at once; with a stalled reader the socket fills, the
// rest goes to the goroutine, and the bytes still arrive in hand-over
// order with every token reported exactly once. A partly written P_DATA
// keeps appMu locked until the goroutine wrote it.
func TestSockWriterInlineThenHandedInOrder(t *testing.T) {
	h := newSWHarness(t)
	got := make(chan []byte, 1)
	readAll := func(n int) {
		buf := make([]byte, n)
		_, err := io.ReadFull(h.peer, buf)
		require.NoError(t, err)
		got <- buf
	}

	// Phase 1: small batches, read as they come: all inline.
	next := 0
	for range 20 {
		its, b := swItems(next, 3, 0)
		next += 3
		go readAll(len(b))
		require.True(t, h.send(its))
		require.Equal(t, b, <-got)
	}
	require.EqualValues(t, 20, h.sw.inline.Load(), "an idle writer and a reader keeping up: every hand-over written by the loop")
	toks, _ := h.tokenCounts()
	require.Len(t, toks, next, "tokens of inline writes come back from send")

	// Phase 2: nobody reads. P_DATA of 64 KiB fill the socket: the loop
	// is never blocked, the goroutine takes over.
	var phase2 []byte
	for range 10 {
		its, b := swItems(next, 4, 64<<10)
		next += 4
		sent := make(chan bool, 1)
		go func() { sent <- h.send(its) }()
		select {
		case ok := <-sent:
			require.True(t, ok)
		case <-time.After(10 * time.Second):
			t.Fatal("send blocked the loop on a full socket")
		}
		phase2 = append(phase2, b...)
	}
	require.Positive(t, h.sw.handed.Load())
	// 1.3 MB is more than both socket buffers hold: a writer is blocked
	// in a P_DATA, so closeConn would have to wait for it.
	require.False(t, h.appMu.TryLock(), "appMu held while a P_DATA is being written")
	go readAll(len(phase2))
	select {
	case b := <-got:
		require.Equal(t, phase2, b, "bytes on the wire in hand-over order")
	case <-time.After(20 * time.Second):
		t.Fatal("the writer goroutine did not finish")
	}
	require.Eventually(t, func() bool {
		toks, _ := h.tokenCounts()
		return len(toks) == next
	}, 10*time.Second, time.Millisecond)
	toks, failure := h.tokenCounts()
	require.Empty(t, failure)
	for i := 0; i < next; i++ {
		require.Equal(t, 1, toks[uint64(i+1)], "token %d reported once", i+1)
	}
	require.True(t, h.appMu.TryLock(), "appMu free once everything is written")
	h.appMu.Unlock()
}

// A socket whose peer is gone: the failure is reported once, with the
// tokens of everything not sent, and later hand-overs are refused (the
// loop reports their tokens itself).
func TestSockWriterFailure(t *testing.T) {
	h := newSWHarness(t)
	// The peer resets the connection.
	require.NoError(t, h.peer.(*net.TCPConn).SetLinger(0))
	h.peer.Close()
	next := 0
	// Hand-overs go on until the writer noticed the reset and refuses
	// them; the loop then reports the refused tokens itself.
	require.Eventually(t, func() bool {
		its, _ := swItems(next, 2, 4096)
		next += 2
		if h.send(its) {
			return false
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, it := range its {
			if it.token != 0 {
				h.tokens[it.token]++
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "hand-overs are refused after a write failure")
	require.Eventually(t, func() bool {
		_, f := h.tokenCounts()
		return f != ""
	}, 10*time.Second, time.Millisecond)
	toks, failure := h.tokenCounts()
	require.NotEmpty(t, failure)
	for i := 0; i < next; i++ {
		require.Equal(t, 1, toks[uint64(i+1)], "token %d reported once", i+1)
	}
}

// The inline path allocates nothing: it is on every replicated write.
func TestSockWriterInlineAllocatesNothing(t *testing.T) {
	h := newSWHarness(t)
	require.NoError(t, h.out.(*net.TCPConn).SetWriteBuffer(1<<20))
	go func() { _, _ = io.Copy(io.Discard, h.peer) }()
	its, _ := swItems(0, 2, 4096)
	sent, ok := h.sw.send(its, nil) // the dialect, and warm-up
	require.True(t, ok)
	its = its[1:]
	i0 := h.sw.inline.Load()
	allocs := testing.AllocsPerRun(30, func() { sent, _ = h.sw.send(its, sent[:0]) })
	require.EqualValues(t, 31, h.sw.inline.Load()-i0, "every send written inline")
	require.Zero(t, allocs)
}
