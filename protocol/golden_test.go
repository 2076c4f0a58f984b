package protocol

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The golden streams are the eight TCP byte streams of a real DRBD 8.4.11
// session (testdata/drbd84-streams/README.md, copied from
// /work/shared/reference so the tests are self-contained).
const goldenDir = "testdata/drbd84-streams"

// goldenStream is one direction of one socket of the trace.
type goldenStream struct {
	file      string
	tcp       string // pcap stream number
	meta      bool   // meta socket (else data)
	connector bool   // the side that connected: it sends P_INITIAL_*
	from      string // "r0" or "r1"
	raw       []byte
}

var goldenName = regexp.MustCompile(`^stream(\d+)-(data|meta)-127\.0\.0\.1_(\d+)-to-127\.0\.0\.1_(\d+)\.bin$`)

func loadGolden(t testing.TB) []goldenStream {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.bin"))
	require.NoError(t, err)
	require.Len(t, files, 8)
	var out []goldenStream
	for _, f := range files {
		m := goldenName.FindStringSubmatch(filepath.Base(f))
		require.NotNil(t, m, f)
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		src, dst := m[3], m[4]
		listener := func(p string) bool { return p == "7788" || p == "7789" }
		s := goldenStream{file: filepath.Base(f), tcp: m[1], meta: m[2] == "meta", connector: listener(dst), raw: raw}
		// Port 7788 is r0's listener, 7789 r1's; the connecting side's
		// ephemeral port belongs to the other resource.
		switch {
		case src == "7788" || dst == "7789":
			s.from = "r0"
		default:
			s.from = "r1"
		}
		out = append(out, s)
	}
	return out
}

// key names a stream like the README: "stream1-data r1->r0".
func (s goldenStream) key() string {
	kind := "data"
	if s.meta {
		kind = "meta"
	}
	to := "r0"
	if s.from == "r0" {
		to = "r1"
	}
	return "stream" + s.tcp + "-" + kind + " " + s.from + "->" + to
}

// agreedDialects decodes both sides' P_CONNECTION_FEATURES of each
// connection (keyed by the data socket's pcap stream number; the meta
// socket is the next number) and agrees on the dialect as drbd_do_features.
func agreedDialects(t testing.TB, streams []goldenStream) map[string]Dialect {
	t.Helper()
	offers := map[string][]ConnectionFeatures{}
	for _, s := range streams {
		if s.meta {
			continue
		}
		b := s.raw
		for {
			m, n, err := Decode(Dialect{}, b)
			require.NoError(t, err, s.file)
			b = b[n:]
			if f, ok := m.Packet.(*ConnectionFeatures); ok {
				offers[s.tcp] = append(offers[s.tcp], *f)
				break
			}
		}
	}
	out := map[string]Dialect{}
	for tcp, o := range offers {
		require.Len(t, o, 2)
		d, err := Agree(o[0], o[1])
		require.NoError(t, err)
		d2, err := Agree(o[1], o[0])
		require.NoError(t, err)
		require.Equal(t, d, d2, "agreement is symmetric")
		out[tcp] = d
		n, err := strconv.Atoi(tcp)
		require.NoError(t, err)
		out[strconv.Itoa(n+1)] = d // its meta socket is the next TCP stream
	}
	return out
}

// decodeGolden reads a stream packet by packet, switching to the agreed
// dialect where DRBD does (after P_CONNECTION_FEATURES on the data socket,
// after P_INITIAL_META or from the start on the meta socket), re-encodes
// every packet and requires the original bytes.
func decodeGolden(t testing.TB, s goldenStream, agreed Dialect) []Message {
	t.Helper()
	d := Dialect{}
	if s.meta && !s.connector {
		d = agreed
	}
	r := NewReader(bytes.NewReader(s.raw), nil)
	require.NoError(t, r.SetDialect(d))
	var out bytes.Buffer
	w := NewWriter(&out)
	require.NoError(t, w.SetDialect(d))
	var msgs []Message
	off := 0
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "%s packet %d at offset %d", s.file, len(msgs), off)
		enc, err := AppendMessage(nil, d, m)
		require.NoError(t, err, "%s packet %d (%v)", s.file, len(msgs), m.Packet.Command())
		require.LessOrEqual(t, off+len(enc), len(s.raw))
		require.Equal(t, s.raw[off:off+len(enc)], enc, "%s packet %d (%v) at offset %d", s.file, len(msgs), m.Packet.Command(), off)
		require.NoError(t, w.WriteMessage(m))
		off += len(enc)
		msgs = append(msgs, m)
		switch m.Packet.(type) {
		case *ConnectionFeatures:
			d = agreed
		case *Initial:
			if s.meta {
				d = agreed
			}
		}
		require.NoError(t, r.SetDialect(d))
		require.NoError(t, w.SetDialect(d))
	}
	require.Equal(t, len(s.raw), off)
	require.True(t, bytes.Equal(s.raw, out.Bytes()), "%s: Writer output differs from the capture", s.file)
	return msgs
}

