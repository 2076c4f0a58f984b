package replication

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/protocol"
)

// connectedPrimary is connectedNode promoted: a Primary whose Secondary
// agreed features feats.
func connectedPrimary(t *testing.T, size int64, feats uint32) (*Node, metadata.Layout) {
	t.Helper()
	n, layout := connectedNode(t, size, feats, RoleSecondary)
	promote(t, n)
	return n, layout
}

// promote makes the connected n Primary, the peer agreeing.
func promote(t *testing.T, n *Node) {
	t.Helper()
	var perr error = ErrIOError
	n.Primary(false, func(err error) { perr = err })
	drain(n)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	drain(n)
	require.NoError(t, perr)
	require.Equal(t, RolePrimary, n.State().Role)
}

// A trim the peer cannot take (it did not agree to TRIM) is not sent and
// joins no epoch: the range is marked out of sync, and the barrier ack
// that counts the one write the peer did get (set_size 1) is accepted.
// Before, the trim counted in the epoch and every such barrier ack was a
// protocol error that dropped the connection.
func TestPrimaryUnsentTrimJoinsNoEpoch(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
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

// AL BEFORE DATA, the other end: an extent stays in the activity log
// while a write to it may still reach the local disk. A P_BARRIER_ACK for
// an epoch whose write is still in flight locally must not drop that
// write's AL reference: were the extent then evicted (a durable AL
// transaction without it; its bitmap bit is clear, the peer has the
// data), a power cut before the local write lands leaves the local block
// old, the peer's new, and nothing (ring or bitmap) marking it. The
// reference goes when the local write completes, as in DRBD.
func TestPrimaryKeepsALExtentUntilLocalWriteDone(t *testing.T) {
	n, layout := connectedPrimary(t, 1<<30, 0)
	ring := make([]byte, layout.ALBytes()) // the AL area as written durably
	var held uint64                        // the local write kept in flight
	inEpoch := uint32(0)
	completed := map[uint64]bool{}
	pump := func() {
		for i := 0; i < 10000 && n.HasReady(); i++ {
			rd := n.Ready()
			metas := append([]MetaWrite(nil), rd.MetaWrites...)
			ops := append([]DiskOp(nil), rd.DiskOps...)
			var acks []protocol.Packet
			for _, m := range rd.Messages {
				switch p := m.Msg.Packet.(type) {
				case *protocol.Data:
					inEpoch++
					acks = append(acks, &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: p.Sector, BlockID: p.BlockID, BlockSize: uint32(len(p.Payload)), SeqNum: p.SeqNum})
				case *protocol.Barrier:
					acks = append(acks, &protocol.BarrierAck{Barrier: p.Barrier, SetSize: inEpoch})
					inEpoch = 0
				}
			}
			for _, c := range rd.Completions {
				require.NoError(t, c.Err)
				completed[c.ID] = true
			}
			n.Advance()
			for _, m := range metas {
				if off := m.Offset - layout.ALByteOffset(); off >= 0 && off < int64(len(ring)) {
					copy(ring[off:], m.Data)
				}
				n.MetaDone(m.ID, nil)
			}
			for _, op := range ops {
				if op.Op == OpWrite && op.Offset == 0 && held == 0 {
					held = op.ID
					continue
				}
				n.DiskDone(op.ID, nil, nil)
			}
			for _, a := range acks {
				require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: a}))
			}
		}
	}
	hot := func() []uint32 {
		rep, err := metadata.ReplayAL(ring, layout.ALStripes, layout.ALStripeSize4k)
		require.NoError(t, err)
		return rep.HotExtents()
	}

	// W1 to extent 0: AL committed, the peer acks it, the local write
	// stays in flight; a FLUSH closes the epoch and the peer acks it.
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	pump()
	require.NotZero(t, held)
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpFlush}))
	pump()
	require.False(t, completed[1], "W1's local write is in flight")
	// Writes to more extents than al-extents: LRU eviction.
	for e := 1; e <= metadata.ALExtentsMin+5; e++ {
		require.NoError(t, n.Propose(Request{ID: uint64(100 + e), Op: OpWrite, Offset: int64(e) << 22, Length: 4096, Data: make([]byte, 4096)}))
		pump()
	}
	require.False(t, completed[1])
	// A power cut now: apply-al must mark extent 0 (its bit is clear).
	require.False(t, n.ldev.bm.Test(0))
	require.Contains(t, hot(), uint32(0), "a write to extent 0 is in flight, yet the durable AL no longer covers it")

	// W1's local write completes: W1 completes and extent 0 may go.
	n.DiskDone(held, nil, nil)
	pump()
	require.True(t, completed[1])
	for e := 1; e <= metadata.ALExtentsMin+5; e++ {
		require.NoError(t, n.Propose(Request{ID: uint64(200 + e), Op: OpWrite, Offset: int64(e) << 22, Length: 4096, Data: make([]byte, 4096)}))
		pump()
	}
	require.NotContains(t, hot(), uint32(0), "extent 0 is evicted once nothing writes to it")
}

