package protocol

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// Dialects the tests run every packet through: before agreement, 8.4 with
// everything, 8.4 with nothing, data integrity, and the older versions whose
// layouts differ (h95 headers, p_rs_param_89, P_SYNC_PARAM, no integrity-alg).
var testDialects = []Dialect{
	{},
	{Version: 101, Features: FeaturesAll},
	{Version: 101},
	{Version: 100, Features: FeaturesAll, IntegrityDigestSize: 20},
	{Version: 96, Features: FeatureTrim},
	{Version: 94},
	{Version: 88},
	{Version: 86},
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// samplePackets returns one packet of every kind that is valid in d, with
// non-zero fields, in an order a session could send them.
func samplePackets(d Dialect) []Message {
	m := func(p Packet) Message { return Message{Packet: p} }
	out := []Message{
		m(&Initial{Cmd: CmdInitialData}),
		m(&Initial{Cmd: CmdInitialMeta}),
		m(&ConnectionFeatures{ProtocolMin: 86, FeatureFlags: FeaturesAll, ProtocolMax: 101}),
	}
	if !d.Agreed() {
		return out
	}
	vol := uint16(0)
	if d.Version >= 100 {
		vol = 3
	}
	v := func(p Packet) Message { return Message{Volume: vol, Packet: p} }
	digest := pattern(d.IntegrityDigestSize, 0x55)
	if len(digest) == 0 {
		digest = nil
	}
	proto := &Protocol{Cmd: CmdProtocol, Protocol: WireProtocolC, AfterSB0P: 1, AfterSB1P: 2, AfterSB2P: 3, ConnFlags: CFDiscardMyData, TwoPrimaries: 1}
	update := &Protocol{Cmd: CmdProtocolUpdate, Protocol: WireProtocolB}
	if d.Version >= 87 {
		proto.IntegrityAlg = "sha1"
	}
	sp := &SyncParam{ResyncRate: 102400}
	if d.Version >= 88 {
		sp.VerifyAlg = "md5"
	}
	if d.Version >= 89 {
		sp.CsumsAlg = "crc32c"
	}
	if d.Version >= 95 {
		sp.CPlanAhead, sp.CDelayTarget, sp.CFillTarget, sp.CMaxRate = 20, 10, 100, 102400
	}
	sizes := &Sizes{DiskSize: 16304, UserSize: 1, CurrentSize: 16304, MaxBIOSize: MaxBIOSize, QueueOrderType: 0, DDSFlags: 2}
	if d.has(FeatureWSame) {
		sizes.QueueLimits = &QueueLimits{PhysicalBlockSize: 4096, LogicalBlockSize: 512, AlignmentOffset: 1, IOMin: 4096, IOOpt: 8192, DiscardEnabled: 1, WriteSameCapable: 1}
	}
	out = append(out,
		m(&Auth{Cmd: CmdAuthChallenge, Data: pattern(ChallengeLen, 1)}),
		m(&Auth{Cmd: CmdAuthResponse, Data: pattern(20, 2)}),
		m(proto), m(update),
		v(sp), v(sizes),
		v(&UUIDs{Current: 0x797f41950ac273cf, Bitmap: 2, History: [2]uint64{3, 4}, DirtyBits: 5, Flags: UUIDFlagInconsistent}),
		v(&State{State: StateFields{Role: 1, Peer: 2, Conn: 10, Disk: 8, PDsk: 4, UserISP: true}.Pack()}),
		v(&StateChgReq{Cmd: CmdStateChgReq, Mask: 3, Val: 1}),
		m(&StateChgReq{Cmd: CmdConnStChgReq, Mask: 0x1f0, Val: 0x10}),
		v(&StateChgReply{Cmd: CmdStateChgReply, RetCode: -10}),
		m(&StateChgReply{Cmd: CmdConnStChgReply, RetCode: 1}),
		v(&SyncUUID{UUID: 0xcf34d17c5ab5b5a6}),
		v(&Bitmap{Words: []uint64{0, 1, ^uint64(0), 0x8000000000000001}}),
		v(&Bitmap{}),
		v(&CompressedBitmap{Encoding: 0x82 | 3<<4, Code: []byte{0xb2, 0x3f, 0xc5, 0x06}}),
		v(&Data{Cmd: CmdData, Sector: 8, BlockID: 0xa0d910c6b4e034ff, SeqNum: 9, Flags: DPRWSync | DPSendWriteAck, Payload: pattern(4096, 3), Digest: digest}),
		v(&Data{Cmd: CmdDataReply, Sector: 16, BlockID: 7, Payload: pattern(512, 4), Digest: digest}),
		v(&Data{Cmd: CmdRSDataReply, Sector: 2400, BlockID: IDSyncer, Payload: pattern(MaxH80Payload+4096, 5), Digest: digest}),
		v(&Data{Cmd: CmdData, Sector: 1, Flags: DPFlush, Digest: digest}),
		v(&Barrier{Barrier: 0x01000000}),
		m(&BarrierAck{Barrier: 0x01000000, SetSize: 7}),
		v(&Empty{Cmd: CmdUnplugRemote}),
		m(&Empty{Cmd: CmdPing}),
		m(&Empty{Cmd: CmdPingAck}),
		v(&BlockReq{Cmd: CmdDataRequest, Sector: 8, BlockID: 11, BlockSize: 4096}),
		v(&BlockReq{Cmd: CmdRSDataRequest, Sector: 16, BlockID: IDSyncer, BlockSize: 4096}),
		v(&BlockReq{Cmd: CmdOVRequest, Sector: 24, BlockID: IDSyncer, BlockSize: 4096}),
		v(&BlockReq{Cmd: CmdCsumRSRequest, Sector: 32, BlockID: IDSyncer, BlockSize: 1 << 20, Digest: pattern(16, 6)}),
		v(&BlockReq{Cmd: CmdOVReply, Sector: 40, BlockID: IDSyncer, BlockSize: 4096, Digest: pattern(MaxDigestSize, 7)}),
		v(&BlockDesc{Cmd: CmdOutOfSync, Sector: 48, BlockSize: 4096}),
		m(&DelayProbe{SeqNum: 1, Offset: 2}),
	)
	for _, c := range []Cmd{CmdRecvAck, CmdWriteAck, CmdRSWriteAck, CmdSuperseded, CmdNegAck, CmdNegDReply,
		CmdNegRSDReply, CmdOVResult, CmdRSIsInSync, CmdRSCancel, CmdRetryWrite} {
		out = append(out, v(&BlockAck{Cmd: c, Sector: 56, BlockID: IDInSync, BlockSize: 4096, SeqNum: 12}))
	}
	if d.has(FeatureTrim) {
		out = append(out, v(&Trim{Cmd: CmdTrim, Sector: 64, BlockID: 13, SeqNum: 14, Flags: DPDiscard | DPSendWriteAck, Size: 1 << 20}))
	}
	if d.has(FeatureWZeroes) {
		out = append(out, v(&Trim{Cmd: CmdZeroes, Sector: 72, BlockID: 15, SeqNum: 16, Flags: DPZeroes, Size: 8 << 20}))
	}
	if d.has(FeatureWSame) {
		out = append(out, v(&WSame{Sector: 80, BlockID: 17, SeqNum: 18, Flags: DPWSame, Size: 1 << 20, Payload: pattern(512, 8), Digest: digest}))
	}
	if d.has(FeatureThinResync) {
		out = append(out,
			v(&BlockReq{Cmd: CmdRSThinReq, Sector: 88, BlockID: IDSyncer, BlockSize: 4096}),
			v(&BlockDesc{Cmd: CmdRSDeallocated, Sector: 96, BlockSize: 4096}))
	}
	return out
}

// TestRoundTrip encodes every packet in every dialect, decodes it with
// Decode, DecodePayload and the Reader, and requires the same packet back.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, d := range testDialects {
		var stream []byte
		msgs := samplePackets(d)
		for _, m := range msgs {
			b, err := AppendMessage(nil, d, m)
			require.NoError(t, err, "%+v %v", d, m.Packet.Command())
			got, n, err := Decode(d, b)
			require.NoError(t, err, "%+v %v", d, m.Packet.Command())
			require.Equal(t, len(b), n)
			require.Equal(t, m, got, "%+v", d)
			stream = append(stream, b...)
		}
		var allocs int
		r := NewReader(bytes.NewReader(stream), func(n int) []byte { allocs++; return make([]byte, n) })
		require.NoError(t, r.SetDialect(d))
		for _, m := range msgs {
			got, err := r.ReadMessage()
			require.NoError(t, err, "%+v %v", d, m.Packet.Command())
			require.Equal(t, m, got, "%+v", d)
		}
		_, err := r.ReadMessage()
		require.ErrorIs(t, err, io.EOF)
		if d.Agreed() {
			require.NotZero(t, allocs, "data payloads come from the Allocator")
		}
	}
}

