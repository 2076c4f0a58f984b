package protocol

// Cmd is a DRBD packet command number (enum drbd_packet in DRBD 8.4).
type Cmd uint16

// Command numbers of DRBD 8.4 (drbd_protocol.h). The comment says which
// socket carries each.
const (
	CmdData             Cmd = 0x00 // data
	CmdDataReply        Cmd = 0x01 // data: answer to CmdDataRequest
	CmdRSDataReply      Cmd = 0x02 // data: answer to CmdRSDataRequest / CmdCsumRSRequest
	CmdBarrier          Cmd = 0x03 // data
	CmdBitmap           Cmd = 0x04 // data: plain bitmap words
	CmdBecomeSyncTarget Cmd = 0x05 // obsolete (< 8.4)
	CmdBecomeSyncSource Cmd = 0x06 // obsolete (< 8.4)
	CmdUnplugRemote     Cmd = 0x07 // data: a hint, no payload
	CmdDataRequest      Cmd = 0x08 // data
	CmdRSDataRequest    Cmd = 0x09 // data
	CmdSyncParam        Cmd = 0x0a // data: pre-89 resync parameters
	CmdProtocol         Cmd = 0x0b // data
	CmdUUIDs            Cmd = 0x0c // data
	CmdSizes            Cmd = 0x0d // data
	CmdState            Cmd = 0x0e // data
	CmdSyncUUID         Cmd = 0x0f // data
	CmdAuthChallenge    Cmd = 0x10 // data
	CmdAuthResponse     Cmd = 0x11 // data
	CmdStateChgReq      Cmd = 0x12 // data
	CmdPing             Cmd = 0x13 // meta
	CmdPingAck          Cmd = 0x14 // meta
	CmdRecvAck          Cmd = 0x15 // meta: protocol B
	CmdWriteAck         Cmd = 0x16 // meta: protocol C
	CmdRSWriteAck       Cmd = 0x17 // meta: a write ack that also sets in-sync
	CmdSuperseded       Cmd = 0x18 // meta: two-primaries conflict
	CmdNegAck           Cmd = 0x19 // meta: peer could not write
	CmdNegDReply        Cmd = 0x1a // meta: peer could not read (data request)
	CmdNegRSDReply      Cmd = 0x1b // meta: peer could not read (resync request)
	CmdBarrierAck       Cmd = 0x1c // meta
	CmdStateChgReply    Cmd = 0x1d // meta
	CmdOVRequest        Cmd = 0x1e // data
	CmdOVReply          Cmd = 0x1f // data
	CmdOVResult         Cmd = 0x20 // meta
	CmdCsumRSRequest    Cmd = 0x21 // data
	CmdRSIsInSync       Cmd = 0x22 // meta
	CmdSyncParam89      Cmd = 0x23 // data
	CmdCompressedBitmap Cmd = 0x24 // data
	CmdDelayProbe       Cmd = 0x27 // both
	CmdOutOfSync        Cmd = 0x28 // data
	CmdRSCancel         Cmd = 0x29 // meta
	CmdConnStChgReq     Cmd = 0x2a // data
	CmdConnStChgReply   Cmd = 0x2b // meta
	CmdRetryWrite       Cmd = 0x2c // meta
	CmdProtocolUpdate   Cmd = 0x2d // data
	CmdTrim             Cmd = 0x31 // data
	CmdRSThinReq        Cmd = 0x32 // data
	CmdRSDeallocated    Cmd = 0x33 // data
	CmdWSame            Cmd = 0x34 // data
	CmdZeroes           Cmd = 0x36 // data

	// CmdMayIgnore: a receiver may skip unknown commands numbered above it.
	CmdMayIgnore Cmd = 0x100

	CmdInitialMeta        Cmd = 0xfff1 // first packet on the meta socket (h80, no payload)
	CmdInitialData        Cmd = 0xfff2 // first packet on the data socket (h80, no payload)
	CmdConnectionFeatures Cmd = 0xfffe // data: first exchange after InitialData
)

// Header magics.
const (
	MagicH80  uint32 = 0x83740267
	MagicH95  uint16 = 0x835a
	MagicH100 uint32 = 0x8620ec20
)

// Protocol version range gdrbd speaks, as DRBD 8.4.11.
const (
	ProtocolMin = 86
	ProtocolMax = 101
)

// Feature flags in ConnectionFeatures (DRBD_FF_*).
const (
	FeatureTrim       uint32 = 1
	FeatureThinResync uint32 = 2
	FeatureWSame      uint32 = 4
	FeatureWZeroes    uint32 = 8
)

