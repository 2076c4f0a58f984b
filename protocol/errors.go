package protocol

import (
	"errors"
	"fmt"
)

// Reasons a peer's bytes are rejected; a *ProtocolError wraps one of them.
// All of them mean the stream can no longer be trusted: drop the connection
// (DRBD goes to ProtocolError) and apply nothing from the packet.
var (
	// ErrBadMagic: the header does not start with the magic the agreed
	// protocol version uses (or an h100 header has non-zero padding).
	ErrBadMagic = errors.New("protocol: bad header")
	// ErrUnknownCommand: a command number <= CmdMayIgnore that DRBD 8.4
	// does not accept here (unknown, obsolete, not valid at this protocol
	// version, or needing a feature flag that was not agreed).
	ErrUnknownCommand = errors.New("protocol: unexpected command")
	// ErrBadSize: the payload length is not one the command allows.
	ErrBadSize = errors.New("protocol: wrong packet size")
	// ErrMalformed: the length is right but the contents are not (a name
	// field that is not NUL-terminated, a bitmap that is not whole words).
	ErrMalformed = errors.New("protocol: malformed packet")
)

// Errors from encoding: the caller asked for something the wire cannot carry.
var (
	// ErrInvalidPacket: a field does not fit its wire format (a name too
	// long, a payload above the limit, a digest of the wrong size, a volume
	// number an h80 header cannot carry).
	ErrInvalidPacket = errors.New("protocol: invalid packet")
	// ErrDialect: the Dialect is not one DRBD 8.4 agrees on (version 0 or
	// 86..101), or the packet is not valid in it.
	ErrDialect = errors.New("protocol: invalid dialect")
	// ErrIncompatible: the peer's protocol version range does not overlap
	// ours (drbd_do_features: "incompatible DRBD dialects").
	ErrIncompatible = errors.New("protocol: incompatible DRBD dialects")
	// ErrUnknownAlg: a cram-hmac-alg this package cannot compute.
	ErrUnknownAlg = errors.New("protocol: unknown algorithm")
)

// ProtocolError describes a packet from the peer that was rejected. Callers
// branch on it with errors.As and on its reason with errors.Is (ErrBadSize,
// ...). Like every error value it is safe to share once returned.
type ProtocolError struct {
	Cmd    Cmd    // the command in the header (0 if the header was unreadable)
	Length uint32 // the payload length in the header
	Err    error  // the reason: ErrBadMagic, ErrUnknownCommand, ErrBadSize, ErrMalformed
	Detail string // what exactly was wrong, for people
}

func (e *ProtocolError) Error() string {
	if e.Err == ErrBadMagic {
		return fmt.Sprintf("%v: %s", e.Err, e.Detail)
	}
	return fmt.Sprintf("%v: %v (0x%02x) length %d: %s", e.Err, e.Cmd, uint16(e.Cmd), e.Length, e.Detail)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(h Header, reason error, format string, args ...any) *ProtocolError {
	return &ProtocolError{Cmd: h.Cmd, Length: h.Length, Err: reason, Detail: fmt.Sprintf(format, args...)}
}

func invalid(c Cmd, format string, args ...any) error {
	return fmt.Errorf("%w: %v: %s", ErrInvalidPacket, c, fmt.Sprintf(format, args...))
}
