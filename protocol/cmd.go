package protocol

import "fmt"

// cmdNames are the kernel's enum drbd_packet names, so that gdrbd logs read
// like DRBD's source and Wireshark's dissector.
var cmdNames = map[Cmd]string{
	CmdData:               "P_DATA",
	CmdDataReply:          "P_DATA_REPLY",
	CmdRSDataReply:        "P_RS_DATA_REPLY",
	CmdBarrier:            "P_BARRIER",
	CmdBitmap:             "P_BITMAP",
	CmdBecomeSyncTarget:   "P_BECOME_SYNC_TARGET",
	CmdBecomeSyncSource:   "P_BECOME_SYNC_SOURCE",
	CmdUnplugRemote:       "P_UNPLUG_REMOTE",
	CmdDataRequest:        "P_DATA_REQUEST",
	CmdRSDataRequest:      "P_RS_DATA_REQUEST",
	CmdSyncParam:          "P_SYNC_PARAM",
	CmdProtocol:           "P_PROTOCOL",
	CmdUUIDs:              "P_UUIDS",
	CmdSizes:              "P_SIZES",
	CmdState:              "P_STATE",
	CmdSyncUUID:           "P_SYNC_UUID",
	CmdAuthChallenge:      "P_AUTH_CHALLENGE",
	CmdAuthResponse:       "P_AUTH_RESPONSE",
	CmdStateChgReq:        "P_STATE_CHG_REQ",
	CmdPing:               "P_PING",
	CmdPingAck:            "P_PING_ACK",
	CmdRecvAck:            "P_RECV_ACK",
	CmdWriteAck:           "P_WRITE_ACK",
	CmdRSWriteAck:         "P_RS_WRITE_ACK",
	CmdSuperseded:         "P_SUPERSEDED",
	CmdNegAck:             "P_NEG_ACK",
	CmdNegDReply:          "P_NEG_DREPLY",
	CmdNegRSDReply:        "P_NEG_RS_DREPLY",
	CmdBarrierAck:         "P_BARRIER_ACK",
	CmdStateChgReply:      "P_STATE_CHG_REPLY",
	CmdOVRequest:          "P_OV_REQUEST",
	CmdOVReply:            "P_OV_REPLY",
	CmdOVResult:           "P_OV_RESULT",
	CmdCsumRSRequest:      "P_CSUM_RS_REQUEST",
	CmdRSIsInSync:         "P_RS_IS_IN_SYNC",
	CmdSyncParam89:        "P_SYNC_PARAM89",
	CmdCompressedBitmap:   "P_COMPRESSED_BITMAP",
	CmdDelayProbe:         "P_DELAY_PROBE",
	CmdOutOfSync:          "P_OUT_OF_SYNC",
	CmdRSCancel:           "P_RS_CANCEL",
	CmdConnStChgReq:       "P_CONN_ST_CHG_REQ",
	CmdConnStChgReply:     "P_CONN_ST_CHG_REPLY",
	CmdRetryWrite:         "P_RETRY_WRITE",
	CmdProtocolUpdate:     "P_PROTOCOL_UPDATE",
	CmdTrim:               "P_TRIM",
	CmdRSThinReq:          "P_RS_THIN_REQ",
	CmdRSDeallocated:      "P_RS_DEALLOCATED",
	CmdWSame:              "P_WSAME",
	CmdZeroes:             "P_ZEROES",
	CmdMayIgnore:          "P_MAY_IGNORE",
	CmdInitialMeta:        "P_INITIAL_META",
	CmdInitialData:        "P_INITIAL_DATA",
	CmdConnectionFeatures: "P_CONNECTION_FEATURES",
}

// String returns the kernel's name of the command (P_DATA), or
// P_UNKNOWN(0x1234) for a number DRBD 8.4 does not define.
//
// NB: Cmd is a wire value, so its zero value is the valid P_DATA, unlike
// gdrbd's own enums.
func (c Cmd) String() string {
	if n, ok := cmdNames[c]; ok {
		return n
	}
	return fmt.Sprintf("P_UNKNOWN(0x%02x)", uint16(c))
}

// Ignorable reports whether a receiver that does not know the command may
// skip it (command numbers above CmdMayIgnore).
func (c Cmd) Ignorable() bool { return c > CmdMayIgnore }

// Socket names the TCP connection a command travels on. DRBD keeps bulk
// traffic on the data socket so that acks and pings on the meta socket are
// never stuck behind megabytes of data.
type Socket uint8

// Sockets.
const (
	SocketData Socket = 1 + iota // the first connection; handshake, data, requests, bitmaps
	SocketMeta                   // the second connection; acks, pings, state replies
	SocketBoth                   // P_DELAY_PROBE may use either
)

func (s Socket) String() string {
	switch s {
	case SocketData:
		return "data"
	case SocketMeta:
		return "meta"
	case SocketBoth:
		return "both"
	}
	return fmt.Sprintf("Socket(%d)", uint8(s))
}

// Socket returns the socket DRBD 8.4 sends the command on (drbd_cmd_handler
// is the data socket's table, ack_receiver_tbl the meta socket's), or 0 for
// a command it does not send.
func (c Cmd) Socket() Socket {
	switch c {
	case CmdPing, CmdPingAck, CmdRecvAck, CmdWriteAck, CmdRSWriteAck,
		CmdSuperseded, CmdNegAck, CmdNegDReply, CmdNegRSDReply,
		CmdBarrierAck, CmdStateChgReply, CmdOVResult, CmdRSIsInSync,
		CmdRSCancel, CmdConnStChgReply, CmdRetryWrite, CmdInitialMeta:
		return SocketMeta
	case CmdDelayProbe:
		return SocketBoth
	case CmdBecomeSyncTarget, CmdBecomeSyncSource, CmdMayIgnore:
		return 0
	}
	if _, ok := cmdNames[c]; ok {
		return SocketData
	}
	return 0
}
