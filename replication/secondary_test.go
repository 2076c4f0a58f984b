package replication

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// step takes the node's Ready: the disk ops it asks for and the packets
// it sends.
func step(n *Node) ([]DiskOp, []protocol.Packet) {
	var ops []DiskOp
	var pks []protocol.Packet
	for n.HasReady() {
		rd := n.Ready()
		ops = append(ops, rd.DiskOps...)
		for _, m := range rd.Messages {
			pks = append(pks, m.Msg.Packet)
		}
		n.Advance()
	}
	return ops, pks
}

func onlyOp(t *testing.T, ops []DiskOp, want Op) DiskOp {
	t.Helper()
	require.Len(t, ops, 1, "disk ops: %+v", ops)
	require.Equal(t, want, ops[0].Op)
	return ops[0]
}

func peerData(sector uint64, id uint64) protocol.Message {
	return protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: sector, BlockID: id, SeqNum: uint32(id),
		Flags: protocol.DPSendWriteAck, Payload: make([]byte, 4096)}}
}

// EPOCHS IN ORDER with the early flush: the Secondary flushes as soon as
// every write it received for the active epoch completed, before the
// barrier; a write of the same epoch arriving after that flush needs
// another one; the barrier is acknowledged, and the next epoch's writes
// issued, only once a flush issued after the epoch's last write completed
// has completed.
func TestSecondaryFlushesEarlyAndKeepsEpochOrder(t *testing.T) {
	n := fuzzPeer(t)

	require.NoError(t, n.Receive(DataStream, peerData(0, 1)))
	ops, _ := step(n)
	w1 := onlyOp(t, ops, OpWrite)

	// W1 done: its ack, and at once a flush: no barrier has arrived yet.
	n.DiskDone(w1.ID, nil, nil)
	ops, pks := step(n)
	f1 := onlyOp(t, ops, OpFlush)
	require.Len(t, pks, 1)
	require.Equal(t, protocol.CmdWriteAck, pks[0].(*protocol.BlockAck).Cmd)

	// W2 of the same epoch arrives while F1 runs: issued at once.
	require.NoError(t, n.Receive(DataStream, peerData(8, 2)))
	ops, _ = step(n)
	w2 := onlyOp(t, ops, OpWrite)

	// The barrier, then W3 of the next epoch: W3 waits.
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 7}}))
	require.NoError(t, n.Receive(DataStream, peerData(16, 3)))
	ops, pks = step(n)
	require.Empty(t, ops, "W3 must wait for epoch 7")
	require.Empty(t, pks)

	// F1 covers W1 only; W2 is still running: nothing yet.
	n.DiskDone(f1.ID, nil, nil)
	ops, pks = step(n)
	require.Empty(t, ops)
	require.Empty(t, pks)

	// W2 done: a second flush, still no barrier ack and no W3.
	n.DiskDone(w2.ID, nil, nil)
	ops, pks = step(n)
	f2 := onlyOp(t, ops, OpFlush)
	require.Len(t, pks, 1, "only W2's ack")

	// F2 done: the barrier ack (both writes), then W3.
	n.DiskDone(f2.ID, nil, nil)
	ops, pks = step(n)
	require.Len(t, pks, 1)
	require.Equal(t, &protocol.BarrierAck{Barrier: 7, SetSize: 2}, pks[0])
	w3 := onlyOp(t, ops, OpWrite)
	require.Equal(t, int64(16*512), w3.Offset)

	// W3 done: flushed early too; when its barrier comes after the flush
	// completed, the ack goes out without another flush.
	n.DiskDone(w3.ID, nil, nil)
	ops, _ = step(n)
	f3 := onlyOp(t, ops, OpFlush)
	n.DiskDone(f3.ID, nil, nil)
	ops, pks = step(n)
	require.Empty(t, ops)
	require.Empty(t, pks)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 8}}))
	ops, pks = step(n)
	require.Empty(t, ops, "epoch 8 was flushed already")
	require.Equal(t, []protocol.Packet{&protocol.BarrierAck{Barrier: 8, SetSize: 1}}, pks)
}

