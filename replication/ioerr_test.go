package replication

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// on-io-error pass_on: a local write error leaves the disk attached but
// no longer UpToDate as a whole (DRBD's EP_PASS_ON: Inconsistent), so the
// block the write failed on is read from the peer, which has it, not
// from the local disk with its old data.
func TestPassOnWriteErrorReadsTheBlockFromThePeer(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	n.cfg.OnIOError = IOErrorPassOn
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	done, pks, _ := pump(n, pumpOpts{failWrites: true})
	for _, p := range pks {
		if d, ok := p.(*protocol.Data); ok {
			require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: d.Sector, BlockID: d.BlockID, BlockSize: 4096, SeqNum: d.SeqNum}}))
		}
	}
	d2, _, _ := pump(n, pumpOpts{})
	for k, v := range d2 {
		done[k] = v
	}
	require.NoError(t, done[1], "the peer has it")
	require.True(t, n.ldev.bm.Test(0), "marked out of sync")
	require.Equal(t, Inconsistent, n.State().Disk)
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpRead, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	ops, pks := step(n)
	require.Empty(t, ops, "not read from the local disk")
	require.Contains(t, pks, protocol.Packet(&protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: 0, BlockID: 2, BlockSize: 4096}))
}

// A failed activity-log write detaches the disk even with pass_on (DRBD:
// metadata errors always detach): the data write does not go to a disk
// whose log does not cover it.
func TestALWriteErrorDetachesEvenWithPassOn(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	n.cfg.OnIOError = IOErrorPassOn
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 8 << 20, Length: 4096, Data: make([]byte, 4096)}))
	_, _, ops := pump(n, pumpOpts{failMeta: "al"})
	for _, op := range ops {
		require.NotEqual(t, OpWrite, op.Op, "data written after its AL transaction failed")
	}
	require.Less(t, n.State().Disk, Inconsistent, "%s", n.State())
}

// A detach started while a checksum-resync read is in flight finishes
// when that read completes (its callback did not look at the detach).
func TestDetachFinishesAfterChecksumRead(t *testing.T) {
	n := fuzzPeer(t)
	n.cfg.CsumsAlg = "md5"
	n.ldev.bm.SetRange(1, 2)
	n.startResync(SyncTarget)
	drain(n) // its superblock write done
	n.Tick()
	ops, _ := step(n)
	rd := onlyOp(t, ops, OpRead)
	detached := false
	n.Detach(func(error) { detached = true })
	drain(n)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	drain(n)
	require.True(t, n.ldev != nil && n.ldev.detaching, "detaching: %s", n.State())
	require.False(t, detached)
	n.DiskDone(rd.ID, nil, make([]byte, rd.Length))
	drain(n)
	require.True(t, detached, "%s", n.State())
}