// Demotion is refused while an application write is still in flight
// (here: waiting for its activity-log transaction): were it allowed, the
// write's P_DATA would reach the peer after we became Secondary, when the
// peer may be Primary and writing the same blocks. Once the write is done
// the demotion goes through.
func TestSecondaryRefusedWhileWritesInFlight(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, protocol.FeatureTrim|protocol.FeatureWZeroes)
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	rd := n.Ready() // the AL transaction, not done yet
	metas := append([]MetaWrite(nil), rd.MetaWrites...)
	n.Advance()
	require.NotEmpty(t, metas)
	var derr error = ErrIOError
	n.Secondary(func(err error) { derr = err })
	require.ErrorIs(t, derr, ErrDeviceInUse)
	require.Equal(t, RolePrimary, n.State().Role)

	for _, m := range metas {
		n.MetaDone(m.ID, nil)
	}
	done := false
	for i := 0; i < 100 && !done; i++ {
		if !n.HasReady() {
			break
		}
		rd := n.Ready()
		metas := append([]MetaWrite(nil), rd.MetaWrites...)
		ops := append([]DiskOp(nil), rd.DiskOps...)
		var acks []protocol.Packet
		for _, m := range rd.Messages {
			if d, ok := m.Msg.Packet.(*protocol.Data); ok {
				acks = append(acks, &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: d.Sector, BlockID: d.BlockID, BlockSize: 4096, SeqNum: d.SeqNum})
			}
		}
		for _, c := range rd.Completions {
			done = done || c.ID == 1
		}
		n.Advance()
		for _, m := range metas {
			n.MetaDone(m.ID, nil)
		}
		for _, op := range ops {
			n.DiskDone(op.ID, nil, nil)
		}
		for _, a := range acks {
			require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: a}))
		}
	}
	require.True(t, done, "write 1 completed")
	n.Secondary(func(err error) { derr = err })
	drain(n)
	require.NoError(t, derr)
	require.Equal(t, RoleSecondary, n.State().Role)
}

// helloWithUUIDs is the peer's handshake with the given UUIDs, the peer
// UpToDate and this node's disk Inconsistent in its view.
func helloWithUUIDs(t *testing.T, n *Node, cur, bm uint64, peerRole Role) {
	t.Helper()
	data := uint64(n.Size() / 512)
	for _, p := range []protocol.Packet{
		&protocol.ConnectionFeatures{ProtocolMin: 86, ProtocolMax: 101},
		&protocol.Protocol{Cmd: protocol.CmdProtocol, Protocol: 3},
		&protocol.SyncParam{ResyncRate: 250},
		&protocol.Sizes{DiskSize: data, CurrentSize: data, MaxBIOSize: protocol.MaxBIOSize},
		&protocol.UUIDs{Current: cur, Bitmap: bm},
		&protocol.State{State: State{Role: peerRole, Peer: RolePrimary, Conn: Connected, Disk: UpToDate, PDsk: Inconsistent}.Pack()},
	} {
		require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: p}), "%T", p)
	}
}