// With disk-flushes no, no flush at all: the barrier is acknowledged once
// the epoch's writes completed (DRBD's drain).
func TestSecondaryWithoutFlushesDrainsOnly(t *testing.T) {
	n := fuzzPeer(t)
	n.cfg.DiskFlushes = false
	require.NoError(t, n.Receive(DataStream, peerData(0, 1)))
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 3}}))
	require.NoError(t, n.Receive(DataStream, peerData(8, 2)))
	ops, _ := step(n)
	w1 := onlyOp(t, ops, OpWrite)
	n.DiskDone(w1.ID, nil, nil)
	ops, pks := step(n)
	require.Len(t, pks, 2)
	require.Equal(t, &protocol.BarrierAck{Barrier: 3, SetSize: 1}, pks[1])
	require.Equal(t, int64(8*512), onlyOp(t, ops, OpWrite).Offset)
}

// Writes of an epoch trickling in after its early flush do not get a
// flush each: one early flush per epoch, the rest at the barrier.
func TestSecondaryOneEarlyFlushPerEpoch(t *testing.T) {
	n := fuzzPeer(t)
	require.NoError(t, n.Receive(DataStream, peerData(0, 1)))
	ops, _ := step(n)
	n.DiskDone(onlyOp(t, ops, OpWrite).ID, nil, nil)
	ops, _ = step(n)
	n.DiskDone(onlyOp(t, ops, OpFlush).ID, nil, nil)
	for i := uint64(2); i <= 4; i++ {
		require.NoError(t, n.Receive(DataStream, peerData(8*i, i)))
		ops, _ = step(n)
		n.DiskDone(onlyOp(t, ops, OpWrite).ID, nil, nil)
		ops, _ = step(n)
		require.Empty(t, ops, "no flush for write %d before the barrier", i)
	}
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 5}}))
	ops, pks := step(n)
	require.Empty(t, pks, "the barrier waits for a flush covering writes 2-4")
	n.DiskDone(onlyOp(t, ops, OpFlush).ID, nil, nil)
	_, pks = step(n)
	require.Equal(t, []protocol.Packet{&protocol.BarrierAck{Barrier: 5, SetSize: 4}}, pks)
}

// A peer write still on the disk when its connection dropped, completing
// after the node connected again, belongs to the old connection: no
// P_WRITE_ACK for it on the new one (the Primary forgot that request and
// would drop the connection over an ack for an unknown block_id), and the
// new connection's receive backlog (max-buffers) is not paid back for it.
func TestSecondaryStalePeerWriteAfterReconnect(t *testing.T) {
	n := fuzzPeer(t)
	require.NoError(t, n.Receive(DataStream, peerData(0, 1)))
	ops, _ := step(n)
	w := onlyOp(t, ops, OpWrite)

	n.Disconnected("test")
	step(n)
	require.Equal(t, WFConnection, n.State().Conn)
	n.Connected(false)
	sayHello(t, n, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary)
	step(n)
	require.Zero(t, n.RecvBacklog())

	n.DiskDone(w.ID, nil, nil)
	_, pks := step(n)
	require.Empty(t, pks, "nothing is sent on the new connection for the old one's write")
	require.Zero(t, n.RecvBacklog())
	require.Equal(t, Connected, n.State().Conn)

	// The new connection's own writes are acked as before.
	require.NoError(t, n.Receive(DataStream, peerData(8, 2)))
	ops, _ = step(n)
	n.DiskDone(onlyOp(t, ops, OpWrite).ID, nil, nil)
	_, pks = step(n)
	require.Len(t, pks, 1)
	// Our own sequence numbers start again with the connection.
	require.Equal(t, &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: 8, BlockID: 2, BlockSize: 4096, SeqNum: 1}, pks[0])
}

