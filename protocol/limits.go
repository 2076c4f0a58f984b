package protocol

import "fmt"

// Fixed payload sizes of DRBD 8.4's packet structs (drbd_protocol.h).
const (
	sizeConnectionFeatures = 72  // p_connection_features
	sizeProtocol           = 24  // p_protocol without integrity_alg
	sizeRSParam            = 4   // p_rs_param without verify_alg
	sizeRSParam89          = 132 // p_rs_param_89
	sizeRSParam95          = 148 // p_rs_param_95
	sizeUUIDs              = 48  // p_uuids
	sizeSizes              = 32  // p_sizes without o_qlim
	sizeQLim               = 24  // o_qlim
	sizeState              = 4   // p_state
	sizeReqState           = 8   // p_req_state
	sizeReqStateReply      = 4   // p_req_state_reply
	sizeRSUUID             = 8   // p_rs_uuid
	sizeData               = 24  // p_data
	sizeTrim               = 28  // p_trim, p_wsame
	sizeBarrier            = 8   // p_barrier
	sizeBarrierAck         = 8   // p_barrier_ack
	sizeBlockAck           = 24  // p_block_ack
	sizeBlockReq           = 24  // p_block_req
	sizeBlockDesc          = 16  // p_block_desc
	sizeDelayProbe         = 8   // p_delay_probe93
)

// MaxAuthChallenge is the largest peer challenge drbd_do_auth accepts.
const MaxAuthChallenge = 2 * ChallengeLen

// shape is what a command's payload may look like in one dialect.
type shape struct {
	min, max int // allowed payload lengths
	// step: (length - min) must be a multiple of it (P_BITMAP: whole words).
	step int
	// bulk: bytes after the first min bytes are data for the disk and go
	// to the Allocator (P_DATA...), not to the Reader's scratch buffer.
	bulk bool
}

