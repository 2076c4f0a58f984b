package replication

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/protocol"
)

// dualPrimary is a Primary with allow-two-primaries, connected to a peer
// that is Primary too; resolve says whether it holds RESOLVE_CONFLICTS.
func dualPrimary(t *testing.T, resolve bool) *Node {
	t.Helper()
	layout, err := metadata.ComputeLayout(metadata.Internal(), 64<<20, 1, 8)
	require.NoError(t, err)
	data := uint64(layout.MDOffset+int64(layout.BMOffset)*512) / 512
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: metadata.ALExtentsMin, Layout: layout})
	require.NoError(t, err)
	sb := metadata.NewSuperblock(layout, 0)
	sb.UUIDs.Current = 0xABCD00
	sb.Flags = metadata.Flags(MDFConsistent | MDFWasUpToDate)
	cfg := DefaultConfig()
	cfg.AllowTwoPrimaries = true
	r := rand.New(rand.NewSource(1))
	n := NewNode(cfg, Options{Rand: r.Uint64})
	require.NoError(t, n.Attach(AttachParams{MaxSectors: data, Super: sb, Layout: layout, Bitmap: bitmap.ForSectors(data), AL: al}))
	require.NoError(t, n.Connect(false))
	n.Connected(resolve)
	hello := []protocol.Packet{
		&protocol.ConnectionFeatures{ProtocolMin: 86, ProtocolMax: 101},
		&protocol.Protocol{Cmd: protocol.CmdProtocol, Protocol: 3, TwoPrimaries: 1},
		&protocol.SyncParam{ResyncRate: 250},
		&protocol.Sizes{DiskSize: data, CurrentSize: data, MaxBIOSize: protocol.MaxBIOSize},
		&protocol.UUIDs{Current: 0xABCD01},
		&protocol.State{State: State{Role: RolePrimary, Peer: RoleSecondary, Conn: Connected, Disk: UpToDate, PDsk: UpToDate}.Pack()},
	}
	for _, p := range hello {
		require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: p}))
	}
	require.Equal(t, Connected, n.State().Conn)
	drain(n)
	promote(t, n)
	require.Equal(t, RolePrimary, n.State().Peer)
	return n
}

// held runs n's Readies, completing metadata writes but keeping the data
// disk ops for the test to complete; it returns those ops, the packets
// sent and the completions.
func held(n *Node) ([]DiskOp, []protocol.Packet, map[uint64]error) {
	done, pks, ops := pump(n, pumpOpts{holdDisk: true})
	return ops, pks, done
}

func writeReq(id uint64, block, blocks int64) Request {
	return Request{ID: id, Op: OpWrite, Offset: block * 4096, Length: blocks * 4096, Data: make([]byte, blocks*4096)}
}

func peerWriteMsg(block, blocks int64, id uint64, seq uint32) protocol.Message {
	return protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: uint64(block) * 8, BlockID: id, SeqNum: seq,
		Flags: protocol.DPSendWriteAck, Payload: make([]byte, blocks*4096)}}
}

func ack(cmd protocol.Cmd, d *protocol.Data, seq uint32) protocol.Message {
	return protocol.Message{Packet: &protocol.BlockAck{Cmd: cmd, Sector: d.Sector, BlockID: d.BlockID, BlockSize: uint32(len(d.Payload)), SeqNum: seq}}
}

func sentData(t *testing.T, pks []protocol.Packet) *protocol.Data {
	t.Helper()
	var got *protocol.Data
	for _, p := range pks {
		if d, ok := p.(*protocol.Data); ok && d.Cmd == protocol.CmdData {
			require.Nil(t, got, "one P_DATA: %v", pks)
			got = d
		}
	}
	require.NotNil(t, got, "a P_DATA: %v", pks)
	return got
}

// oneAck requires exactly one block ack among pks, of kind cmd.
func oneAck(t *testing.T, pks []protocol.Packet, cmd protocol.Cmd) *protocol.BlockAck {
	t.Helper()
	a := acks(pks)
	require.Len(t, a, 1, "block acks: %v", a)
	require.Equal(t, cmd, a[0].Cmd)
	return a[0]
}

