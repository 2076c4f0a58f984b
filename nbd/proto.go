package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// They are wire values, not Go enums: several are legitimately zero
// (NBD_CMD_READ, NBD_INFO_EXPORT), so they stay untyped and unexported and
// cmdName/optName give them names for logs.
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt  = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply  = 0x0003e889045565a9
	magicRequest   = 0x25609513
	magicSimple    = 0x67446698
	magicStructred = 0x668e33ef

	// Handshake flags (server) and client flags.
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	cflagFixedNewstyle = 1 << 0
	cflagNoZeroes      = 1 << 1

	// Options.
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10

	// Option reply types.
	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repErrBit       = 1 << 31
	repErrUnsup     = repErrBit + 1
	repErrPolicy    = repErrBit + 2
	repErrInvalid   = repErrBit + 3
	repErrUnknown   = repErrBit + 6
	repErrShutdown  = repErrBit + 7
	repErrBlockReqd = repErrBit + 8
	repErrTooBig    = repErrBit + 9

	// NBD_INFO types.
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// Transmission flags.
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagRotational      = 1 << 4
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
	tflagSendCache       = 1 << 10
	tflagSendFastZero    = 1 << 11

	// Commands.
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	// Command flags.
	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4

	// Structured reply flags and chunk types.
	replyFlagDone        = 1 << 0
	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeError       = 1<<15 + 1
	replyTypeErrorOffset = 1<<15 + 2

	// Error values (errno numbers as the protocol fixes them).
	errnoPerm     = 1
	errnoIO       = 5
	errnoNoMem    = 12
	errnoInval    = 22
	errnoNoSpc    = 28
	errnoOverflow = 75
	errnoNotSup   = 95
	errnoShutdown = 108
)

// Sizes of the fixed parts of messages.
const (
	requestSize          = 28 // magic 4, flags 2, type 2, cookie 8, offset 8, length 4
	simpleReplySize      = 16 // magic 4, error 4, cookie 8
	structuredHeaderSize = 20 // magic 4, flags 2, type 2, cookie 8, length 4
	optionHeaderSize     = 16 // IHAVEOPT 8, option 4, length 4
	optReplyHeaderSize   = 20 // magic 8, option 4, type 4, length 4
)

// Limits the server enforces.
const (
	// MaxPayload is the largest READ or WRITE payload served: 32 MiB, the
	// size the protocol says no client should be refused for, and the
	// kernel's largest max_sectors_kb.
	MaxPayload = 32 << 20
	// PreferredBlockSize is the advertised preferred block size: one
	// bitmap bit of DRBD (4 KiB), so aligned writes never need a
	// read-modify-write anywhere below.
	PreferredBlockSize = 4096
	// maxOptionLen caps the data of one handshake option. Export names
	// are at most 4096 bytes by the spec; anything near this cap is a
	// misbehaving client and gets a hard disconnect instead of an
	// allocation.
	maxOptionLen = 64 << 10
	// maxNameLen is the NBD string limit.
	maxNameLen = 4096
)

// ErrBadMagic is returned (and the connection dropped) when a request or
// option does not start with the protocol's magic number: the stream is
// out of sync and nothing after it can be trusted.
var ErrBadMagic = errors.New("nbd: bad magic; stream out of sync")

// request is one decoded transmission request header.
//
//	 0               4       6       8                              16
//	+---------------+-------+-------+-------------------------------+
//	| 0x25609513    | flags | type  | cookie                        |
//	+---------------+-------+-------+-------------------------------+
//	| offset                        | length        | payload (WRITE)
//	+-------------------------------+---------------+---------------
//	16                              24              28
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// decodeRequest parses a 28-byte request header.
func decodeRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("nbd: short request header (%d bytes)", len(b))
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != magicRequest {
		return request{}, fmt.Errorf("%w: request magic %#08x", ErrBadMagic, m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:6]),
		typ:    binary.BigEndian.Uint16(b[6:8]),
		cookie: binary.BigEndian.Uint64(b[8:16]),
		offset: binary.BigEndian.Uint64(b[16:24]),
		length: binary.BigEndian.Uint32(b[24:28]),
	}, nil
}

// encode writes the request header into b (tests and fuzz round trips).
func (r request) encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:4], magicRequest)
	binary.BigEndian.PutUint16(b[4:6], r.flags)
	binary.BigEndian.PutUint16(b[6:8], r.typ)
	binary.BigEndian.PutUint64(b[8:16], r.cookie)
	binary.BigEndian.PutUint64(b[16:24], r.offset)
	binary.BigEndian.PutUint32(b[24:28], r.length)
}

func cmdName(t uint16) string {
	switch t {
	case cmdRead:
		return "READ"
	case cmdWrite:
		return "WRITE"
	case cmdDisc:
		return "DISC"
	case cmdFlush:
		return "FLUSH"
	case cmdTrim:
		return "TRIM"
	case cmdCache:
		return "CACHE"
	case cmdWriteZeroes:
		return "WRITE_ZEROES"
	case cmdBlockStatus:
		return "BLOCK_STATUS"
	}
	return fmt.Sprintf("CMD(%d)", t)
}

func optName(o uint32) string {
	switch o {
	case optExportName:
		return "EXPORT_NAME"
	case optAbort:
		return "ABORT"
	case optList:
		return "LIST"
	case optStartTLS:
		return "STARTTLS"
	case optInfo:
		return "INFO"
	case optGo:
		return "GO"
	case optStructuredReply:
		return "STRUCTURED_REPLY"
	case optListMetaContext:
		return "LIST_META_CONTEXT"
	case optSetMetaContext:
		return "SET_META_CONTEXT"
	}
	return fmt.Sprintf("OPT(%d)", o)
}