// TestHeaderChoice pins prepare_header's choice: h80 before agreement and
// below 95, h95 for payloads above 32 KiB from 95, h100 from 100.
func TestHeaderChoice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version int
		length  uint32
		want    HeaderFormat
	}{
		{0, 0, HeaderH80}, {86, 100, HeaderH80}, {94, MaxH80Payload + 1, HeaderH80},
		{95, MaxH80Payload, HeaderH80}, {95, MaxH80Payload + 1, HeaderH95}, {99, MaxBIOSize, HeaderH95},
		{100, 0, HeaderH100}, {101, MaxBIOSize, HeaderH100},
	} {
		d := Dialect{Version: tc.version}
		h := d.HeaderFor(0, CmdData, tc.length)
		require.Equal(t, tc.want, h.Format, "%+v", tc)
		b, err := AppendHeader(nil, h)
		if tc.want == HeaderH80 && tc.length > 0xffff {
			require.ErrorIs(t, err, ErrInvalidPacket)
			continue
		}
		require.NoError(t, err)
		require.Len(t, b, d.HeaderSize())
		got, err := ParseHeader(d, b)
		require.NoError(t, err)
		require.Equal(t, h, got)
	}
	// The layouts, byte by byte.
	b, err := AppendHeader(nil, Header{Format: HeaderH80, Cmd: CmdConnectionFeatures, Length: 72})
	require.NoError(t, err)
	require.Equal(t, []byte{0x83, 0x74, 0x02, 0x67, 0xff, 0xfe, 0x00, 0x48}, b)
	b, err = AppendHeader(nil, Header{Format: HeaderH95, Cmd: CmdData, Length: 0x10018})
	require.NoError(t, err)
	require.Equal(t, []byte{0x83, 0x5a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x18}, b)
	b, err = AppendHeader(nil, Header{Format: HeaderH100, Volume: 2, Cmd: CmdAuthChallenge, Length: 64})
	require.NoError(t, err)
	require.Equal(t, []byte{0x86, 0x20, 0xec, 0x20, 0, 2, 0, 0x10, 0, 0, 0, 0x40, 0, 0, 0, 0}, b)
}