// shapeOf returns the allowed payload shape of cmd in d, as DRBD 8.4's
// receivers check it (drbdd's drbd_cmd_handler sizes, ack_receiver_tbl,
// drbd_do_features, drbd_do_auth, receive_protocol, receive_SyncParam,
// receive_bitmap, read_in_block). The error is the reason for rejection.
func shapeOf(d Dialect, cmd Cmd) (shape, string, error) {
	fixed := func(n int) (shape, string, error) { return shape{min: n, max: n}, "", nil }
	switch cmd {
	case CmdInitialData, CmdInitialMeta:
		return fixed(0)
	case CmdConnectionFeatures:
		return fixed(sizeConnectionFeatures)
	}
	if !d.Agreed() {
		return shape{}, "only the connection handshake may precede P_CONNECTION_FEATURES", ErrUnknownCommand
	}
	need := func(name string) (shape, string, error) {
		return shape{}, fmt.Sprintf("feature %s was not agreed", name), ErrUnknownCommand
	}
	ds := d.IntegrityDigestSize
	switch cmd {
	case CmdPing, CmdPingAck, CmdUnplugRemote:
		return fixed(0)
	case CmdAuthChallenge:
		return shape{min: ChallengeLen, max: MaxAuthChallenge}, "", nil
	case CmdAuthResponse:
		return shape{min: 1, max: MaxDigestSize}, "", nil
	case CmdProtocol, CmdProtocolUpdate:
		if d.Version < 87 {
			return fixed(sizeProtocol)
		}
		return shape{min: sizeProtocol + 1, max: sizeProtocol + SharedSecretMax}, "", nil
	case CmdSyncParam:
		switch {
		case d.Version >= 89:
			return shape{}, "P_SYNC_PARAM is replaced by P_SYNC_PARAM89 from protocol 89", ErrUnknownCommand
		case d.Version == 88:
			return shape{min: sizeRSParam + 1, max: sizeRSParam + SharedSecretMax}, "", nil
		}
		return fixed(sizeRSParam)
	case CmdSyncParam89:
		switch {
		case d.Version < 89:
			return shape{}, "P_SYNC_PARAM89 needs protocol 89", ErrUnknownCommand
		case d.Version < 95:
			return fixed(sizeRSParam89)
		}
		return fixed(sizeRSParam95)
	case CmdSizes:
		if d.has(FeatureWSame) {
			return fixed(sizeSizes + sizeQLim)
		}
		return fixed(sizeSizes)
	case CmdUUIDs:
		return fixed(sizeUUIDs)
	case CmdSyncUUID:
		return fixed(sizeRSUUID)
	case CmdState:
		return fixed(sizeState)
	case CmdStateChgReq, CmdConnStChgReq:
		return fixed(sizeReqState)
	case CmdStateChgReply, CmdConnStChgReply:
		return fixed(sizeReqStateReply)
	case CmdData, CmdDataReply, CmdRSDataReply:
		return shape{min: sizeData + ds, max: sizeData + ds + MaxBIOSize, bulk: true}, "", nil
	case CmdWSame:
		if !d.has(FeatureWSame) {
			return need("WSAME")
		}
		return shape{min: sizeTrim + ds, max: sizeTrim + ds + MaxBIOSize, bulk: true}, "", nil
	case CmdTrim:
		if !d.has(FeatureTrim) {
			return need("TRIM")
		}
		return fixed(sizeTrim)
	case CmdZeroes:
		if !d.has(FeatureWZeroes) {
			return need("WZEROES")
		}
		return fixed(sizeTrim)
	case CmdBarrier:
		return fixed(sizeBarrier)
	case CmdBarrierAck:
		return fixed(sizeBarrierAck)
	case CmdRecvAck, CmdWriteAck, CmdRSWriteAck, CmdSuperseded, CmdNegAck,
		CmdNegDReply, CmdNegRSDReply, CmdOVResult, CmdRSIsInSync, CmdRSCancel, CmdRetryWrite:
		return fixed(sizeBlockAck)
	case CmdDataRequest, CmdRSDataRequest, CmdOVRequest:
		return fixed(sizeBlockReq)
	case CmdRSThinReq:
		if !d.has(FeatureThinResync) {
			return need("THIN_RESYNC")
		}
		return fixed(sizeBlockReq)
	case CmdCsumRSRequest, CmdOVReply:
		return shape{min: sizeBlockReq, max: sizeBlockReq + MaxDigestSize}, "", nil
	case CmdOutOfSync:
		return fixed(sizeBlockDesc)
	case CmdRSDeallocated:
		if !d.has(FeatureThinResync) {
			return need("THIN_RESYNC")
		}
		return fixed(sizeBlockDesc)
	case CmdBitmap:
		return shape{min: 0, max: BitmapPacketMax - d.HeaderSize(), step: 8}, "", nil
	case CmdCompressedBitmap:
		return shape{min: 2, max: BitmapPacketMax - d.HeaderSize()}, "", nil
	case CmdDelayProbe:
		return fixed(sizeDelayProbe)
	}
	return shape{}, "DRBD 8.4 has no handler for it", ErrUnknownCommand
}

// check validates a header against the command's shape: the first thing a
// Reader does, before it allocates anything.
func check(d Dialect, h Header) (shape, error) {
	if h.Format == HeaderH100 && d.Version < 100 || h.Format != HeaderH100 && d.Version >= 100 {
		return shape{}, protoErr(h, ErrBadMagic, "%v header in protocol version %d", h.Format, d.Version)
	}
	s, why, err := shapeOf(d, h.Cmd)
	if err != nil {
		return s, protoErr(h, err, "%s (protocol %d, features %#x)", why, d.Version, d.Features)
	}
	n := int64(h.Length)
	if n < int64(s.min) || n > int64(s.max) {
		if s.min == s.max {
			return s, protoErr(h, ErrBadSize, "want %d bytes", s.min)
		}
		return s, protoErr(h, ErrBadSize, "want %d..%d bytes", s.min, s.max)
	}
	if s.step > 1 && (n-int64(s.min))%int64(s.step) != 0 {
		return s, protoErr(h, ErrBadSize, "not a multiple of %d bytes", s.step)
	}
	return s, nil
}
