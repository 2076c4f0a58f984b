package replication

import (
	"testing"

	"github.com/stretchr/testify/require"

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