func acks(pks []protocol.Packet) []*protocol.BlockAck {
	var out []*protocol.BlockAck
	for _, p := range pks {
		if a, ok := p.(*protocol.BlockAck); ok {
			out = append(out, a)
		}
	}
	return out
}

func writesOf(ops []DiskOp) []DiskOp {
	var out []DiskOp
	for _, op := range ops {
		if op.Op == OpWrite {
			out = append(out, op)
		}
	}
	return out
}

// CONFLICTING WRITES, the resolver: a peer write that crossed our own
// unanswered write to the same blocks is not applied. Covered by ours, it
// is answered P_SUPERSEDED; overlapping only in part, P_RETRY_WRITE. It
// still counts in its epoch's barrier ack. Applied, as before this was
// built, each node would end with the other's data.
func TestResolverSupersedesOrRetriesCrossingPeerWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		peerBlocks int64
		answer     protocol.Cmd
	}{
		{"covered", 1, protocol.CmdSuperseded},
		{"partial", 2, protocol.CmdRetryWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := dualPrimary(t, true)
			require.NoError(t, n.Propose(writeReq(1, 0, 1)))
			ops, pks, _ := held(n)
			mine := sentData(t, pks)
			w := writesOf(ops)
			require.Len(t, w, 1)

			// The peer's write to the same block crossed ours.
			require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, tc.peerBlocks, 77, 1)))
			ops, pks, _ = held(n)
			require.Empty(t, writesOf(ops), "waits for our write's range lock")
			require.Empty(t, acks(pks))

			n.DiskDone(w[0].ID, nil, nil)
			ops, pks, _ = held(n)
			require.Empty(t, writesOf(ops), "the crossing peer write is not applied")
			flushes := ops
			a := oneAck(t, pks, tc.answer)
			require.EqualValues(t, 77, a.BlockID)
			require.Equal(t, mine.SeqNum+1, a.SeqNum, "acks and writes share one sequence")

			require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 5}}))
			ops, pks, _ = held(n)
			for _, op := range append(flushes, ops...) {
				require.Equal(t, OpFlush, op.Op)
				n.DiskDone(op.ID, nil, nil)
				_, more, _ := held(n)
				pks = append(pks, more...)
			}
			require.Contains(t, pks, protocol.Packet(&protocol.BarrierAck{Barrier: 5, SetSize: 1}))

			// Our write completes with the peer's ack as usual.
			require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, mine, 2)))
			_, _, done := held(n)
			require.Equal(t, map[uint64]error{1: nil}, done)
			require.Equal(t, Connected, n.State().Conn)
		})
	}
}

// ACKS BEFORE LATER WRITES: the peer acknowledged our write (ack #2) and
// then wrote the same block (write #3); the write overtook the ack. The
// resolver must not take the two for crossing writes (it would drop the
// peer's newer data and keep ours on its disk only): it holds the write
// until ack #2 arrived, then applies it.
func TestResolverWaitsForAcksNumberedBeforeAPeerWrite(t *testing.T) {
	n := dualPrimary(t, true)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, pks, _ := held(n)
	mine := sentData(t, pks)
	n.DiskDone(writesOf(ops)[0].ID, nil, nil)
	held(n)

	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 3)))
	ops, pks, _ = held(n)
	require.Empty(t, writesOf(ops), "held until ack #2 arrived")
	require.Empty(t, acks(pks), "no P_SUPERSEDED")

	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, mine, 2)))
	ops, pks, done := held(n)
	require.Equal(t, map[uint64]error{1: nil}, done)
	w := writesOf(ops)
	require.Len(t, w, 1, "then applied")
	require.Empty(t, acks(pks))
	n.DiskDone(w[0].ID, nil, nil)
	_, pks, _ = held(n)
	oneAck(t, pks, protocol.CmdWriteAck)
}