func TestWriterDataNeedsH95BelowVersion95(t *testing.T) {
	t.Parallel()
	// Below 95 DRBD limits bios to 32 KiB; a bigger one cannot be framed.
	_, err := AppendMessage(nil, Dialect{Version: 94}, Message{Packet: &Data{Cmd: CmdData, Payload: make([]byte, 64<<10)}})
	require.ErrorIs(t, err, ErrInvalidPacket)
	_, err = AppendMessage(nil, Dialect{Version: 95}, Message{Packet: &Data{Cmd: CmdData, Payload: make([]byte, 64<<10)}})
	require.NoError(t, err)
}

// rejectCase is a header + payload a peer might send, and the reason DRBD
// 8.4 rejects it.
type rejectCase struct {
	name    string
	d       Dialect
	raw     []byte
	reason  error
	errText string
}

func h100(cmd Cmd, length uint32, payload []byte) []byte {
	b, err := AppendHeader(nil, Header{Format: HeaderH100, Cmd: cmd, Length: length})
	if err != nil {
		panic(err)
	}
	return append(b, payload...)
}

func h80(cmd Cmd, length uint16, payload []byte) []byte {
	b, err := AppendHeader(nil, Header{Format: HeaderH80, Cmd: cmd, Length: uint32(length)})
	if err != nil {
		panic(err)
	}
	return append(b, payload...)
}

