package replication

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/protocol"
)

// rsRequested reports whether pks hold a P_RS_DATA_REQUEST for sector.
func rsRequested(pks []protocol.Packet, sector uint64) bool {
	for _, p := range pks {
		if r, ok := p.(*protocol.BlockReq); ok && r.Cmd == protocol.CmdRSDataRequest && r.Sector == sector {
			return true
		}
	}
	return false
}

// requestingBlock1 is a Secondary SyncTarget that has just asked its
// source for block 1 (sector 8), its only out-of-sync block.
func requestingBlock1(t *testing.T) *Node {
	t.Helper()
	n := fuzzPeer(t)
	n.ldev.bm.SetRange(1, 2)
	n.startResync(SyncTarget)
	step(n)
	n.Tick()
	_, pks := step(n)
	require.True(t, rsRequested(pks, 8), "%+v", pks)
	return n
}

// A Primary SyncTarget does not fetch blocks an application write of its
// own may not have reached the source with yet: the write's local part is
// done, its P_DATA may still be queued on the source behind an unfinished
// epoch, and a resync read there would return the data from before it,
// which the target would then write over its newer copy and call in sync.
// The blocks are fetched once the write's epoch is acknowledged.
func TestSyncTargetPrimaryWaitsForItsWritesEpoch(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, protocol.FeatureTrim|protocol.FeatureWZeroes)
	n.ldev.bm.SetRange(1, 2) // block 1 (sector 8) out of sync
	n.startResync(SyncTarget)
	step(n)
	require.Equal(t, SyncTarget, n.State().Conn)

	require.NoError(t, n.Propose(Request{ID: 77, Op: OpWrite, Offset: 4096, Length: 4096, Data: make([]byte, 4096)}))
	var write DiskOp
	var data *protocol.Data
	for i := 0; i < 20 && n.HasReady(); i++ {
		rd := n.Ready()
		metas := append([]MetaWrite(nil), rd.MetaWrites...)
		for _, op := range rd.DiskOps {
			if op.Op == OpWrite && op.Offset == 4096 {
				write = op
			}
		}
		for _, m := range rd.Messages {
			if d, ok := m.Msg.Packet.(*protocol.Data); ok {
				data = d
			}
		}
		n.Advance()
		for _, m := range metas {
			n.MetaDone(m.ID, nil)
		}
	}
	require.NotZero(t, write.ID)
	require.NotNil(t, data)
	n.DiskDone(write.ID, nil, nil) // local part done, the range lock released
	step(n)
	n.Tick()
	_, pks := step(n)
	require.False(t, rsRequested(pks, 8), "block 1 fetched while the source may not have write 77")

	// The source acks the write and its epoch: now block 1 may be fetched.
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: data.Sector, BlockID: data.BlockID, BlockSize: 4096, SeqNum: data.SeqNum}}))
	_, pks = step(n)
	var barrier *protocol.Barrier
	for _, p := range pks {
		if b, ok := p.(*protocol.Barrier); ok {
			barrier = b
		}
	}
	require.NotNil(t, barrier, "write 77's completion closes its epoch")
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BarrierAck{Barrier: barrier.Barrier, SetSize: 1}}))
	step(n)
	n.Tick()
	_, pks = step(n)
	require.True(t, rsRequested(pks, 8), "block 1 is fetched once write 77's epoch is acked: %+v", pks)
}

// A resync write still on the SyncTarget's disk when the connection
// drops keeps its range lock until it completes: the next connection does
// not fetch the block again before (its write could run beside the old
// one and land first, then be overwritten by the older data while the
// block is marked in sync), nor write it.
func TestResyncWriteKeepsItsLockAcrossReconnect(t *testing.T) {
	n := requestingBlock1(t)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: 8, BlockID: idSyncer, Payload: make([]byte, 4096)}}))
	ops, _ := step(n)
	old := onlyOp(t, ops, OpWrite)

	n.Disconnected("test")
	step(n)
	n.Connected(false)
	sayHello(t, n, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary)
	step(n)
	require.Equal(t, WFBitMapT, n.State().Conn, "our bit set: a bitmap resync")
	// The source's bitmap (empty: ours has the bit) and sync UUID.
	words := make([]uint64, n.ldev.bm.WordCount())
	for off := 0; off < len(words); off += 500 {
		require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Bitmap{Words: words[off:min(off+500, len(words))]}}))
	}
	step(n)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.SyncUUID{UUID: 0x5550}}))
	step(n)
	require.Equal(t, SyncTarget, n.State().Conn)
	n.Tick()
	_, pks := step(n)
	require.False(t, rsRequested(pks, 8), "block 1 fetched again while the old connection's resync write of it is on the disk")

	n.DiskDone(old.ID, nil, nil)
	step(n)
	require.EqualValues(t, 1, n.ldev.bm.Count(), "the old connection's write does not clear the bit")
	n.Tick()
	_, pks = step(n)
	require.True(t, rsRequested(pks, 8), "%+v", pks)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: 8, BlockID: idSyncer, Payload: make([]byte, 4096)}}))
	ops, _ = step(n)
	nw := onlyOp(t, ops, OpWrite)
	require.Equal(t, int64(8*512), nw.Offset)
	n.DiskDone(nw.ID, nil, nil)
	step(n)
	require.Zero(t, n.ldev.bm.Count(), "block 1 in sync once the newer write landed")
}