// A missing ack does not hold writes forever: after ping-timeout the
// connection is dropped, as DRBD does ("Timed out waiting for missing ack
// packets").
func TestResolverDropsConnectionWhenAnAckStaysMissing(t *testing.T) {
	n := dualPrimary(t, true)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 5)))
	ops, _, _ := held(n)
	require.Empty(t, writesOf(ops))
	for i := 0; i <= n.Config().PingTimeoutTicks && n.State().Conn == Connected; i++ {
		n.Tick()
		held(n)
	}
	require.NotEqual(t, Connected, n.State().Conn)
	require.Zero(t, n.RecvBacklog())
}

// The other node never decides: a peer write crossing our unanswered
// write waits; P_SUPERSEDED completes ours, and then the peer's write is
// applied over it, so both disks end with the resolver's data.
func TestNonResolverAppliesPeerWriteAfterOursIsSuperseded(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, pks, _ := held(n)
	mine := sentData(t, pks)
	n.DiskDone(writesOf(ops)[0].ID, nil, nil)
	_, _, done := held(n)
	require.Empty(t, done)

	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 1)))
	ops, pks, _ = held(n)
	require.Empty(t, writesOf(ops), "waits for the resolver's answer to our write")
	require.Empty(t, acks(pks))

	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdSuperseded, mine, 2)))
	ops, _, done = held(n)
	require.Equal(t, map[uint64]error{1: nil}, done, "ours completes")
	w := writesOf(ops)
	require.Len(t, w, 1, "the resolver's write goes over ours")
	n.DiskDone(w[0].ID, nil, nil)
	_, pks, _ = held(n)
	a := oneAck(t, pks, protocol.CmdWriteAck)
	require.EqualValues(t, 77, a.BlockID)
}

// P_RETRY_WRITE: our write is postponed, the resolver's write is applied,
// its ack sent, and then ours is issued again (locally and to the peer,
// numbered after that ack) and completes once, with the new ack. The
// old request still counts in its epoch's barrier ack (the resolver got
// both).
func TestNonResolverRetriesPostponedWriteAfterPeerWrite(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, pks, _ := held(n)
	first := sentData(t, pks)
	n.DiskDone(writesOf(ops)[0].ID, nil, nil)
	held(n)

	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdRetryWrite, first, 1)))
	_, _, done := held(n)
	require.Empty(t, done, "postponed, not completed")

	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 2, 77, 2)))
	ops, pks, _ = held(n)
	w := writesOf(ops)
	require.Len(t, w, 1, "the resolver's write is applied at once")
	require.EqualValues(t, 0, w[0].Offset)
	require.EqualValues(t, 8192, w[0].Length)
	require.Empty(t, acks(pks))

	n.DiskDone(w[0].ID, nil, nil)
	ops, pks, done = held(n)
	require.Empty(t, done)
	a := oneAck(t, pks, protocol.CmdWriteAck)
	again := sentData(t, pks)
	require.EqualValues(t, 1, again.BlockID)
	require.Greater(t, again.SeqNum, a.SeqNum, "sent after the peer write's ack")
	var ackAt, dataAt int
	for i, p := range pks {
		switch p.(type) {
		case *protocol.BlockAck:
			ackAt = i
		case *protocol.Data:
			dataAt = i
		}
	}
	require.Less(t, ackAt, dataAt)
	w = writesOf(ops)
	require.Len(t, w, 1, "written locally again")
	require.EqualValues(t, 0, w[0].Offset)

	n.DiskDone(w[0].ID, nil, nil)
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, again, 3)))
	_, pks, done = held(n)
	require.Equal(t, map[uint64]error{1: nil}, done, "completed once")

	// The epoch holds both the old request and the new one (nothing
	// completed in between to close it).
	require.Contains(t, pks, protocol.Packet(&protocol.Barrier{Barrier: 1}))
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BarrierAck{Barrier: 1, SetSize: 2}}))
	held(n)
	require.Equal(t, Connected, n.State().Conn)
	require.Zero(t, n.Stats().AP)
	require.Zero(t, n.OutOfSync())
}