// Limits.
const (
	// MaxBIOSize is DRBD_MAX_BIO_SIZE: the largest data payload of one
	// DATA/RS_DATA_REPLY packet.
	MaxBIOSize = 1 << 20
	// MaxH80Payload is the largest payload an h80 header can describe in
	// DRBD's use (DRBD_MAX_SIZE_H80_PACKET).
	MaxH80Payload = 1 << 15
	// SharedSecretMax is the fixed width of algorithm name fields.
	SharedSecretMax = 64
	// BitmapPacketMax is DRBD_SOCKET_BUFFER_SIZE: bitmap packets fit in 4 KiB
	// including the header.
	BitmapPacketMax = 4096
)

// Data packet flags (DP_*), in Data.Flags.
const (
	DPHardBarrier    uint32 = 1 // no longer used
	DPRWSync         uint32 = 2
	DPMaySetInSync   uint32 = 4
	DPUnplug         uint32 = 8
	DPFUA            uint32 = 16
	DPFlush          uint32 = 32
	DPDiscard        uint32 = 64
	DPSendReceiveAck uint32 = 128 // protocol B write
	DPSendWriteAck   uint32 = 256 // protocol C write
	DPWSame          uint32 = 512
	DPZeroes         uint32 = 1024
)

// Connection flags in Protocol.ConnFlags.
const (
	CFDiscardMyData uint32 = 1
	CFDryRun        uint32 = 2
)

// Wire values of the replication protocol in Protocol.Protocol.
const (
	WireProtocolA uint32 = 1
	WireProtocolB uint32 = 2
	WireProtocolC uint32 = 3
)

// UUID flags in UUIDs.Flags (_drbd_send_uuids).
const (
	UUIDFlagDiscardMyData  uint64 = 1
	UUIDFlagCrashedPrimary uint64 = 2
	UUIDFlagInconsistent   uint64 = 4
	// UUIDFlagSkipInitialSync is sent by `new-current-uuid --clear-bitmap`
	// (drbd_send_uuids_skip_initial_sync).
	UUIDFlagSkipInitialSync uint64 = 8
)

// Block IDs with a meaning of their own (drbd_int.h). Every other BlockID is
// an opaque handle the sender chose and the receiver echoes unchanged.
const (
	// IDInSync in a P_OV_RESULT says the verified block matched.
	IDInSync uint64 = 4711
	// IDOutOfSync in a P_OV_RESULT says the verified block differed.
	IDOutOfSync uint64 = 4712
	// IDSyncer marks resync and verify traffic (requests and their acks).
	IDSyncer uint64 = ^uint64(0)
)

// FeaturesAll is every feature flag DRBD 8.4.11 offers (PRO_FEATURES).
const FeaturesAll = FeatureTrim | FeatureThinResync | FeatureWSame | FeatureWZeroes

// ChallengeLen is the size of the random challenge DRBD sends in
// P_AUTH_CHALLENGE; a peer's challenge may be up to twice as long.
const ChallengeLen = 64

// MaxDigestSize bounds every digest on the wire (integrity, csums, verify,
// auth responses): 64 bytes, the largest digest of the kernel's crypto API.
const MaxDigestSize = 64

// Bitmap encodings in CompressedBitmap.Encoding (low 4 bits).
const (
	BitmapRLEVLIBits uint8 = 2
)

// Packet is one decoded DRBD packet body. Packet values are plain data:
// safe to share read-only, not to mutate concurrently.
type Packet interface {
	// Command returns the command number the packet is sent with.
	Command() Cmd
}

// Message is a packet with its volume number (h100 headers carry it; for
// older headers it is 0).
type Message struct {
	Volume uint16
	Packet Packet
}

// Initial is P_INITIAL_DATA or P_INITIAL_META: no payload, always h80.
type Initial struct{ Cmd Cmd }

// ConnectionFeatures is P_CONNECTION_FEATURES (72-byte payload). DRBD 8.4
// sends zeros after ProtocolMax; DRBD 9 puts node ids there. They are kept
// (unexported) so that a decoded packet encodes to the same bytes.
type ConnectionFeatures struct {
	ProtocolMin  uint32
	FeatureFlags uint32
	ProtocolMax  uint32

	reserved [60]byte
}

// Auth is P_AUTH_CHALLENGE or P_AUTH_RESPONSE: raw bytes.
type Auth struct {
	Cmd  Cmd
	Data []byte
}

// Protocol is P_PROTOCOL (and P_PROTOCOL_UPDATE): the net options both
// sides must agree on. IntegrityAlg follows for versions >= 87, as a
// NUL-terminated string.
type Protocol struct {
	Cmd          Cmd // CmdProtocol or CmdProtocolUpdate
	Protocol     uint32
	AfterSB0P    uint32
	AfterSB1P    uint32
	AfterSB2P    uint32
	ConnFlags    uint32
	TwoPrimaries uint32
	IntegrityAlg string
}