func countCmds(msgs []Message) map[Cmd]int {
	c := map[Cmd]int{}
	for _, m := range msgs {
		c[m.Packet.Command()]++
	}
	return c
}

// readmeCounts are the per-stream command counts the trace README lists,
// in its words ("AUTH" is a challenge and a response; "..." there means
// more commands follow, which fullCounts pins down).
var readmeCounts = map[string]map[string]int{
	"stream1-data r1->r0": {"PROTOCOL": 1, "UUIDS": 2, "SIZES": 1, "STATE": 4, "AUTH_CHALLENGE": 1, "AUTH_RESPONSE": 1,
		"CSUM_RS_REQUEST": 8, "SYNC_PARAM89": 1, "COMPRESSED_BITMAP": 1, "CONN_ST_CHG_REQ": 1, "INITIAL_DATA": 1, "CONNECTION_FEATURES": 1},
	"stream1-data r0->r1": {"DATA": 64, "BARRIER": 64, "UNPLUG_REMOTE": 122, "PROTOCOL": 1, "UUIDS": 3, "SIZES": 1, "STATE": 3,
		"SYNC_UUID": 1, "AUTH": 2, "STATE_CHG_REQ": 1, "SYNC_PARAM89": 1, "COMPRESSED_BITMAP": 1, "CONNECTION_FEATURES": 1},
	"stream2-meta r0->r1": {"PING": 2, "PING_ACK": 1, "RS_IS_IN_SYNC": 8, "CONN_ST_CHG_REPLY": 1, "INITIAL_META": 1},
	"stream2-meta r1->r0": {"PING": 1, "PING_ACK": 2, "WRITE_ACK": 64, "BARRIER_ACK": 64, "STATE_CHG_REPLY": 1},
	"stream4-data r1->r0": {"OV_REPLY": 2038, "CSUM_RS_REQUEST": 3},
	"stream4-data r0->r1": {"RS_DATA_REPLY": 3, "SYNC_UUID": 1, "OV_REQUEST": 2038},
	"stream5-meta r0->r1": {"OV_RESULT": 1713},
	"stream5-meta r1->r0": {"RS_WRITE_ACK": 3},
}

// readmeCount counts the packets of a README name.
func readmeCount(t testing.TB, got map[Cmd]int, name string) int {
	if name == "AUTH" {
		return got[CmdAuthChallenge] + got[CmdAuthResponse]
	}
	for c, n := range cmdNames {
		if n == "P_"+name {
			return got[c]
		}
	}
	t.Fatalf("README names unknown command %s", name)
	return 0
}

