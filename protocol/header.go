package protocol

import (
	"encoding/binary"
	"fmt"
)

// HeaderFormat is one of DRBD's three packet headers.
type HeaderFormat uint8

// Header formats.
const (
	HeaderH80  HeaderFormat = 1 + iota // p_header80: before agreement, and below 95
	HeaderH95                          // p_header95: versions 95..99, payloads above 32 KiB
	HeaderH100                         // p_header100: versions 100 and up
)

func (f HeaderFormat) String() string {
	switch f {
	case HeaderH80:
		return "h80"
	case HeaderH95:
		return "h95"
	case HeaderH100:
		return "h100"
	}
	return fmt.Sprintf("HeaderFormat(%d)", uint8(f))
}

// Size is the header's size on the wire.
func (f HeaderFormat) Size() int {
	if f == HeaderH100 {
		return 16
	}
	return 8
}

// MaxHeaderSize is the largest header (h100).
const MaxHeaderSize = 16

// Header is a decoded packet header. Length counts the payload bytes after
// the header. Volume is 0 for h80 and h95.
type Header struct {
	Format HeaderFormat
	Volume uint16
	Cmd    Cmd
	Length uint32
}

// HeaderFor returns the header DRBD would put in front of a payload of
// length bytes (prepare_header): h100 from version 100, h95 from 95 when
// the payload exceeds MaxH80Payload, h80 otherwise.
func (d Dialect) HeaderFor(volume uint16, cmd Cmd, length uint32) Header {
	f := HeaderH80
	switch {
	case d.Version >= 100:
		f = HeaderH100
	case d.Version >= 95 && length > MaxH80Payload:
		f = HeaderH95
	}
	return Header{Format: f, Volume: volume, Cmd: cmd, Length: length}
}

// ParseHeader decodes the header at the start of b, which must hold at
// least d.HeaderSize() bytes. As decode_header does, from version 100 on
// only h100 is accepted (with zero padding); below it h80 and h95 both are.
// Errors are *ProtocolError wrapping ErrBadMagic.
func ParseHeader(d Dialect, b []byte) (Header, error) {
	hs := d.HeaderSize()
	if len(b) < hs {
		return Header{}, &ProtocolError{Err: ErrBadMagic, Detail: fmt.Sprintf("short header: %d of %d bytes", len(b), hs)}
	}
	be := binary.BigEndian
	if hs == 16 {
		if be.Uint32(b) != MagicH100 {
			return Header{}, &ProtocolError{Err: ErrBadMagic, Detail: fmt.Sprintf("magic %#08x in protocol version %d", be.Uint32(b), d.Version)}
		}
		h := Header{Format: HeaderH100, Volume: be.Uint16(b[4:]), Cmd: Cmd(be.Uint16(b[6:])), Length: be.Uint32(b[8:])}
		if pad := be.Uint32(b[12:]); pad != 0 {
			return Header{}, &ProtocolError{Cmd: h.Cmd, Length: h.Length, Err: ErrBadMagic, Detail: fmt.Sprintf("h100 padding %#x is not zero", pad)}
		}
		return h, nil
	}
	if be.Uint16(b) == MagicH95 {
		return Header{Format: HeaderH95, Cmd: Cmd(be.Uint16(b[2:])), Length: be.Uint32(b[4:])}, nil
	}
	if be.Uint32(b) == MagicH80 {
		return Header{Format: HeaderH80, Cmd: Cmd(be.Uint16(b[4:])), Length: uint32(be.Uint16(b[6:]))}, nil
	}
	return Header{}, &ProtocolError{Err: ErrBadMagic, Detail: fmt.Sprintf("magic %#08x in protocol version %d", be.Uint32(b), d.Version)}
}

// putHeader writes h into b[:h.Format.Size()]. The caller has checked that
// the fields fit the format.
func putHeader(b []byte, h Header) {
	be := binary.BigEndian
	switch h.Format {
	case HeaderH100:
		be.PutUint32(b, MagicH100)
		be.PutUint16(b[4:], h.Volume)
		be.PutUint16(b[6:], uint16(h.Cmd))
		be.PutUint32(b[8:], h.Length)
		be.PutUint32(b[12:], 0)
	case HeaderH95:
		be.PutUint16(b, MagicH95)
		be.PutUint16(b[2:], uint16(h.Cmd))
		be.PutUint32(b[4:], h.Length)
	default:
		be.PutUint32(b, MagicH80)
		be.PutUint16(b[4:], uint16(h.Cmd))
		be.PutUint16(b[6:], uint16(h.Length))
	}
}

// checkHeader reports whether h can be encoded.
func checkHeader(h Header) error {
	if h.Format != HeaderH100 && h.Volume != 0 {
		return invalid(h.Cmd, "volume %d needs an h100 header (protocol 100)", h.Volume)
	}
	if h.Format == HeaderH80 && h.Length > 0xffff {
		return invalid(h.Cmd, "payload of %d bytes does not fit an h80 header", h.Length)
	}
	return nil
}

// AppendHeader appends the encoding of h to dst.
func AppendHeader(dst []byte, h Header) ([]byte, error) {
	if h.Format < HeaderH80 || h.Format > HeaderH100 {
		return dst, invalid(h.Cmd, "header format %v", h.Format)
	}
	if err := checkHeader(h); err != nil {
		return dst, err
	}
	n := len(dst)
	dst = append(dst, make([]byte, h.Format.Size())...)
	putHeader(dst[n:], h)
	return dst, nil
}
