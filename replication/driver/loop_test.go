package driver

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
)

// TestRunInlineKeepsEachProducersOrder: goroutines that hand inputs to the
// core through runInline, falling back to post, see them run in the order
// they produced them, never two at once, and both paths are taken.
func TestRunInlineKeepsEachProducersOrder(t *testing.T) {
	nodes := newPair(t, pairOpts{})
	r := nodes[alpha].res
	r.ensureLoop()
	const producers, each = 4, 20000
	var seen [producers][]int // written only by inputs, under loopMu
	var running atomic.Int32
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f := func() {
					if running.Add(1) != 1 {
						t.Error("two inputs ran at once")
					}
					seen[p] = append(seen[p], i)
					running.Add(-1)
				}
				if !r.runInline(f) && !r.post(f) {
					t.Error("loop gone")
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, r.call(testCtx(t), func() {})) // the last posted ones ran
	require.NoError(t, r.call(testCtx(t), func() {
		for p := range producers {
			require.Len(t, seen[p], each)
			for i, v := range seen[p] {
				if v != i {
					t.Fatalf("producer %d: input %d ran as number %d", p, v, i)
				}
			}
		}
	}))
	inline := r.inlineRuns.Load()
	t.Logf("%d of %d inputs ran inline", inline, producers*each)
	require.Positive(t, inline)
	require.Less(t, inline, int64(producers*each))
}

// A reader's inline batch (receiveBuffered) gives the core every packet
// complete in the read-ahead, in order, and stops at a malformed one: the
// connection fails with the protocol error and nothing after it is read;
// a partial packet ends the batch without waiting for the rest.
func TestReceiveBufferedStopsAtMalformed(t *testing.T) {
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	up(t, ctx, nodes)
	waitState(t, ctx, nodes[alpha], "connected", connected)
	r := nodes[alpha].res
	ours := protocol.ConnectionFeatures{ProtocolMin: protocol.ProtocolMin, ProtocolMax: protocol.ProtocolMax, FeatureFlags: r.set.core.Features}
	d, err := protocol.Agree(ours, ours)
	require.NoError(t, err)
	ping, err := protocol.AppendMessage(nil, d, protocol.Message{Packet: &protocol.Empty{Cmd: protocol.CmdPing}})
	require.NoError(t, err)
	reader := func(b []byte) (*protocol.Reader, protocol.Message) {
		rd := protocol.NewReader(bytes.NewReader(b), nil)
		require.NoError(t, rd.SetDialect(d))
		m, err := rd.ReadMessage() // reads all of b into the read-ahead
		require.NoError(t, err)
		return rd, m
	}

	// Three pings and half of a fourth: three received, the half left.
	rd, m := reader(slices.Concat(ping, ping, ping, ping[:5]))
	var failed bool
	var c *peerConn
	require.NoError(t, r.call(ctx, func() {
		c = r.conn
		failed = r.receiveBuffered(c, replication.MetaStream, rd, m, ours, 1)
	}))
	require.False(t, failed)
	require.Equal(t, 5, rd.Buffered())

	// A ping, a bad header, a ping: the first received, the error ends the
	// batch and the connection, the last ping is never read.
	rd, m = reader(slices.Concat(ping, bytes.Repeat([]byte{0xff}, len(ping)), ping))
	require.NoError(t, r.call(ctx, func() {
		require.Same(t, c, r.conn)
		failed = r.receiveBuffered(c, replication.MetaStream, rd, m, ours, 1)
		require.Contains(t, c.failReason, "protocol error")
	}))
	require.True(t, failed)
	require.Equal(t, len(ping), rd.Buffered())
}

// handOver gives ownership to the loop or takes it back: with the loop
// running f runs and release does not; once the loop ended, release runs
// and f never does, however the post races the stop (post alone may say
// true then: a connector trusting it leaked both sockets).
func TestHandOverReleasesWhenTheLoopIsGone(t *testing.T) {
	nodes := newPair(t, pairOpts{})
	r := nodes[alpha].res
	r.ensureLoop()
	var ran, released atomic.Int32
	r.handOver(func() { ran.Add(1) }, func() { released.Add(1) })
	require.EqualValues(t, 1, ran.Load())
	require.Zero(t, released.Load())

	r.stop()
	for range 200 {
		r.handOver(func() { ran.Add(1) }, func() { released.Add(1) })
		select {
		case <-r.inbox: // a post the loop will never take: make room again
		default:
		}
	}
	require.EqualValues(t, 1, ran.Load(), "nothing runs after the loop ended")
	require.EqualValues(t, 200, released.Load(), "every hand-over after the stop is released")
}