// A Primary whose disk is Inconsistent (it was SyncTarget) reads from the
// peer, not from its own disk, while a reconnect's handshake is merging
// the peer's bitmap (WFBitMapT): the peer, promoted meanwhile, may have
// written blocks our bitmap does not mark yet.
func TestInconsistentPrimaryReadsFromPeerDuringBitmapExchange(t *testing.T) {
	layout, err := metadata.ComputeLayout(metadata.Internal(), 64<<20, 1, 8)
	require.NoError(t, err)
	data := uint64(layout.MDOffset+int64(layout.BMOffset)*512) / 512
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: metadata.ALExtentsMin, Layout: layout})
	require.NoError(t, err)
	sb := metadata.NewSuperblock(layout, 0)
	sb.UUIDs.Current = 0xABCD00
	r := rand.New(rand.NewSource(1))
	n := NewNode(DefaultConfig(), Options{Rand: r.Uint64})
	require.NoError(t, n.Attach(AttachParams{MaxSectors: data, Super: sb, Layout: layout, Bitmap: bitmap.ForSectors(data), AL: al}))
	require.NoError(t, n.Connect(false))
	n.Connected(false)
	helloWithUUIDs(t, n, 0xABCD00, 0, RoleSecondary)
	drain(n)
	require.Equal(t, WFBitMapT, n.State().Conn, "%s", n.State())
	words := make([]uint64, n.ldev.bm.WordCount())
	words[0] = 1 // block 0 out of sync
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Bitmap{Words: words}}))
	drain(n)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.SyncUUID{UUID: 0x5500}}))
	drain(n)
	require.Equal(t, SyncTarget, n.State().Conn, "%s", n.State())
	promote(t, n)

	// Block 10 is in sync per our bitmap: read locally while SyncTarget.
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpRead, Offset: 10 * 4096, Length: 4096, Data: make([]byte, 4096)}))
	ops, _ := step(n)
	onlyOp(t, ops, OpRead)
	n.DiskDone(ops[0].ID, nil, nil)
	step(n)

	n.Disconnected("test")
	drain(n)
	n.Connected(false)
	helloWithUUIDs(t, n, 0x7700, 0x5500, RoleSecondary) // the peer's new generation
	step(n)
	require.Equal(t, WFBitMapT, n.State().Conn)
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpRead, Offset: 10 * 4096, Length: 4096, Data: make([]byte, 4096)}))
	ops, pks := step(n)
	require.Empty(t, ops, "not read from the local disk in %s", n.State())
	require.Contains(t, pks, protocol.Packet(&protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: 80, BlockID: 2, BlockSize: 4096}))
}

// livePeerTicks ticks n k times, doing every disk and metadata operation
// and reporting every send token; the peer answers every P_PING and
// nothing else. It returns the completions seen and the packets sent.
func livePeerTicks(n *Node, k int) (map[uint64]error, []protocol.Packet) {
	done := map[uint64]error{}
	var sent []protocol.Packet
	o := pumpOpts{onSend: func(m Send) {
		if m.Token != 0 {
			n.Sent(m.Token)
		}
		if e, ok := m.Msg.Packet.(*protocol.Empty); ok && e.Cmd == protocol.CmdPing {
			_ = n.Receive(MetaStream, protocol.Message{Packet: &protocol.Empty{Cmd: protocol.CmdPingAck}})
		}
	}}
	run := func() {
		d, pks, _ := pump(n, o)
		for id, err := range d {
			done[id] = err
		}
		sent = append(sent, pks...)
	}
	run()
	for i := 0; i < k; i++ {
		n.Tick()
		run()
	}
	return done, sent
}

// KO-COUNT: a peer that answers pings but stops answering requests is
// dropped after timeout * ko-count, whatever the request waits for, and
// the request completes (marked out of sync). Each case hung for ever.

// A write sent before the first tick (tick count 0, which meant "nothing
// pending").
func TestKoCountCoversWriteSentAtTickZero(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	limit := n.Config().TimeoutTicks * n.Config().KoCount
	done, _ := livePeerTicks(n, limit+2)
	require.Contains(t, done, uint64(1), "%s", n.State())
	require.Less(t, n.State().Conn, Connected)
}