// Only the resolver answers P_SUPERSEDED / P_RETRY_WRITE, and only with
// two primaries: anything else is a protocol error.
func TestSupersededFromTheWrongNodeIsAProtocolError(t *testing.T) {
	n := dualPrimary(t, true)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	_, pks, _ := held(n)
	mine := sentData(t, pks)
	require.Error(t, n.Receive(MetaStream, ack(protocol.CmdSuperseded, mine, 1)))
	require.NotEqual(t, Connected, n.State().Conn)

	p, _ := connectedPrimary(t, 64<<20, 0)
	require.NoError(t, p.Propose(writeReq(1, 0, 1)))
	_, pks, _ = held(p)
	mine = sentData(t, pks)
	require.Error(t, p.Receive(MetaStream, ack(protocol.CmdRetryWrite, mine, 1)))
	require.NotEqual(t, Connected, p.State().Conn)
}

// A peer write waiting for the answer to a crossing write of ours when
// the connection drops is not applied; its range lock goes with it (a
// later write of ours to the block is not stuck) and the block is out of
// sync.
func TestWaitingPeerWriteDroppedWithTheConnection(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, _, _ := held(n)
	n.DiskDone(writesOf(ops)[0].ID, nil, nil)
	held(n)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 1)))
	ops, _, _ = held(n)
	require.Empty(t, writesOf(ops))

	n.Disconnected("test")
	ops, _, done := held(n)
	require.Empty(t, writesOf(ops), "not applied")
	require.Equal(t, map[uint64]error{1: nil}, done, "ours completes, on our disk only")
	require.NotZero(t, n.OutOfSync())

	require.NoError(t, n.Propose(writeReq(2, 0, 1)))
	ops, _, _ = held(n)
	require.Len(t, writesOf(ops), 1, "the block's lock is free")
}

// ACK BEFORE UNLOCK: a write of ours queued behind a peer write to the
// same blocks goes out only after that peer write's ack, so it carries a
// higher sequence number and the resolver sees it as later, not as a
// crossing write (which it would drop, keeping its own older data).
func TestOurWriteAfterPeerWriteIsNumberedAfterItsAck(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 1)))
	ops, _, _ := held(n)
	pw := writesOf(ops)
	require.Len(t, pw, 1)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	_, pks, _ := held(n)
	require.Empty(t, pks, "ours waits for the peer write's range lock")

	n.DiskDone(pw[0].ID, nil, nil)
	_, pks, _ = held(n)
	var ackSeq, dataSeq uint32
	for _, p := range pks {
		switch p := p.(type) {
		case *protocol.BlockAck:
			require.Zero(t, dataSeq, "the ack goes out first")
			ackSeq = p.SeqNum
		case *protocol.Data:
			dataSeq = p.SeqNum
		}
	}
	require.NotZero(t, ackSeq)
	require.Greater(t, dataSeq, ackSeq)
}

// postponedAfterItsEpoch is a non-resolver whose write 1 (block 0) the
// resolver told to retry and whose epoch (with write 2, block 5) the
// resolver then acknowledged: write 1 is postponed, out of the transfer
// log, waiting for the resolver's crossing write.
func postponedAfterItsEpoch(t *testing.T) *Node {
	t.Helper()
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	require.NoError(t, n.Propose(writeReq(2, 5, 1)))
	ops, pks, _ := held(n)
	var first *protocol.Data
	for _, p := range pks {
		if d, ok := p.(*protocol.Data); ok && d.BlockID == 1 {
			first = d
		}
	}
	require.NotNil(t, first)
	for _, op := range writesOf(ops) {
		n.DiskDone(op.ID, nil, nil)
	}
	held(n)
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdRetryWrite, first, 1)))
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, &protocol.Data{Sector: 40, BlockID: 2, Payload: make([]byte, 4096)}, 2)))
	_, pks, done := held(n)
	require.Equal(t, map[uint64]error{2: nil}, done, "write 2 completes and closes the epoch")
	require.Contains(t, pks, protocol.Packet(&protocol.Barrier{Barrier: 1}))
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BarrierAck{Barrier: 1, SetSize: 2}}))
	_, _, done = held(n)
	require.Empty(t, done, "the postponed write is not done")
	return n
}