func TestReject(t *testing.T) {
	t.Parallel()
	v101 := Dialect{Version: 101, Features: FeaturesAll}
	paddedName := func(s string) []byte { b := make([]byte, SharedSecretMax); copy(b, s); return b }
	sp95 := func(verify []byte) []byte {
		b := append([]byte{0, 0, 0, 1}, verify...)
		b = append(b, paddedName("md5")...)
		return append(b, make([]byte, 16)...)
	}
	cases := []rejectCase{
		{"bad magic", v101, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, ErrBadMagic, "magic 0x01020304"},
		{"h80 after agreement on 100", v101, append(h80(CmdPing, 0, nil), make([]byte, 8)...), ErrBadMagic, ""},
		{"h100 before 100", Dialect{Version: 96}, h100(CmdPing, 0, nil), ErrBadMagic, ""},
		{"h100 padding", v101, append(h100(CmdPing, 0, nil)[:12], 0, 0, 0, 1), ErrBadMagic, "padding"},
		{"unknown command", v101, h100(0x35, 0, nil), ErrUnknownCommand, "P_UNKNOWN(0x35)"},
		{"P_MAY_IGNORE itself", v101, h100(CmdMayIgnore, 0, nil), ErrUnknownCommand, ""},
		{"obsolete", v101, h100(CmdBecomeSyncTarget, 0, nil), ErrUnknownCommand, ""},
		{"before agreement", Dialect{}, h80(CmdPing, 0, nil), ErrUnknownCommand, "precede"},
		{"SYNC_PARAM at 101", v101, h100(CmdSyncParam, 4, make([]byte, 4)), ErrUnknownCommand, ""},
		{"SYNC_PARAM89 at 88", Dialect{Version: 88}, h80(CmdSyncParam89, 132, make([]byte, 132)), ErrUnknownCommand, ""},
		{"TRIM not agreed", Dialect{Version: 101}, h100(CmdTrim, 28, make([]byte, 28)), ErrUnknownCommand, "TRIM"},
		{"WSAME not agreed", Dialect{Version: 101}, h100(CmdWSame, 28+512, make([]byte, 28+512)), ErrUnknownCommand, "WSAME"},
		{"THIN not agreed", Dialect{Version: 101}, h100(CmdRSThinReq, 24, make([]byte, 24)), ErrUnknownCommand, "THIN"},
		{"ping with payload", v101, h100(CmdPing, 1, []byte{0}), ErrBadSize, "want 0 bytes"},
		{"short ack", v101, h100(CmdWriteAck, 23, make([]byte, 23)), ErrBadSize, "want 24 bytes"},
		{"long ack", v101, h100(CmdWriteAck, 25, make([]byte, 25)), ErrBadSize, ""},
		{"features short", Dialect{}, h80(CmdConnectionFeatures, 12, make([]byte, 12)), ErrBadSize, "want 72"},
		{"sizes without qlim under WSAME", v101, h100(CmdSizes, 32, make([]byte, 32)), ErrBadSize, "want 56"},
		{"sizes with qlim without WSAME", Dialect{Version: 101}, h100(CmdSizes, 56, make([]byte, 56)), ErrBadSize, "want 32"},
		{"data too big", v101, h100(CmdData, 24+MaxBIOSize+1, nil), ErrBadSize, ""},
		{"data shorter than p_data", v101, h100(CmdData, 23, make([]byte, 23)), ErrBadSize, ""},
		{"data without integrity digest", Dialect{Version: 101, IntegrityDigestSize: 16}, h100(CmdData, 24, make([]byte, 24)), ErrBadSize, ""},
		{"bitmap over 4 KiB", v101, h100(CmdBitmap, 4096-16+8, make([]byte, 4096-16+8)), ErrBadSize, ""},
		{"bitmap not whole words", v101, h100(CmdBitmap, 12, make([]byte, 12)), ErrBadSize, "multiple of 8"},
		{"compressed bitmap empty", v101, h100(CmdCompressedBitmap, 1, []byte{2}), ErrBadSize, ""},
		{"compressed bitmap over 4 KiB", v101, h100(CmdCompressedBitmap, 4096-15, make([]byte, 4096-15)), ErrBadSize, ""},
		{"challenge too short", v101, h100(CmdAuthChallenge, 63, make([]byte, 63)), ErrBadSize, ""},
		{"challenge too long", v101, h100(CmdAuthChallenge, 129, make([]byte, 129)), ErrBadSize, ""},
		{"response too long", v101, h100(CmdAuthResponse, 65, make([]byte, 65)), ErrBadSize, ""},
		{"ov reply digest too long", v101, h100(CmdOVReply, 24+65, make([]byte, 24+65)), ErrBadSize, ""},
		{"sync param 89 at 95", v101, h100(CmdSyncParam89, 132, make([]byte, 132)), ErrBadSize, "want 148"},
		{"protocol without alg at 101", v101, h100(CmdProtocol, 24, make([]byte, 24)), ErrBadSize, ""},
		{"protocol alg too long", v101, h100(CmdProtocol, 24+65, make([]byte, 24+65)), ErrBadSize, ""},
		{"protocol alg not terminated", v101, h100(CmdProtocol, 28, append(make([]byte, 24), 'm', 'd', '5', 'x')), ErrMalformed, "NUL"},
		{"protocol alg two NULs", v101, h100(CmdProtocol, 29, append(make([]byte, 24), 'm', 'd', '5', 0, 0)), ErrMalformed, ""},
		{"verify-alg not terminated", v101, h100(CmdSyncParam89, 148, sp95(bytes.Repeat([]byte{'a'}, 64))), ErrMalformed, "verify-alg"},
		{"verify-alg garbage after NUL", v101, h100(CmdSyncParam89, 148, sp95(append(paddedName("md5")[:10], bytes.Repeat([]byte{1}, 54)...))), ErrMalformed, "after its NUL"},
		{"sync param 88 without alg", Dialect{Version: 88}, h80(CmdSyncParam, 4, make([]byte, 4)), ErrBadSize, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var asked []int
			r := NewReader(bytes.NewReader(tc.raw), func(n int) []byte { asked = append(asked, n); return make([]byte, n) })
			require.NoError(t, r.SetDialect(tc.d))
			_, err := r.ReadMessage()
			var pe *ProtocolError
			require.ErrorAs(t, err, &pe)
			require.ErrorIs(t, err, tc.reason)
			require.Contains(t, err.Error(), tc.errText)
			require.Empty(t, asked, "nothing allocated for a rejected packet")
			_, err2 := r.ReadMessage()
			require.Equal(t, err, err2, "errors are sticky")
			if len(tc.raw) >= tc.d.HeaderSize() {
				_, _, err = Decode(tc.d, tc.raw)
				require.ErrorIs(t, err, tc.reason, "Decode agrees with the Reader")
			}
		})
	}
}