// A resync reply that arrives while the SyncTarget detaches its disk (an
// I/O error with on-io-error detach) is answered with P_NEG_ACK, as DRBD
// does: the source counts the blocks as failed instead of waiting for an
// ack that never comes.
func TestResyncReplyWhileDetachingIsNegAcked(t *testing.T) {
	n := requestingBlock1(t)
	n.diskError("write", ErrIOError) // on-io-error detach
	step(n)
	require.True(t, n.ldev == nil || n.ldev.detaching, "detaching: %s", n.State())
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: 8, BlockID: idSyncer, Payload: make([]byte, 4096)}}))
	ops, pks := step(n)
	require.Empty(t, ops, "nothing written")
	require.Contains(t, pks, protocol.Packet(&protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: 8, BlockID: idSyncer, BlockSize: 4096, SeqNum: 1}))
}

// The sync UUID is the bitmap UUID plus UUID_NEW_BM_OFFSET, stored and
// sent as is, as drbd_gen_and_send_sync_uuid does: bit 0 (the UUID came
// from a Primary's current UUID) stays, because discard-younger-primary
// and discard-older-primary read it after a later split brain.
func TestSyncUUIDKeepsThePrimaryBit(t *testing.T) {
	n := fuzzPeer(t)
	l := n.ldev
	l.uuids[uiBitmap] = 0xA5A5_0000_0000_1235
	n.startResyncSource()
	_, pks := step(n)
	want := uint64(0xA5A5_0000_0000_1235) + uuidNewBMOffset
	require.Contains(t, pks, protocol.Packet(&protocol.SyncUUID{UUID: want}))
	require.Equal(t, want, l.uuids[uiBitmap])
	require.Equal(t, uint64(0xA5A5_0000_0000_1235), l.uuids[uiHistory0], "the old bitmap UUID moves to history")
}

// A device whose size is not a multiple of 4 KiB ends in a partial block;
// its resync write, shorter than a block, clears its bit (DRBD's
// drbd_set_in_sync treats a range reaching the end as covering it), or the
// resync would ask for it for ever and never finish.
func TestResyncClearsThePartialLastBlock(t *testing.T) {
	n, _ := connectedNode(t, 64<<20, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary, func(p *AttachParams) {
		p.MaxSectors -= 3
		p.Bitmap = bitmap.ForSectors(p.MaxSectors)
	})
	require.NotZero(t, n.ldev.sizeSectors%8, "a partial last block")
	last := n.ldev.bm.Len() - 1
	n.ldev.bm.Set(last)
	n.startResync(SyncTarget)
	step(n)
	n.Tick()
	_, pks := step(n)
	var req *protocol.BlockReq
	for _, p := range pks {
		if q, ok := p.(*protocol.BlockReq); ok {
			req = q
		}
	}
	require.NotNil(t, req, "%+v", pks)
	require.Less(t, req.BlockSize, uint32(BlockSize))
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: req.Sector, BlockID: idSyncer, Payload: make([]byte, req.BlockSize)}}))
	drain(n)
	require.False(t, n.ldev.bm.Test(last), "%s", n.State())
	n.Tick()
	_, pks = step(n)
	require.False(t, rsRequested(pks, req.Sector), "the block is not asked for again")
}

// A compressed bitmap chunk may end in the middle of a word and the next
// chunk be plain (what did not compress), starting at that word, as
// DRBD's send_bitmap_rle_or_plain sends it: the receiver ORs the word
// again instead of refusing the exchange.
func TestBitmapPlainChunkAfterCompressedMidWord(t *testing.T) {
	a, _ := connectedNode(t, 1<<30, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary)
	b, _ := connectedNode(t, 1<<30, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary)
	a.cfg.UseRLE = true
	bm := a.ldev.bm
	var i uint64
	for ; i < 150000; i += 200 {
		bm.SetRange(i, i+100) // compresses
	}
	r := rand.New(rand.NewPCG(7, 7))
	for ; i < bm.Len(); i++ {
		if r.IntN(2) == 0 {
			bm.Set(i) // does not
		}
	}
	a.sendBitmap()
	_, pks := step(a)
	kinds := ""
	b.st.Conn = WFBitMapT
	for _, p := range pks {
		switch p.(type) {
		case *protocol.Bitmap:
			kinds += "P"
		case *protocol.CompressedBitmap:
			kinds += "C"
		default:
			continue
		}
		require.NoError(t, b.Receive(DataStream, protocol.Message{Packet: p}), "chunks %s", kinds)
	}
	require.Contains(t, kinds, "CP", "a plain chunk follows a compressed one")
	require.True(t, b.ldev.bm.Equal(a.ldev.bm))
}