// fullCounts are every command of every stream, as decoded.
var fullCounts = map[string]map[Cmd]int{
	"stream1-data r1->r0": {CmdProtocol: 1, CmdUUIDs: 2, CmdSizes: 1, CmdState: 4, CmdAuthChallenge: 1, CmdAuthResponse: 1,
		CmdCsumRSRequest: 8, CmdSyncParam89: 1, CmdCompressedBitmap: 1, CmdConnStChgReq: 1, CmdInitialData: 1, CmdConnectionFeatures: 1},
	"stream1-data r0->r1": {CmdData: 64, CmdBarrier: 64, CmdUnplugRemote: 122, CmdProtocol: 1, CmdUUIDs: 3, CmdSizes: 1, CmdState: 3,
		CmdSyncUUID: 1, CmdAuthChallenge: 1, CmdAuthResponse: 1, CmdStateChgReq: 1, CmdSyncParam89: 1, CmdCompressedBitmap: 1,
		CmdConnectionFeatures: 1},
	"stream2-meta r0->r1": {CmdPing: 2, CmdPingAck: 1, CmdRSIsInSync: 8, CmdConnStChgReply: 1, CmdInitialMeta: 1},
	"stream2-meta r1->r0": {CmdPing: 1, CmdPingAck: 2, CmdWriteAck: 64, CmdBarrierAck: 64, CmdStateChgReply: 1},
	"stream4-data r1->r0": {CmdOVReply: 2038, CmdCsumRSRequest: 3, CmdProtocol: 1, CmdUUIDs: 1, CmdSizes: 1, CmdState: 3,
		CmdAuthChallenge: 1, CmdAuthResponse: 1, CmdSyncParam89: 1, CmdCompressedBitmap: 1, CmdInitialData: 1, CmdConnectionFeatures: 1},
	"stream4-data r0->r1": {CmdRSDataReply: 3, CmdSyncUUID: 1, CmdOVRequest: 2038, CmdProtocol: 1, CmdUUIDs: 1, CmdSizes: 1,
		CmdState: 2, CmdAuthChallenge: 1, CmdAuthResponse: 1, CmdStateChgReq: 1, CmdSyncParam89: 1, CmdCompressedBitmap: 1,
		CmdConnectionFeatures: 1},
	"stream5-meta r0->r1": {CmdOVResult: 1713, CmdPing: 1, CmdPingAck: 1, CmdInitialMeta: 1},
	"stream5-meta r1->r0": {CmdRSWriteAck: 3, CmdPing: 1, CmdPingAck: 1, CmdStateChgReply: 1},
}

// TestGoldenStreams decodes every packet of the real DRBD 8.4.11 trace,
// re-encodes it byte for byte, and checks the command counts.
func TestGoldenStreams(t *testing.T) {
	t.Parallel()
	streams := loadGolden(t)
	agreed := agreedDialects(t, streams)
	for _, s := range streams {
		t.Run(s.key(), func(t *testing.T) {
			t.Parallel()
			d, ok := agreed[s.tcp]
			require.True(t, ok)
			require.Equal(t, Dialect{Version: 101, Features: FeaturesAll}, d)
			msgs := decodeGolden(t, s, d)
			got := countCmds(msgs)
			require.NotEmpty(t, readmeCounts[s.key()])
			for name, n := range readmeCounts[s.key()] {
				require.Equal(t, n, readmeCount(t, got, name), "%s: %s", s.key(), name)
			}
			require.Equal(t, fullCounts[s.key()], got)
			for _, m := range msgs {
				require.Zero(t, m.Volume, "one volume per resource")
			}
		})
	}
}

// golden returns the decoded messages of the stream with the given key.
func golden(t testing.TB) map[string][]Message {
	t.Helper()
	streams := loadGolden(t)
	agreed := agreedDialects(t, streams)
	out := map[string][]Message{}
	for _, s := range streams {
		out[s.key()] = decodeGolden(t, s, agreed[s.tcp])
	}
	return out
}

func packets[P Packet](msgs []Message) []P {
	var out []P
	for _, m := range msgs {
		if p, ok := m.Packet.(P); ok {
			out = append(out, p)
		}
	}
	return out
}