// TestReaderChecksBeforeAllocating: a header announcing the largest data
// payload makes the Reader ask for exactly that, and one announcing more
// (or a bogus length on an h95) asks for nothing.
func TestReaderChecksBeforeAllocating(t *testing.T) {
	t.Parallel()
	var asked []int
	alloc := func(n int) []byte { asked = append(asked, n); return make([]byte, n) }
	huge := h100(CmdData, 0xffffffff, make([]byte, 24))
	r := NewReader(bytes.NewReader(huge), alloc)
	require.NoError(t, r.SetDialect(Dialect{Version: 101}))
	_, err := r.ReadMessage()
	require.ErrorIs(t, err, ErrBadSize)
	require.Empty(t, asked)

	h95 := []byte{0x83, 0x5a, 0, 0, 0xff, 0xff, 0xff, 0xff}
	r = NewReader(bytes.NewReader(h95), alloc)
	require.NoError(t, r.SetDialect(Dialect{Version: 96}))
	_, err = r.ReadMessage()
	require.ErrorIs(t, err, ErrBadSize)
	require.Empty(t, asked)

	// The largest allowed payload, cut short: allocated, then
	// io.ErrUnexpectedEOF.
	r = NewReader(bytes.NewReader(h100(CmdData, 24+MaxBIOSize, make([]byte, 24+100))), alloc)
	require.NoError(t, r.SetDialect(Dialect{Version: 101}))
	_, err = r.ReadMessage()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, []int{MaxBIOSize}, asked)
}

func TestReaderAllocatorOwnership(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101, IntegrityDigestSize: 16}
	pool := map[*byte]bool{}
	alloc := func(n int) []byte {
		b := make([]byte, n, 4096)
		pool[&b[:1][0]] = true
		return b
	}
	var raw []byte
	var err error
	raw, err = AppendMessage(raw, d, Message{Packet: &Data{Cmd: CmdData, Payload: pattern(4096, 1), Digest: pattern(16, 2)}})
	require.NoError(t, err)
	raw, err = AppendMessage(raw, d, Message{Packet: &BlockReq{Cmd: CmdOVReply, BlockSize: 4096, Digest: pattern(16, 3)}})
	require.NoError(t, err)
	r := NewReader(bytes.NewReader(raw), alloc)
	require.NoError(t, r.SetDialect(d))
	m, err := r.ReadMessage()
	require.NoError(t, err)
	data := m.Packet.(*Data)
	require.True(t, pool[&data.Payload[0]], "payload from the allocator")
	require.True(t, pool[&data.Digest[0]], "digest from the allocator")
	m, err = r.ReadMessage()
	require.NoError(t, err)
	require.True(t, pool[&m.Packet.(*BlockReq).Digest[0]], "verify digest from the allocator")
	require.Equal(t, pattern(4096, 1), data.Payload, "the next read did not touch the first payload")

	bad := NewReader(bytes.NewReader(raw), func(n int) []byte { return make([]byte, n-1) })
	require.NoError(t, bad.SetDialect(d))
	_, err = bad.ReadMessage()
	require.ErrorIs(t, err, errAllocator)
}

func TestReaderSkipsIgnorable(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101}
	raw := h100(0x1234, 5000, make([]byte, 5000))
	raw = append(raw, h100(CmdPing, 0, nil)...)
	r := NewReader(bytes.NewReader(raw), func(int) []byte { panic("no allocation for skipped packets") })
	require.NoError(t, r.SetDialect(d))
	m, err := r.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, &Unknown{Cmd: 0x1234, Length: 5000}, m.Packet)
	m, err = r.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, &Empty{Cmd: CmdPing}, m.Packet)

	// The Writer can send one, to test a peer's skipping.
	b, err := AppendMessage(nil, d, Message{Packet: &Unknown{Cmd: 0x1234, Length: 5000}})
	require.NoError(t, err)
	require.Equal(t, raw[:16+5000], b)
	_, err = AppendMessage(nil, d, Message{Packet: &Unknown{Cmd: 0x35}})
	require.ErrorIs(t, err, ErrInvalidPacket)
}

