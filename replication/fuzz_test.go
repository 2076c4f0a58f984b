package replication

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/protocol"
)

// fuzzPeer is a Node connected to a peer that said hello properly: the
// fuzzer's bytes then arrive as the peer's next packets.
func fuzzPeer(tb testing.TB) *Node {
	n, _ := connectedNode(tb, 64<<20, protocol.FeatureTrim|protocol.FeatureWZeroes, RolePrimary)
	return n
}

// connectedNode is a Secondary, UpToDate on a disk of size bytes with
// internal metadata (layout), connected to a peer with the same data that
// agreed features feats and is peerRole. attach, if given, changes the
// attach parameters first.
func connectedNode(tb testing.TB, size int64, feats uint32, peerRole Role, attach ...func(*AttachParams)) (*Node, metadata.Layout) {
	tb.Helper()
	layout, err := metadata.ComputeLayout(metadata.Internal(), size, 1, 8)
	if err != nil {
		tb.Fatal(err)
	}
	data := uint64(layout.MDOffset+int64(layout.BMOffset)*512) / 512
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: metadata.ALExtentsMin, Layout: layout})
	if err != nil {
		tb.Fatal(err)
	}
	sb := metadata.NewSuperblock(layout, 0)
	sb.UUIDs.Current = 0xABCD00
	sb.Flags = metadata.Flags(MDFConsistent | MDFWasUpToDate)
	r := rand.New(rand.NewSource(1))
	n := NewNode(DefaultConfig(), Options{Rand: r.Uint64})
	ap := AttachParams{MaxSectors: data, Super: sb, Layout: layout, Bitmap: bitmap.ForSectors(data), AL: al}
	for _, f := range attach {
		f(&ap)
	}
	if err := n.Attach(ap); err != nil {
		tb.Fatal(err)
	}
	if err := n.Connect(false); err != nil {
		tb.Fatal(err)
	}
	n.Connected(false)
	sayHello(tb, n, feats, peerRole)
	if n.State().Conn != Connected {
		tb.Fatalf("not connected after hello: %s", n.State())
	}
	drain(n)
	return n, layout
}

// sayHello is the peer's side of the handshake on a connection n just
// established (Connected): features feats, protocol C, n's size, n's data
// generation, peerRole. With no bits set on n it ends Connected.
func sayHello(tb testing.TB, n *Node, feats uint32, peerRole Role) {
	tb.Helper()
	data := uint64(n.Size() / 512)
	uuid := uint64(0xABCD00)
	if peerRole == RolePrimary {
		uuid |= 1
	}
	hello := []protocol.Packet{
		&protocol.ConnectionFeatures{ProtocolMin: 86, ProtocolMax: 101, FeatureFlags: feats},
		&protocol.Protocol{Cmd: protocol.CmdProtocol, Protocol: 3},
		&protocol.SyncParam{ResyncRate: 250},
		&protocol.Sizes{DiskSize: data, CurrentSize: data, MaxBIOSize: protocol.MaxBIOSize},
		&protocol.UUIDs{Current: uuid},
		&protocol.State{State: State{Role: peerRole, Peer: RoleSecondary, Conn: Connected, Disk: UpToDate, PDsk: UpToDate}.Pack()},
	}
	for _, p := range hello {
		if err := n.Receive(DataStream, protocol.Message{Packet: p}); err != nil {
			tb.Fatalf("hello %T: %v", p, err)
		}
	}
}

// drain completes every operation the node asked for, successfully.
func drain(n *Node) { pump(n, pumpOpts{}) }

// pumpOpts vary pump: data writes fail with ErrIOError when failWrites,
// metadata writes of kind failMeta fail, and onSend sees each packet sent
// once the Ready's operations are done (it may answer it).
type pumpOpts struct {
	failWrites bool
	failMeta   string
	onSend     func(Send)
	// holdDisk leaves the data disk ops to the test (they are returned,
	// not completed).
	holdDisk bool
	// handlers and logged, when set, collect the handlers asked for and
	// the messages logged.
	handlers *[]Handler
	logged   *[]string
}

// pump runs n's Readies (at most 100), doing every metadata write and
// disk op as o says; it returns the completions, the packets sent and the
// disk ops asked for.
func pump(n *Node, o pumpOpts) (map[uint64]error, []protocol.Packet, []DiskOp) {
	done := map[uint64]error{}
	var pks []protocol.Packet
	var all []DiskOp
	for i := 0; i < 100 && n.HasReady(); i++ {
		rd := n.Ready()
		metas := append([]MetaWrite(nil), rd.MetaWrites...)
		ops := append([]DiskOp(nil), rd.DiskOps...)
		msgs := append([]Send(nil), rd.Messages...)
		all = append(all, ops...)
		for _, c := range rd.Completions {
			done[c.ID] = c.Err
		}
		if o.handlers != nil {
			*o.handlers = append(*o.handlers, rd.Handlers...)
		}
		if o.logged != nil {
			for _, e := range rd.Events {
				*o.logged = append(*o.logged, e.Msg)
			}
		}
		n.Advance()
		for _, m := range metas {
			var err error
			if m.What == o.failMeta {
				err = ErrIOError
			}
			n.MetaDone(m.ID, err)
		}
		if o.holdDisk {
			ops = nil
		}
		for _, op := range ops {
			var err error
			if o.failWrites && op.Op == OpWrite {
				err = ErrIOError
			}
			var data []byte
			if op.Op == OpRead && op.Data == nil {
				data = make([]byte, op.Length)
			}
			n.DiskDone(op.ID, err, data)
		}
		for _, m := range msgs {
			pks = append(pks, m.Msg.Packet)
			if o.onSend != nil {
				o.onSend(m)
			}
		}
	}
	return done, pks, all
}