// A postponed write whose epoch the resolver acknowledges (it counted the
// write it told us to retry) is not completed by that barrier ack: it is
// still to be written again, and it is, after the peer's write.
func TestPostponedWriteSurvivesItsEpochsBarrierAck(t *testing.T) {
	n := postponedAfterItsEpoch(t)

	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 3)))
	ops, _, _ := held(n)
	w := writesOf(ops)
	require.Len(t, w, 1)
	n.DiskDone(w[0].ID, nil, nil)
	ops, pks, _ := held(n)
	again := sentData(t, pks)
	require.EqualValues(t, 1, again.BlockID, "written again")
	w = writesOf(ops)
	require.Len(t, w, 1)
	n.DiskDone(w[0].ID, nil, nil)
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, again, 4)))
	_, _, done := held(n)
	require.Equal(t, map[uint64]error{1: nil}, done)
}

// A postponed write whose epoch was already acknowledged completes (on our
// disk only, out of sync) when the connection drops before its restart:
// it is no longer in the transfer log that the disconnect walks.
func TestPostponedWriteCompletesWhenTheConnectionDrops(t *testing.T) {
	n := postponedAfterItsEpoch(t)

	n.Disconnected("test")
	_, _, done := held(n)
	require.Equal(t, map[uint64]error{1: nil}, done)
	require.EqualValues(t, 4096, n.OutOfSync())
	require.Zero(t, n.Stats().AP)
}

// A peer write waiting for the answer to a crossing write of ours holds
// its range lock but no disk I/O, so a detach completes under it. When
// the answer comes, the write must not go to the detached disk (whose
// superblock says clean): it is not applied, and the peer gets P_NEG_ACK
// (before, it was written and acknowledged as on our disk).
func TestPeerWriteWaitingThroughADetachIsNotApplied(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, pks, _ := held(n)
	mine := sentData(t, pks)
	n.DiskDone(writesOf(ops)[0].ID, nil, nil)
	held(n)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 1, 77, 1)))
	ops, _, _ = held(n)
	require.Empty(t, writesOf(ops), "waits for the resolver")

	var detached error = ErrIOError
	called := false
	n.Detach(func(err error) { detached = err; called = true })
	held(n)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	drain(n)
	require.True(t, called, "detach finished while the peer write still waits")
	require.NoError(t, detached)
	require.Equal(t, Diskless, n.State().Disk)

	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdSuperseded, mine, 2)))
	ops, pks, _ = held(n)
	require.Empty(t, writesOf(ops), "not written to the detached disk")
	a := oneAck(t, pks, protocol.CmdNegAck)
	require.EqualValues(t, 77, a.BlockID)
}

// A diskless Primary that does not resolve conflicts applies no peer
// write, so a write of its own the resolver told to retry goes again at
// once; before, nothing restarted it and it hung until ko-count dropped
// the connection.
func TestDisklessNonResolverRetriesAtOnce(t *testing.T) {
	n := dualPrimary(t, false)
	called := false
	n.Detach(func(err error) { called = true })
	held(n)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	drain(n)
	require.True(t, called)
	require.Equal(t, Diskless, n.State().Disk)
	require.Equal(t, Connected, n.State().Conn)
	// the peer learns we are diskless; it stays UpToDate
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	_, pks, _ := held(n)
	first := sentData(t, pks)
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdRetryWrite, first, 1)))
	_, pks, done := held(n)
	require.Empty(t, done)
	again := sentData(t, pks)
	require.EqualValues(t, 1, again.BlockID, "re-sent")
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 2, 77, 2)))
	_, pks, _ = held(n)
	oneAck(t, pks, protocol.CmdNegAck) // the resolver's write: no disk here
	require.NoError(t, n.Receive(MetaStream, ack(protocol.CmdWriteAck, again, 3)))
	_, _, done = held(n)
	require.Equal(t, map[uint64]error{1: nil}, done)
}