func TestReaderEOF(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101}
	ping := h100(CmdPing, 0, nil)
	for cut := 1; cut < len(ping); cut++ {
		r := NewReader(bytes.NewReader(ping[:cut]), nil)
		require.NoError(t, r.SetDialect(d))
		_, err := r.ReadMessage()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", cut)
	}
	ack := h100(CmdWriteAck, 24, make([]byte, 24))
	r := NewReader(bytes.NewReader(ack[:20]), nil)
	require.NoError(t, r.SetDialect(d))
	_, err := r.ReadMessage()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)

	failing := io.MultiReader(bytes.NewReader(ping), iotestErrReader{})
	r = NewReader(failing, nil)
	require.NoError(t, r.SetDialect(d))
	_, err = r.ReadMessage()
	require.NoError(t, err)
	_, err = r.ReadMessage()
	require.ErrorIs(t, err, errBoom)
}

var errBoom = errors.New("boom")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errBoom }

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	v101 := Dialect{Version: 101, Features: FeaturesAll}
	for _, tc := range []struct {
		name   string
		d      Dialect
		m      Message
		reason error
	}{
		{"nil packet", v101, Message{}, ErrInvalidPacket},
		{"bad dialect", Dialect{Version: 85}, Message{Packet: &Empty{Cmd: CmdPing}}, ErrDialect},
		{"largest integrity digest is fine", Dialect{Version: 101, IntegrityDigestSize: MaxDigestSize}, Message{Packet: &Empty{Cmd: CmdPing}}, nil},
		{"before agreement", Dialect{}, Message{Packet: &Empty{Cmd: CmdPing}}, ErrDialect},
		{"wrong cmd for type", v101, Message{Packet: &BlockAck{Cmd: CmdData}}, ErrInvalidPacket},
		{"empty with ack cmd", v101, Message{Packet: &Empty{Cmd: CmdWriteAck}}, ErrInvalidPacket},
		{"volume in h80", Dialect{Version: 96}, Message{Volume: 1, Packet: &Empty{Cmd: CmdPing}}, ErrInvalidPacket},
		{"data too big", v101, Message{Packet: &Data{Cmd: CmdData, Payload: make([]byte, MaxBIOSize+1)}}, ErrInvalidPacket},
		{"data digest wrong", Dialect{Version: 101, IntegrityDigestSize: 16}, Message{Packet: &Data{Cmd: CmdData, Digest: make([]byte, 15)}}, ErrInvalidPacket},
		{"alg with NUL", v101, Message{Packet: &Protocol{Cmd: CmdProtocol, IntegrityAlg: "a\x00b"}}, ErrInvalidPacket},
		{"alg too long", v101, Message{Packet: &SyncParam{VerifyAlg: string(make([]byte, 64))}}, ErrInvalidPacket},
		{"alg below 87", Dialect{Version: 86}, Message{Packet: &Protocol{Cmd: CmdProtocol, IntegrityAlg: "md5"}}, ErrInvalidPacket},
		{"csums below 89", Dialect{Version: 88}, Message{Packet: &SyncParam{CsumsAlg: "md5"}}, ErrInvalidPacket},
		{"controller below 95", Dialect{Version: 94}, Message{Packet: &SyncParam{CMaxRate: 1}}, ErrInvalidPacket},
		{"qlim without WSAME", Dialect{Version: 101}, Message{Packet: &Sizes{QueueLimits: &QueueLimits{}}}, ErrInvalidPacket},
		{"trim not agreed", Dialect{Version: 101}, Message{Packet: &Trim{Cmd: CmdTrim}}, ErrDialect},
		{"bitmap too big", v101, Message{Packet: &Bitmap{Words: make([]uint64, 511)}}, ErrInvalidPacket},
		{"compressed empty", v101, Message{Packet: &CompressedBitmap{}}, ErrInvalidPacket},
		{"compressed too big", v101, Message{Packet: &CompressedBitmap{Code: make([]byte, 4080)}}, ErrInvalidPacket},
		{"challenge too short", v101, Message{Packet: &Auth{Cmd: CmdAuthChallenge, Data: make([]byte, 10)}}, ErrInvalidPacket},
		{"digest on a plain request", v101, Message{Packet: &BlockReq{Cmd: CmdDataRequest, Digest: []byte{1}}}, ErrInvalidPacket},
	} {
		_, err := AppendMessage(nil, tc.d, tc.m)
		if tc.reason == nil {
			require.NoError(t, err, tc.name)
			continue
		}
		require.ErrorIs(t, err, tc.reason, tc.name)
	}
	// The largest bitmap that fits: 4096 bytes with the header.
	b, err := AppendMessage(nil, v101, Message{Packet: &Bitmap{Words: make([]uint64, 510)}})
	require.NoError(t, err)
	require.Len(t, b, BitmapPacketMax)
	b, err = AppendMessage(nil, Dialect{Version: 96}, Message{Packet: &Bitmap{Words: make([]uint64, 511)}})
	require.NoError(t, err)
	require.Len(t, b, BitmapPacketMax)
	_, err = AppendMessage(nil, Dialect{Version: 96}, Message{Packet: &Bitmap{Words: make([]uint64, 512)}})
	require.ErrorIs(t, err, ErrInvalidPacket)
}