// SyncParam is P_SYNC_PARAM89 in its p_rs_param_95 form (agreed version >=
// 95): resync rate (KiB/s), algorithm names (64-byte NUL-padded fields) and
// the dynamic resync controller's settings. For versions 89..94 the last four
// fields are absent on the wire (p_rs_param_89). Below 89 the same value
// travels as P_SYNC_PARAM (p_rs_param: the rate, and from 88 on VerifyAlg as
// a NUL-terminated string); Command reports CmdSyncParam89 regardless and the
// encoder picks the command from the Dialect, as drbd_send_sync_param does.
type SyncParam struct {
	ResyncRate   uint32
	VerifyAlg    string
	CsumsAlg     string
	CPlanAhead   uint32
	CDelayTarget uint32
	CFillTarget  uint32
	CMaxRate     uint32
}

// UUIDs is P_UUIDS: current, bitmap, history[2], the sender's out-of-sync
// bit count, and UUID flags (UUIDFlag*).
type UUIDs struct {
	Current   uint64
	Bitmap    uint64
	History   [2]uint64
	DirtyBits uint64
	Flags     uint64
}

// SyncUUID is P_SYNC_UUID.
type SyncUUID struct{ UUID uint64 }

// QueueLimits is the optional tail of P_SIZES (o_qlim) when FeatureWSame is
// agreed.
type QueueLimits struct {
	PhysicalBlockSize uint32
	LogicalBlockSize  uint32
	AlignmentOffset   uint32
	IOMin             uint32
	IOOpt             uint32
	DiscardEnabled    uint8
	DiscardZeroesData uint8
	WriteSameCapable  uint8

	pad uint8 // the sender's padding, kept for byte-exact re-encoding
}

// Sizes is P_SIZES; sizes in 512-byte sectors.
type Sizes struct {
	DiskSize       uint64 // backing device usable size
	UserSize       uint64 // size requested by config (0 = whole device)
	CurrentSize    uint64 // size currently exported
	MaxBIOSize     uint32
	QueueOrderType uint16
	DDSFlags       uint16
	QueueLimits    *QueueLimits // present iff FeatureWSame was agreed
}

// State is P_STATE: the sender's packed state word (union drbd_state; see
// UnpackState).
type State struct{ State uint32 }

// StateChgReq is P_STATE_CHG_REQ or P_CONN_ST_CHG_REQ.
type StateChgReq struct {
	Cmd  Cmd
	Mask uint32
	Val  uint32
}

// StateChgReply is P_STATE_CHG_REPLY or P_CONN_ST_CHG_REPLY.
type StateChgReply struct {
	Cmd     Cmd
	RetCode int32
}

// Data is P_DATA, P_DATA_REPLY or P_RS_DATA_REPLY: a block with its data.
// A Reader fills Payload (and Digest) from its Allocator and hands them over:
// the caller owns them. DecodePayload makes them alias its input instead.
//
// Digest is the data-integrity-alg digest of Payload that precedes the data
// on the wire when the sender has an integrity algorithm
// (Dialect.IntegrityDigestSize bytes; empty without one).
type Data struct {
	Cmd     Cmd
	Sector  uint64
	BlockID uint64
	SeqNum  uint32
	Flags   uint32 // DP*; only meaningful for CmdData
	Payload []byte
	Digest  []byte
}

// WSame is P_WSAME (needs FeatureWSame): write the logical block in Payload
// repeatedly over Size bytes from Sector. Ownership as for Data.
type WSame struct {
	Sector  uint64
	BlockID uint64
	SeqNum  uint32
	Flags   uint32
	Size    uint32
	Payload []byte
	Digest  []byte
}

// Trim is P_TRIM (and P_ZEROES): a data header and a byte length, no data.
type Trim struct {
	Cmd     Cmd // CmdTrim or CmdZeroes
	Sector  uint64
	BlockID uint64
	SeqNum  uint32
	Flags   uint32
	Size    uint32
}

// Barrier is P_BARRIER: closes the epoch numbered Barrier.
//
// NB: DRBD sends the barrier number in host byte order (it is a handle the
// peer only echoes), so a value from a little-endian kernel reads here
// byte-swapped (epoch 1 is 0x01000000). Treat it as opaque: echo it in the
// BarrierAck unchanged and never compare it arithmetically.
type Barrier struct {
	Barrier uint32

	pad uint32 // the sender's padding, kept for byte-exact re-encoding
}