// FuzzNodeReceive feeds arbitrary packet streams from a connected peer to
// the core. It must never panic; a packet it refuses drops the connection
// (a *protocol error*, never a crash), and everything it asks for stays
// consistent (every disk op and metadata write completes cleanly).
func FuzzNodeReceive(f *testing.F) {
	d := protocol.Dialect{Version: 101, Features: protocol.FeatureTrim | protocol.FeatureWZeroes}
	seed := func(ps ...protocol.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			b, err = protocol.AppendMessage(b, d, protocol.Message{Packet: p})
			if err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	f.Add(seed(&protocol.Data{Cmd: protocol.CmdData, Sector: 8, BlockID: 7, SeqNum: 1, Flags: protocol.DPSendWriteAck, Payload: make([]byte, 4096)},
		&protocol.Barrier{Barrier: 1}))
	f.Add(seed(&protocol.Trim{Cmd: protocol.CmdTrim, Sector: 0, BlockID: 1, Size: 1 << 20}, &protocol.Barrier{Barrier: 9}))
	f.Add(seed(&protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: 16, BlockID: 3, BlockSize: 4096}))
	f.Add(seed(&protocol.StateChgReq{Cmd: protocol.CmdStateChgReq, Mask: StateMask{Role: true}.Pack(), Val: State{Role: RolePrimary}.Pack()}))
	f.Add(seed(&protocol.BlockDesc{Cmd: protocol.CmdOutOfSync, Sector: 64, BlockSize: 8192}, &protocol.UUIDs{Current: 5}))
	f.Add(seed(&protocol.Data{Cmd: protocol.CmdData, Sector: 1 << 40, BlockID: 7, Payload: make([]byte, 512)}))
	f.Fuzz(func(t *testing.T, stream []byte) {
		n := fuzzPeer(t)
		r := protocol.NewReader(bytes.NewReader(stream), nil)
		if err := r.SetDialect(d); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 64; i++ {
			m, err := r.ReadMessage()
			if err != nil {
				var pe *protocol.ProtocolError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &pe) {
					t.Fatalf("reader: %v", err)
				}
				return
			}
			s := MetaStream
			if m.Packet.Command().Socket() == protocol.SocketData {
				s = DataStream
			}
			if err := n.Receive(s, m); err != nil && n.State().Conn >= Connected {
				t.Fatalf("refused %T but still connected: %v", m.Packet, err)
			}
			drain(n)
			n.Tick()
			drain(n)
		}
	})
}

// TestPeerRangesBeyondTheDevice: every packet that names a range of the
// device is refused, with a protocol error and the connection dropped,
// when the range lies beyond the end, including sectors so large that
// sector*512 wraps around to a small offset. None may panic or touch the
// bitmap.
func TestPeerRangesBeyondTheDevice(t *testing.T) {
	const wrap = 1<<55 + 8 // *512 overflows int64 to a small offset
	cases := []struct {
		name string
		s    Stream
		p    protocol.Packet
	}{
		{"P_DATA wrapping", DataStream, &protocol.Data{Cmd: protocol.CmdData, Sector: wrap, BlockID: 7, SeqNum: 1, Payload: make([]byte, 512)}},
		{"P_OUT_OF_SYNC wrapping", DataStream, &protocol.BlockDesc{Cmd: protocol.CmdOutOfSync, Sector: wrap, BlockSize: 4096}},
		{"P_OUT_OF_SYNC past the end", DataStream, &protocol.BlockDesc{Cmd: protocol.CmdOutOfSync, Sector: 1 << 30, BlockSize: 4096}},
		{"P_DATA_REQUEST wrapping", DataStream, &protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: wrap, BlockID: 3, BlockSize: 4096}},
		{"P_RS_WRITE_ACK wrapping", MetaStream, &protocol.BlockAck{Cmd: protocol.CmdRSWriteAck, Sector: wrap, BlockID: idSyncer, BlockSize: 4096}},
		{"P_NEG_ACK unknown request", MetaStream, &protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: wrap, BlockID: 12345, BlockSize: 4096}},
		{"P_NEG_ACK resync wrapping", MetaStream, &protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: wrap, BlockID: idSyncer, BlockSize: 4096}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := fuzzPeer(t)
			oos := n.Stats().OOS
			err := n.Receive(tc.s, protocol.Message{Packet: tc.p})
			require.Error(t, err)
			require.Less(t, n.State().Conn, Connected, "still connected after %v", err)
			require.Equal(t, oos, n.Stats().OOS, "the bitmap changed")
		})
	}
}