func TestSyncParamCommandFollowsDialect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version int
		cmd     Cmd
		size    int
	}{{86, CmdSyncParam, 4}, {87, CmdSyncParam, 4}, {88, CmdSyncParam, 8}, {89, CmdSyncParam89, 132}, {94, CmdSyncParam89, 132}, {95, CmdSyncParam89, 148}, {101, CmdSyncParam89, 148}} {
		d := Dialect{Version: tc.version}
		sp := &SyncParam{ResyncRate: 1}
		if tc.version >= 88 {
			sp.VerifyAlg = "md5"
		}
		b, err := AppendMessage(nil, d, Message{Packet: sp})
		require.NoError(t, err)
		h, err := ParseHeader(d, b)
		require.NoError(t, err)
		require.Equal(t, tc.cmd, h.Cmd, "version %d", tc.version)
		require.Equal(t, tc.size, int(h.Length), "version %d", tc.version)
	}
}

func TestAgree(t *testing.T) {
	t.Parallel()
	ours := ConnectionFeatures{ProtocolMin: ProtocolMin, FeatureFlags: FeaturesAll, ProtocolMax: ProtocolMax}
	for _, tc := range []struct {
		theirs ConnectionFeatures
		want   Dialect
		err    bool
	}{
		{ConnectionFeatures{ProtocolMin: 86, FeatureFlags: 0xf, ProtocolMax: 101}, Dialect{Version: 101, Features: 0xf}, false},
		{ConnectionFeatures{ProtocolMin: 86, FeatureFlags: 0x5, ProtocolMax: 96}, Dialect{Version: 96, Features: 0x5}, false},
		{ConnectionFeatures{ProtocolMin: 86, FeatureFlags: 0xff, ProtocolMax: 121}, Dialect{Version: 101, Features: 0xf}, false}, // DRBD 9
		{ConnectionFeatures{ProtocolMin: 90}, Dialect{Version: 90}, false},                                                       // max 0 = min
		{ConnectionFeatures{ProtocolMin: 110, ProtocolMax: 121}, Dialect{}, true},
		{ConnectionFeatures{ProtocolMin: 80, ProtocolMax: 85}, Dialect{}, true},
	} {
		d, err := Agree(ours, tc.theirs)
		if tc.err {
			require.ErrorIs(t, err, ErrIncompatible, "%+v", tc.theirs)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, d)
	}
}

func TestDialectValidation(t *testing.T) {
	t.Parallel()
	r := NewReader(bytes.NewReader(nil), nil)
	w := NewWriter(io.Discard)
	for _, d := range []Dialect{{Version: 85}, {Version: 102}, {Version: 101, IntegrityDigestSize: 65}, {Version: 86, IntegrityDigestSize: 4}, {Version: 101, IntegrityDigestSize: -1}} {
		require.ErrorIs(t, r.SetDialect(d), ErrDialect, "%+v", d)
		require.ErrorIs(t, w.SetDialect(d), ErrDialect, "%+v", d)
	}
	require.Equal(t, Dialect{}, r.Dialect())
	require.Equal(t, Dialect{}, w.Dialect())
}

func TestCmdNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "P_DATA", CmdData.String())
	require.Equal(t, "P_CONNECTION_FEATURES", CmdConnectionFeatures.String())
	require.Equal(t, "P_UNKNOWN(0x35)", Cmd(0x35).String())
	require.Equal(t, SocketMeta, CmdWriteAck.Socket())
	require.Equal(t, SocketData, CmdData.Socket())
	require.Equal(t, SocketBoth, CmdDelayProbe.Socket())
	require.Equal(t, Socket(0), CmdBecomeSyncSource.Socket())
	require.Equal(t, Socket(0), Cmd(0x35).Socket())
	require.Equal(t, "meta", SocketMeta.String())
	require.True(t, Cmd(0x101).Ignorable())
	require.False(t, CmdMayIgnore.Ignorable())
	require.Equal(t, "h95", HeaderH95.String())
	// Every command a sample session sends is known to Socket: the driver
	// routes by it.
	for _, m := range samplePackets(Dialect{Version: 101, Features: FeaturesAll}) {
		require.NotZero(t, m.Packet.Command().Socket(), "%v", m.Packet.Command())
	}
}

func TestProtocolErrorText(t *testing.T) {
	t.Parallel()
	_, _, err := Decode(Dialect{Version: 101}, h100(CmdWriteAck, 3, make([]byte, 3)))
	require.EqualError(t, err, "protocol: wrong packet size: P_WRITE_ACK (0x16) length 3: want 24 bytes")
	var pe *ProtocolError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, CmdWriteAck, pe.Cmd)
	require.Equal(t, uint32(3), pe.Length)
}

// TestReaderBuffered: Buffered tells whether the next packet is already
// read from the stream (the driver runs the last one inline, batches the
// others).
func TestReaderBuffered(t *testing.T) {
	t.Parallel()
	two := append(h100(CmdPing, 0, nil), h100(CmdPingAck, 0, nil)...)
	r := NewReader(bytes.NewReader(two), nil)
	require.NoError(t, r.SetDialect(Dialect{Version: 101}))
	require.Zero(t, r.Buffered())
	_, err := r.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, len(two)/2, r.Buffered())
	_, err = r.ReadMessage()
	require.NoError(t, err)
	require.Zero(t, r.Buffered())
}

// chunks hands out its pieces one Read at a time and counts the Reads.
type chunks struct {
	parts [][]byte
	reads int
}

func (c *chunks) Read(p []byte) (int, error) {
	c.reads++
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; len(c.parts[0]) == 0 {
		c.parts = c.parts[1:]
	}
	return n, nil
}

// Complete is true exactly when ReadMessage would return without another
// Read of the stream: the next packet is whole in the read-ahead (an
// ignorable unknown one too), or its header is already one ReadMessage
// rejects; not for a partial header or payload.
func TestReaderComplete(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101, Features: FeaturesAll}
	ping := h100(CmdPing, 0, nil)
	ack := h100(CmdWriteAck, 24, make([]byte, 24))
	skip := h100(0x1234, 100, make([]byte, 100))
	// One Read: ping, ack, skip and the first 10 bytes of another ack.
	// A second Read: the rest of that ack.
	first := slices.Concat(ping, ack, skip, ack[:10])
	src := &chunks{parts: [][]byte{first, ack[10:]}}
	r := NewReader(src, nil)
	require.NoError(t, r.SetDialect(d))
	require.False(t, r.Complete(), "nothing read yet")
	for _, want := range []Cmd{CmdPing, CmdWriteAck, 0x1234} {
		m, err := r.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, 1, src.reads, "cmd %v", want)
		if u, ok := m.Packet.(*Unknown); ok {
			require.Equal(t, want, u.Cmd)
		}
		if want != 0x1234 {
			require.True(t, r.Complete(), "after %v", want)
		}
	}
	require.False(t, r.Complete(), "a partial header")
	_, err := r.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, 2, src.reads)
	require.False(t, r.Complete(), "nothing buffered")

	// A partial payload.
	r = NewReader(&chunks{parts: [][]byte{slices.Concat(ping, ack[:20])}}, nil)
	require.NoError(t, r.SetDialect(d))
	_, err = r.ReadMessage()
	require.NoError(t, err)
	require.False(t, r.Complete())

	// A header ReadMessage rejects (bad magic; a ping with a payload):
	// complete, and ReadMessage fails without reading.
	for _, bad := range [][]byte{bytes.Repeat([]byte{0xff}, 16), h100(CmdPing, 1, []byte{0})} {
		src = &chunks{parts: [][]byte{slices.Concat(ping, bad)}}
		r = NewReader(src, nil)
		require.NoError(t, r.SetDialect(d))
		_, err = r.ReadMessage()
		require.NoError(t, err)
		require.True(t, r.Complete())
		_, err = r.ReadMessage()
		var pe *ProtocolError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, 1, src.reads)
		require.True(t, r.Complete(), "after an error: ReadMessage returns it at once")
	}
}