// BarrierAck is P_BARRIER_ACK. Barrier is the opaque handle from P_BARRIER.
type BarrierAck struct {
	Barrier uint32
	SetSize uint32
}

// BlockAck is p_block_ack: P_RECV_ACK, P_WRITE_ACK, P_RS_WRITE_ACK,
// P_SUPERSEDED, P_NEG_ACK, P_NEG_DREPLY, P_NEG_RS_DREPLY, P_OV_RESULT,
// P_RS_IS_IN_SYNC, P_RS_CANCEL, P_RETRY_WRITE. BlockID echoes the request's
// (IDSyncer for resync; IDInSync/IDOutOfSync in P_OV_RESULT).
type BlockAck struct {
	Cmd       Cmd
	Sector    uint64
	BlockID   uint64
	BlockSize uint32
	SeqNum    uint32
}

// BlockReq is p_block_req: P_DATA_REQUEST, P_RS_DATA_REQUEST, P_OV_REQUEST,
// P_RS_THIN_REQ; and, with a trailing digest, P_CSUM_RS_REQUEST and
// P_OV_REPLY.
//
// A Reader takes Digest from its Allocator; the caller owns it.
type BlockReq struct {
	Cmd       Cmd
	Sector    uint64
	BlockID   uint64
	BlockSize uint32
	Digest    []byte // only CmdCsumRSRequest and CmdOVReply

	// pad is the sender's padding, kept for byte-exact re-encoding: DRBD
	// 8.4 does not clear it, so it may hold bytes of an earlier packet.
	pad uint32
}

// BlockDesc is p_block_desc: P_OUT_OF_SYNC and P_RS_DEALLOCATED.
type BlockDesc struct {
	Cmd       Cmd
	Sector    uint64
	BlockSize uint32

	pad uint32 // as BlockReq.pad
}

// Bitmap is P_BITMAP: a chunk of plain bitmap, little-endian 64-bit words,
// in order: each packet continues where the previous one ended. At most
// (4096 - header size) / 8 words per packet.
type Bitmap struct {
	Words []uint64
}

// CompressedBitmap is P_COMPRESSED_BITMAP. Encoding: low 4 bits the code
// (BitmapRLEVLIBits), bit 7 the polarity of the first run, bits 4..6 the
// number of padding bits at the end of Code. Code is opaque here (package
// bitmap decodes it); 1 to 4096 - header size - 1 bytes.
type CompressedBitmap struct {
	Encoding uint8
	Code     []byte
}

// DelayProbe is P_DELAY_PROBE.
type DelayProbe struct {
	SeqNum uint32
	Offset uint32
}

// Empty is a packet with no payload: P_PING, P_PING_ACK, P_UNPLUG_REMOTE.
type Empty struct{ Cmd Cmd }

// Unknown is a packet with an ignorable command (> CmdMayIgnore) that gdrbd
// does not know; the reader skips its payload.
type Unknown struct {
	Cmd    Cmd
	Length uint32
}

func (p *Initial) Command() Cmd          { return p.Cmd }
func (*ConnectionFeatures) Command() Cmd { return CmdConnectionFeatures }
func (p *Auth) Command() Cmd             { return p.Cmd }
func (p *Protocol) Command() Cmd         { return p.Cmd }
func (*SyncParam) Command() Cmd          { return CmdSyncParam89 }
func (*WSame) Command() Cmd              { return CmdWSame }
func (*UUIDs) Command() Cmd              { return CmdUUIDs }
func (*SyncUUID) Command() Cmd           { return CmdSyncUUID }
func (*Sizes) Command() Cmd              { return CmdSizes }
func (*State) Command() Cmd              { return CmdState }
func (p *StateChgReq) Command() Cmd      { return p.Cmd }
func (p *StateChgReply) Command() Cmd    { return p.Cmd }
func (p *Data) Command() Cmd             { return p.Cmd }
func (p *Trim) Command() Cmd             { return p.Cmd }
func (*Barrier) Command() Cmd            { return CmdBarrier }
func (*BarrierAck) Command() Cmd         { return CmdBarrierAck }
func (p *BlockAck) Command() Cmd         { return p.Cmd }
func (p *BlockReq) Command() Cmd         { return p.Cmd }
func (p *BlockDesc) Command() Cmd        { return p.Cmd }
func (*Bitmap) Command() Cmd             { return CmdBitmap }
func (*CompressedBitmap) Command() Cmd   { return CmdCompressedBitmap }
func (*DelayProbe) Command() Cmd         { return CmdDelayProbe }
func (p *Empty) Command() Cmd            { return p.Cmd }
func (p *Unknown) Command() Cmd          { return p.Cmd }