// TestGoldenSemantics checks values known from how the trace was made
// (README): the auth answers, the net and disk options, the sizes of the
// 8 MiB disks, the checksum resync over zeroed disks, acks that echo their
// requests.
func TestGoldenSemantics(t *testing.T) {
	t.Parallel()
	g := golden(t)

	for _, conn := range []string{"stream1-data", "stream4-data"} {
		for _, dir := range [][2]string{{"r0->r1", "r1->r0"}, {"r1->r0", "r0->r1"}} {
			mine, peer := g[conn+" "+dir[0]], g[conn+" "+dir[1]]
			var challenge, response []byte
			for _, a := range packets[*Auth](peer) {
				if a.Cmd == CmdAuthChallenge {
					challenge = a.Data
				}
			}
			for _, a := range packets[*Auth](mine) {
				if a.Cmd == CmdAuthResponse {
					response = a.Data
				}
			}
			require.Len(t, challenge, ChallengeLen)
			want, err := Response("sha1", "gdrbd-trace", challenge)
			require.NoError(t, err)
			require.Equal(t, want, response, "%s %s answers the peer's challenge", conn, dir[0])
			ok, err := VerifyResponse("sha1", "gdrbd-trace", challenge, response)
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = VerifyResponse("sha1", "wrong-secret", challenge, response)
			require.NoError(t, err)
			require.False(t, ok)

			f := packets[*ConnectionFeatures](mine)
			require.Equal(t, []*ConnectionFeatures{{ProtocolMin: 86, FeatureFlags: FeaturesAll, ProtocolMax: 101}}, f)

			require.Equal(t, []*Protocol{{Cmd: CmdProtocol, Protocol: WireProtocolC}}, packets[*Protocol](mine))

			sp := packets[*SyncParam](mine)
			require.Len(t, sp, 1)
			require.Equal(t, uint32(102400), sp[0].ResyncRate, "--resync-rate=100M")
			require.Equal(t, "md5", sp[0].VerifyAlg)
			require.Equal(t, "md5", sp[0].CsumsAlg)
			require.Zero(t, sp[0].CPlanAhead, "--c-plan-ahead=0")
			require.Equal(t, uint32(10), sp[0].CDelayTarget, "default c-delay-target")
			require.Equal(t, uint32(100), sp[0].CFillTarget, "default c-fill-target")
			require.Equal(t, uint32(102400), sp[0].CMaxRate, "default c-max-rate")

			// 8 MiB = 16384 sectors, less 80 sectors of internal metadata
			// (8 bitmap, 64 activity log, 8 superblock).
			for _, sz := range packets[*Sizes](mine) {
				require.Equal(t, uint64(16304), sz.DiskSize)
				require.Zero(t, sz.UserSize)
				require.Equal(t, uint32(MaxBIOSize), sz.MaxBIOSize)
				require.NotNil(t, sz.QueueLimits, "FeatureWSame agreed")
				require.Equal(t, uint32(512), sz.QueueLimits.LogicalBlockSize)
			}
			for _, cb := range packets[*CompressedBitmap](mine) {
				require.Equal(t, BitmapRLEVLIBits, cb.Encoding&0x0f)
			}
		}
	}

	// The first connection's handshake: both disks Inconsistent, then r0
	// is made Primary with --force.
	st := packets[*State](g["stream1-data r1->r0"])
	require.Equal(t, StateFields{Role: 2, Conn: 8, Disk: 4, PDsk: 6}, st[0].Fields(),
		"Secondary, WFConnection, Inconsistent/DUnknown")
	var sawPrimary bool
	for _, s := range packets[*State](g["stream1-data r0->r1"]) {
		sawPrimary = sawPrimary || s.Fields().Role == 1
	}
	require.True(t, sawPrimary, "r0 reports Primary")

	// Initial sync by checksums over zeroed disks: every P_CSUM_RS_REQUEST
	// carries md5 of zeros and is answered P_RS_IS_IN_SYNC.
	csums := packets[*BlockReq](g["stream1-data r1->r0"])
	require.Len(t, csums, 8)
	insync := packets[*BlockAck](g["stream2-meta r0->r1"])
	require.Len(t, insync, 8)
	var covered uint64
	for i, c := range csums {
		require.Equal(t, CmdCsumRSRequest, c.Cmd)
		require.Equal(t, IDSyncer, c.BlockID)
		sum := md5.Sum(make([]byte, c.BlockSize))
		require.Equal(t, sum[:], c.Digest)
		require.Equal(t, CmdRSIsInSync, insync[i].Cmd)
		require.Equal(t, c.Sector, insync[i].Sector)
		require.Equal(t, c.BlockSize, insync[i].BlockSize)
		require.Equal(t, uint32(i+1), insync[i].SeqNum)
		covered += uint64(c.BlockSize)
	}
	require.Equal(t, uint64(16304*512), covered, "the whole usable disk")

	// 64 writes of 4 KiB under protocol C: each P_DATA asks for a write ack,
	// each P_WRITE_ACK echoes its block id; each epoch is one write.
	data := packets[*Data](g["stream1-data r0->r1"])
	require.Len(t, data, 64)
	acks := packets[*BlockAck](g["stream2-meta r1->r0"])
	require.Len(t, acks, 64)
	for i, d := range data {
		require.Len(t, d.Payload, 4096)
		require.Empty(t, d.Digest)
		require.Equal(t, DPRWSync|DPSendWriteAck, d.Flags)
		require.Equal(t, CmdWriteAck, acks[i].Cmd)
		require.Equal(t, d.BlockID, acks[i].BlockID)
		require.Equal(t, d.Sector, acks[i].Sector)
		require.Equal(t, uint32(len(d.Payload)), acks[i].BlockSize)
	}
	barriers := packets[*Barrier](g["stream1-data r0->r1"])
	backs := packets[*BarrierAck](g["stream2-meta r1->r0"])
	require.Len(t, barriers, 64)
	require.Len(t, backs, 64)
	for i, b := range barriers {
		require.Equal(t, b.Barrier, backs[i].Barrier, "the ack echoes the barrier handle")
		require.Equal(t, uint32(1), backs[i].SetSize)
	}
	require.Equal(t, uint32(0x01000000), barriers[1].Barrier, "epoch 1 in a little-endian kernel's byte order")

	// After the reconnect: checksum resync of three ranges, answered with
	// the source's data and acked as resync writes.
	csums = packets[*BlockReq](g["stream4-data r1->r0"])
	var rsReq []*BlockReq
	for _, c := range csums {
		if c.Cmd == CmdCsumRSRequest {
			rsReq = append(rsReq, c)
		}
	}
	rsData := packets[*Data](g["stream4-data r0->r1"])
	rsAcks := packets[*BlockAck](g["stream5-meta r1->r0"])
	require.Len(t, rsReq, 3)
	require.Len(t, rsData, 3)
	require.Len(t, rsAcks, 3)
	for i, req := range rsReq {
		require.Equal(t, CmdRSDataReply, rsData[i].Cmd)
		require.Equal(t, req.Sector, rsData[i].Sector)
		require.Len(t, rsData[i].Payload, int(req.BlockSize))
		sum := md5.Sum(rsData[i].Payload)
		require.NotEqual(t, req.Digest, sum[:], "the target's checksum differed")
		require.Equal(t, &BlockAck{Cmd: CmdRSWriteAck, Sector: req.Sector, BlockID: IDSyncer, BlockSize: req.BlockSize, SeqNum: uint32(i + 1)}, rsAcks[i])
	}

	// Online verify: 2038 requests of 4 KiB answered by md5 digests; every
	// result says in sync.
	var ovReq, ovRep int
	for _, r := range packets[*BlockReq](g["stream4-data r0->r1"]) {
		require.Equal(t, CmdOVRequest, r.Cmd)
		require.Equal(t, IDSyncer, r.BlockID)
		ovReq++
	}
	for _, r := range csums {
		if r.Cmd == CmdOVReply {
			require.Len(t, r.Digest, md5.Size)
			ovRep++
		}
	}
	require.Equal(t, 2038, ovReq)
	require.Equal(t, ovReq, ovRep)
	res := packets[*BlockAck](g["stream5-meta r0->r1"])
	require.Len(t, res, 1713)
	for _, r := range res {
		require.Equal(t, CmdOVResult, r.Cmd)
		require.Equal(t, IDInSync, r.BlockID)
	}

	// The disconnect: a connection-wide state change to Disconnecting,
	// accepted (SS_SUCCESS).
	req := packets[*StateChgReq](g["stream1-data r1->r0"])
	require.Equal(t, []*StateChgReq{{Cmd: CmdConnStChgReq, Mask: StateFields{Conn: 31}.Pack(), Val: StateFields{Conn: 1}.Pack()}}, req)
	rep := packets[*StateChgReply](g["stream2-meta r0->r1"])
	require.Equal(t, []*StateChgReply{{Cmd: CmdConnStChgReply, RetCode: 1}}, rep)

	// UUIDs: the sync UUID the source sent is its bitmap UUID during the
	// resync and history when it finished, as the later P_UUIDS show.
	su := packets[*SyncUUID](g["stream1-data r0->r1"])
	require.Len(t, su, 1)
	u := packets[*UUIDs](g["stream1-data r0->r1"])
	require.Equal(t, uint64(4), u[0].Current, "UUID_JUST_CREATED before the first sync")
	require.True(t, slices.ContainsFunc(u, func(x *UUIDs) bool { return x.History[0] == su[0].UUID }))
}
