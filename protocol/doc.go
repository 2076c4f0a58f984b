// Package protocol encodes and decodes DRBD 8.4 wire packets (protocol
// versions 86..101), byte for byte as the kernel's drbd_main.c sends them and
// with the checks drbd_receiver.c applies before it believes a length. It is
// pure: encode/decode functions, plus a Reader and a Writer over a stream the
// caller owns. No goroutines, no timers, no logging.
//
// # Usage
//
// Each of the two sockets of a peer gets a Reader and a Writer. Both start
// in the zero Dialect (before agreement). The data socket exchanges
// P_CONNECTION_FEATURES; Agree turns both offers into the Dialect every
// Reader and Writer of that peer switches to:
//
//	w := protocol.NewWriter(conn)           // *net.TCPConn: one writev per packet
//	r := protocol.NewReader(conn, pool.Get) // data payloads from the driver's pool
//	ours := protocol.ConnectionFeatures{ProtocolMin: protocol.ProtocolMin,
//		FeatureFlags: protocol.FeaturesAll, ProtocolMax: protocol.ProtocolMax}
//	err := w.WriteMessage(protocol.Message{Packet: &ours})
//	m, err := r.ReadMessage()
//	theirs, ok := m.Packet.(*protocol.ConnectionFeatures) // else: protocol error
//	d, err := protocol.Agree(ours, *theirs)
//	r.SetDialect(d); w.SetDialect(d) // and on the meta socket's pair
//	for {
//		m, err := r.ReadMessage()
//		var pe *protocol.ProtocolError
//		if errors.As(err, &pe) { /* drop the connection, apply nothing */ }
//		switch p := m.Packet.(type) {
//		case *protocol.Data: // p.Payload is ours now: write it, then recycle it
//		case *protocol.BlockAck:
//		case *protocol.Unknown: // an ignorable command (> 0x100): skip
//		}
//	}
//
// After P_PROTOCOL agrees on a data-integrity-alg, set
// Dialect.IntegrityDigestSize (ours on the Writer, the peer's on the Reader).
// Auth: answer the peer's P_AUTH_CHALLENGE with Response(alg, secret,
// challenge); check its answer to ours with VerifyResponse. P_STATE words:
// UnpackState and StateFields.Pack.
//
// Ownership: everything a Reader returns belongs to the caller (data
// payloads and digests come from the Allocator, the rest is freshly
// allocated). A Writer reads the packet during WriteMessage and keeps
// nothing. DecodePayload and Decode alias their input instead.
//
// # Headers
//
// All integers on the wire are big-endian, except the bitmap words of
// P_BITMAP (little-endian) and two handles that DRBD sends in its host order
// and only expects echoed (BlockID, Barrier: treat as opaque).
//
//	h80 (before agreement; versions < 95; 95..99 up to 32 KiB payload), 8 bytes
//	 0               4       6       8
//	+---------------+-------+-------+
//	| 0x83740267    | cmd   | len16 |
//	+---------------+-------+-------+
//
//	h95 (versions 95..99, payload above 32 KiB), 8 bytes
//	 0       2       4               8
//	+-------+-------+---------------+
//	|0x835a | cmd   | len32         |
//	+-------+-------+---------------+
//
//	h100 (versions >= 100), 16 bytes; pad must be 0
//	 0               4       6       8               12              16
//	+---------------+-------+-------+---------------+---------------+
//	| 0x8620ec20    |volume | cmd   | len32         | pad (0)       |
//	+---------------+-------+-------+---------------+---------------+
//
// len counts the payload after the header. Which header a packet gets
// follows prepare_header exactly (Dialect.HeaderFor); a Reader accepts h80
// and h95 below version 100 and only h100 from 100 on, as decode_header does.
//
// A data packet, e.g. P_DATA at version 101 with data-integrity-alg:
//
//	+--------+----------------------------------------+--------+-----------+
//	| h100   | p_data: sector u64, block_id u64,      | digest | data      |
//	| 16     | seq_num u32, dp_flags u32 (24)         | 0..64  | <= 1 MiB  |
//	+--------+----------------------------------------+--------+-----------+
//	 \___________ Writer: one reused buffer ___________________/\ caller's /
//	                                                              buffer
//
// # Sockets
//
// Data socket (first connection): P_INITIAL_DATA, P_CONNECTION_FEATURES,
// P_AUTH_*, P_PROTOCOL, P_PROTOCOL_UPDATE, P_SYNC_PARAM(89), P_SIZES,
// P_UUIDS, P_STATE, P_SYNC_UUID, P_STATE_CHG_REQ, P_CONN_ST_CHG_REQ, P_DATA,
// P_DATA_REPLY, P_RS_DATA_REPLY, P_BARRIER, P_UNPLUG_REMOTE, P_TRIM,
// P_ZEROES, P_WSAME, P_DATA_REQUEST, P_RS_DATA_REQUEST, P_CSUM_RS_REQUEST,
// P_OV_REQUEST, P_OV_REPLY, P_RS_THIN_REQ, P_RS_DEALLOCATED, P_OUT_OF_SYNC,
// P_BITMAP, P_COMPRESSED_BITMAP.
//
// Meta socket (second connection): P_INITIAL_META, P_PING, P_PING_ACK,
// P_RECV_ACK, P_WRITE_ACK, P_RS_WRITE_ACK, P_SUPERSEDED, P_NEG_ACK,
// P_NEG_DREPLY, P_NEG_RS_DREPLY, P_RS_CANCEL, P_RETRY_WRITE, P_BARRIER_ACK,
// P_STATE_CHG_REPLY, P_CONN_ST_CHG_REPLY, P_OV_RESULT, P_RS_IS_IN_SYNC.
//
// Either: P_DELAY_PROBE. Cmd.Socket says which. The codec itself accepts
// any known command on any stream; routing is the caller's business.
//
// # Size limits
//
// A Reader checks the header's length against this table before it reads or
// allocates anything; a length outside it is a *ProtocolError (ErrBadSize).
// ds is Dialect.IntegrityDigestSize; hs the header size (8 or 16).
//
//	command                              payload bytes
//	INITIAL_DATA/META, PING(_ACK),       0
//	  UNPLUG_REMOTE
//	CONNECTION_FEATURES                  72
//	AUTH_CHALLENGE                       64..128
//	AUTH_RESPONSE                        1..64 (the digest size; see ResponseSize)
//	PROTOCOL, PROTOCOL_UPDATE            24 (< 87); 25..88 from 87 (alg + NUL)
//	SYNC_PARAM (< 89 only)               4 (< 88); 5..68 at 88
//	SYNC_PARAM89 (>= 89 only)            132 (89..94); 148 (>= 95)
//	SIZES                                32; 56 with FeatureWSame
//	UUIDS                                48
//	SYNC_UUID                            8
//	STATE                                4
//	STATE_CHG_REQ, CONN_ST_CHG_REQ       8
//	STATE_CHG_REPLY, CONN_ST_CHG_REPLY   4
//	DATA, DATA_REPLY, RS_DATA_REPLY      24+ds .. 24+ds+1 MiB (data via Allocator)
//	WSAME (FeatureWSame)                 28+ds .. 28+ds+1 MiB (data via Allocator)
//	TRIM (FeatureTrim), ZEROES           28
//	  (FeatureWZeroes)
//	BARRIER, BARRIER_ACK, DELAY_PROBE    8
//	RECV_ACK ... RETRY_WRITE (acks)      24
//	DATA_REQUEST, RS_DATA_REQUEST,       24
//	  OV_REQUEST, RS_THIN_REQ (thin)
//	CSUM_RS_REQUEST, OV_REPLY            24..88 (digest via Allocator)
//	OUT_OF_SYNC, RS_DEALLOCATED (thin)   16
//	BITMAP                               0..4096-hs, whole 8-byte words
//	COMPRESSED_BITMAP                    2..4096-hs
//	> 0x100, unknown                     any: skipped, returned as *Unknown
//	<= 0x100, unknown or obsolete        rejected (ErrUnknownCommand)
//
// Before agreement only P_INITIAL_DATA/META and P_CONNECTION_FEATURES are
// accepted. Within a fixed size, fields that DRBD itself writes with
// memset+strcpy (algorithm names) must be NUL-terminated with zeros after
// the NUL (ErrMalformed otherwise); padding that DRBD leaves uncleared is
// kept, so that every accepted packet re-encodes to its original bytes.
// Field values (sector ranges, block sizes, state transitions) are the
// replication core's to judge.
package protocol
