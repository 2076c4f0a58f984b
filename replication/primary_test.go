package replication

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// connectedPrimary is connectedNode promoted: a Primary whose Secondary
// agreed features feats.
func connectedPrimary(t *testing.T, feats uint32) *Node {
	t.Helper()
	n := connectedNode(t, feats, RoleSecondary)
	var perr error = ErrIOError
	n.Primary(false, func(err error) { perr = err })
	drain(n)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	drain(n)
	require.NoError(t, perr)
	require.Equal(t, RolePrimary, n.State().Role)
	return n
}

// A trim the peer cannot take (it did not agree to TRIM) is not sent and
// joins no epoch: the range is marked out of sync, and the barrier ack
// that counts the one write the peer did get (set_size 1) is accepted.
// Before, the trim counted in the epoch and every such barrier ack was a
// protocol error that dropped the connection.
func TestPrimaryUnsentTrimJoinsNoEpoch(t *testing.T) {
	n := connectedPrimary(t, 0)
	done := map[uint64]error{}
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpTrim, Offset: 8192, Length: 4096}))
	var sent []protocol.Packet
	for i := 0; i < 100 && n.HasReady(); i++ {
		rd := n.Ready()
		metas := append([]MetaWrite(nil), rd.MetaWrites...)
		ops := append([]DiskOp(nil), rd.DiskOps...)
		for _, m := range rd.Messages {
			sent = append(sent, m.Msg.Packet)
		}
		for _, c := range rd.Completions {
			done[c.ID] = c.Err
		}
		n.Advance()
		for _, m := range metas {
			n.MetaDone(m.ID, nil)
		}
		for _, op := range ops {
			n.DiskDone(op.ID, nil, nil)
		}
	}
	var barrier *protocol.Barrier
	datas := 0
	for _, p := range sent {
		switch p := p.(type) {
		case *protocol.Data:
			datas++
			require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: p.Sector, BlockID: p.BlockID, BlockSize: uint32(len(p.Payload)), SeqNum: p.SeqNum}}))
		case *protocol.Barrier:
			barrier = p
		case *protocol.Trim:
			t.Fatal("a trim sent to a peer that did not agree to TRIM")
		}
	}
	for n.HasReady() {
		rd := n.Ready()
		for _, c := range rd.Completions {
			done[c.ID] = c.Err
		}
		for _, m := range rd.Messages {
			if b, ok := m.Msg.Packet.(*protocol.Barrier); ok {
				barrier = b
			}
		}
		n.Advance()
	}
	require.Equal(t, 1, datas)
	require.Equal(t, map[uint64]error{1: nil, 2: nil}, done, "both requests complete")
	require.NotNil(t, barrier, "the write's completion closed its epoch")
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BarrierAck{Barrier: barrier.Barrier, SetSize: 1}}))
	drain(n)
	require.Equal(t, Connected, n.State().Conn)
	require.EqualValues(t, 4, n.Stats().OOS, "the trimmed range (KiB) waits for a resync")
}