// Against a peer below protocol 100 the resolver answers a partial overlap
// with P_SUPERSEDED (as DRBD's e_send_retry_write): the peer completes its
// write as if applied, so the blocks of it outside our write are on the
// peer's disk only; they are marked out of sync for the resync.
func TestOldDialectPartialOverlapIsMarkedOutOfSync(t *testing.T) {
	n := dualPrimary(t, true)
	n.peer.dialect.Version = 96
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, _, _ := held(n)
	w := writesOf(ops)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(0, 2, 77, 1)))
	held(n)
	n.DiskDone(w[0].ID, nil, nil)
	ops, pks, _ := held(n)
	require.Empty(t, writesOf(ops))
	oneAck(t, pks, protocol.CmdSuperseded)
	require.EqualValues(t, 8192, n.OutOfSync(), "the peer's write's blocks")
}

// A peer write with FUA (or a preflush) that the resolver supersedes is
// answered only after a flush: the peer completes it as durable, and what
// overwrote it here, our write, may still be only in the disk's cache.
func TestSupersededFUAWriteIsAnsweredAfterAFlush(t *testing.T) {
	n := dualPrimary(t, true)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	ops, _, _ := held(n)
	w := writesOf(ops)
	fua := peerWriteMsg(0, 1, 77, 1)
	fua.Packet.(*protocol.Data).Flags |= protocol.DPFUA
	require.NoError(t, n.Receive(DataStream, fua))
	held(n)
	n.DiskDone(w[0].ID, nil, nil)
	ops, pks, _ := held(n)
	require.Empty(t, acks(pks), "not answered before the flush")
	require.Empty(t, writesOf(ops))
	var flush *DiskOp
	for i := range ops {
		if ops[i].Op == OpFlush {
			flush = &ops[i]
		}
	}
	require.NotNil(t, flush)
	n.DiskDone(flush.ID, nil, nil)
	_, pks, _ = held(n)
	oneAck(t, pks, protocol.CmdSuperseded)
}

// RESYNC DOES NOT QUEUE BEHIND WAITING WRITES. On the node that does not
// resolve conflicts, serving its peer's resync: a peer write L waiting for
// the answer to our write P holds block 1023; our next write P2 to
// 1023-1024 waits behind L. The peer's P_RS_DATA_REQUEST for block 1024
// (which L does not touch) is served at once. Queued behind P2, as it was,
// it waited for the resolver's answer to P, and the resolver, a SyncTarget
// whose resync lock on block 1024 held back P, waited for this reply:
// the two nodes deadlocked until ko-count.
func TestResyncReadDoesNotQueueBehindWaitingWrites(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 1023, 2))) // P: 1023-1024
	ops, _, _ := held(n)
	for _, op := range writesOf(ops) {
		n.DiskDone(op.ID, nil, nil)
	}
	held(n)
	require.NoError(t, n.Receive(DataStream, peerWriteMsg(1023, 1, 77, 1))) // L: 1023
	ops, _, _ = held(n)
	require.Empty(t, writesOf(ops), "L waits for the answer to P")
	require.NoError(t, n.Propose(writeReq(2, 1023, 2))) // P2: 1023-1024
	ops, _, _ = held(n)
	require.Empty(t, writesOf(ops), "P2 queued behind L")
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.BlockReq{Cmd: protocol.CmdRSDataRequest, Sector: 1024 * 8, BlockID: idSyncer, BlockSize: 4096}}))
	ops, _, _ = held(n)
	var reads int
	for _, op := range ops {
		if op.Op == OpRead {
			reads++
		}
	}
	require.Equal(t, 1, reads, "the resync read of block 1024 is not held back by P2")
}

// A block ack naming a FLUSH request (which never went to the peer as a
// write) is a protocol error, not an answer for it.
func TestBlockAckForAFlushRequestIsAProtocolError(t *testing.T) {
	n := dualPrimary(t, false)
	require.NoError(t, n.Propose(writeReq(1, 0, 1)))
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpFlush}))
	held(n)
	require.Error(t, n.Receive(MetaStream, ack(protocol.CmdSuperseded, &protocol.Data{Sector: 0, BlockID: 2, Payload: make([]byte, 4096)}, 1)))
	require.NotEqual(t, Connected, n.State().Conn)
}