// PEER READS AFTER PEER WRITES: a read request the peer sends after a
// write to the same block (protocol A: that write already completed on
// the Primary) is served only once the write is on our disk, although the
// write waits for the previous epoch; a read of other blocks goes at once.
func TestPeerReadWaitsForEarlierPeerWrite(t *testing.T) {
	n := fuzzPeer(t)
	pd := func(sector, id uint64) protocol.Message {
		return protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: sector, BlockID: id, SeqNum: uint32(id), Payload: make([]byte, 4096)}}
	}
	req := func(sector, id uint64) protocol.Message {
		return protocol.Message{Packet: &protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: sector, BlockID: id, BlockSize: 4096}}
	}
	require.NoError(t, n.Receive(DataStream, pd(0, 1))) // W1, epoch 1
	ops, _ := step(n)
	w1 := onlyOp(t, ops, OpWrite)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Barrier{Barrier: 1}}))
	require.NoError(t, n.Receive(DataStream, pd(8, 2))) // W2, epoch 2: held back
	ops, _ = step(n)
	require.Empty(t, ops)
	require.NoError(t, n.Receive(DataStream, req(8, 99))) // read of W2's block
	require.NoError(t, n.Receive(DataStream, req(16, 98)))
	ops, _ = step(n)
	rd := onlyOp(t, ops, OpRead)
	require.Equal(t, int64(16*512), rd.Offset, "only the read of an unwritten-to block goes at once")

	n.DiskDone(w1.ID, nil, nil) // epoch 1 done, flushed: W2 issued
	ops, _ = step(n)
	fl := onlyOp(t, ops, OpFlush)
	n.DiskDone(fl.ID, nil, nil)
	ops, _ = step(n)
	w2 := onlyOp(t, ops, OpWrite)
	require.Equal(t, int64(8*512), w2.Offset)
	n.DiskDone(w2.ID, nil, nil)
	ops, _ = step(n)
	var reads []int64
	for _, op := range ops {
		if op.Op == OpRead {
			reads = append(reads, op.Offset)
		}
	}
	require.Equal(t, []int64{8 * 512}, reads, "the read of W2's block after W2 (with epoch 2's early flush)")
}

// A write carrying DP_FLUSH takes its range lock before its preflush: a
// later overlapping write of the same epoch cannot slip in between and be
// overwritten by this older one (the Primary applied them in order).
func TestPreflushWriteKeepsItsPlaceAmongOverlappingWrites(t *testing.T) {
	n := fuzzPeer(t)
	a, b := bytes.Repeat([]byte{0xAA}, 4096), bytes.Repeat([]byte{0xBB}, 4096)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: 0, BlockID: 1, SeqNum: 1, Flags: protocol.DPSendWriteAck | protocol.DPFlush, Payload: a}}))
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: 0, BlockID: 2, SeqNum: 2, Flags: protocol.DPSendWriteAck, Payload: b}}))
	disk := make([]byte, 4096)
	for range 10 {
		ops, _ := step(n)
		if len(ops) == 0 {
			break
		}
		for _, op := range ops {
			if op.Op == OpWrite {
				copy(disk, op.Data)
			}
			n.DiskDone(op.ID, nil, nil)
		}
	}
	require.Equal(t, byte(0xBB), disk[0], "the later write is the one on the disk")
}

// A failed preflush fails its write: P_NEG_ACK and the blocks out of
// sync, not P_WRITE_ACK for a write whose predecessors may not be
// durable (the kernel's flush+write bio fails as a whole).
func TestFailedPreflushNegAcksTheWrite(t *testing.T) {
	n := fuzzPeer(t)
	n.cfg.OnIOError = IOErrorPassOn
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, Sector: 0, BlockID: 1, SeqNum: 1, Flags: protocol.DPSendWriteAck | protocol.DPFlush, Payload: make([]byte, 4096)}}))
	ops, _ := step(n)
	fl := onlyOp(t, ops, OpFlush)
	n.DiskDone(fl.ID, ErrIOError, nil)
	ops, pks := step(n)
	for _, op := range ops {
		require.NotEqual(t, OpWrite, op.Op, "the write is not applied")
	}
	require.Contains(t, pks, protocol.Packet(&protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: 0, BlockID: 1, BlockSize: 4096, SeqNum: 1}))
	require.True(t, n.ldev.bm.Test(0), "block 0 out of sync")
}