// A FLUSH whose epoch's P_BARRIER_ACK does not come (its write was acked).
func TestKoCountCoversFlushWaitingForBarrierAck(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	n.Tick()
	require.NoError(t, n.Propose(Request{ID: 1, Op: OpWrite, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	done, sent := livePeerTicks(n, 0)
	for _, p := range sent {
		if d, ok := p.(*protocol.Data); ok {
			require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: d.Sector, BlockID: d.BlockID, BlockSize: uint32(len(d.Payload)), SeqNum: d.SeqNum}}))
		}
	}
	d2, _ := livePeerTicks(n, 0)
	for k, v := range d2 {
		done[k] = v
	}
	require.Contains(t, done, uint64(1))
	require.NoError(t, n.Propose(Request{ID: 2, Op: OpFlush}))
	limit := n.Config().TimeoutTicks * n.Config().KoCount
	d3, _ := livePeerTicks(n, limit+2)
	require.Contains(t, d3, uint64(2), "%s", n.State())
	require.Less(t, n.State().Conn, Connected)
}

// A diskless Primary's read the peer does not answer.
func TestKoCountCoversRemoteRead(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	n.Tick()
	var derr error = ErrIOError
	n.Detach(func(err error) { derr = err })
	livePeerTicks(n, 0)
	require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.StateChgReply{Cmd: protocol.CmdStateChgReply, RetCode: 1}}))
	livePeerTicks(n, 0)
	require.NoError(t, derr)
	require.Equal(t, Diskless, n.State().Disk)
	require.NoError(t, n.Propose(Request{ID: 7, Op: OpRead, Offset: 0, Length: 4096, Data: make([]byte, 4096)}))
	limit := n.Config().TimeoutTicks * n.Config().KoCount
	done, _ := livePeerTicks(n, limit+2)
	require.Contains(t, done, uint64(7), "%s", n.State())
	require.Error(t, done[7], "no disk and no peer: the read fails")
}

// /proc/drbd's ep: is the number of epochs being received (DRBD's
// tconn->epochs: 1 on an idle connection), not a count of the barriers
// ever sent; ua: counts the peer's requests waiting for our answer, not
// 4 KiB pages.
func TestStatsEpochsAndUnacked(t *testing.T) {
	n, _ := connectedPrimary(t, 64<<20, 0)
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, n.Propose(Request{ID: i, Op: OpWrite, Offset: int64(i) * 4096, Length: 4096, Data: make([]byte, 4096)}))
		for k := 0; k < 10 && n.HasReady(); k++ {
			rd := n.Ready()
			ops := append([]DiskOp(nil), rd.DiskOps...)
			metas := append([]MetaWrite(nil), rd.MetaWrites...)
			var pks []protocol.Packet
			for _, m := range rd.Messages {
				pks = append(pks, m.Msg.Packet)
			}
			n.Advance()
			for _, m := range metas {
				n.MetaDone(m.ID, nil)
			}
			for _, op := range ops {
				n.DiskDone(op.ID, nil, nil)
			}
			for _, p := range pks {
				switch p := p.(type) {
				case *protocol.Data:
					require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: p.Sector, BlockID: p.BlockID, BlockSize: uint32(len(p.Payload)), SeqNum: p.SeqNum}}))
				case *protocol.Barrier:
					require.NoError(t, n.Receive(MetaStream, protocol.Message{Packet: &protocol.BarrierAck{Barrier: p.Barrier, SetSize: 1}}))
				}
			}
		}
	}
	drain(n)
	s := n.Stats()
	require.Zero(t, s.PE)
	require.Zero(t, s.AP)
	require.Equal(t, 1, s.EP)

	sec := fuzzPeer(t)
	require.NoError(t, sec.Receive(DataStream, protocol.Message{Packet: &protocol.Data{Cmd: protocol.CmdData, BlockID: 1, SeqNum: 1, Flags: protocol.DPSendWriteAck, Payload: make([]byte, 65536)}}))
	step(sec)
	require.Equal(t, 1, sec.Stats().UA, "one 64 KiB write waiting for its ack")
}
