package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Allocator returns a buffer of exactly n bytes (len n) for the data of a
// data-carrying packet. The Reader never asks for more than the limits in the
// package doc allow (at most MaxBIOSize) and only after the header passed
// the checks. The buffer becomes part of the returned packet: the caller
// owns it from then on (and may return it to its pool when done).
type Allocator func(n int) []byte

func makeBytes(n int) []byte { return make([]byte, n) }

// owner decides where the byte slices of a decoded packet live.
type owner struct {
	// alias: slices point into the decoder's input (DecodePayload).
	alias bool
	// alloc supplies data payloads and digests when not aliasing.
	alloc Allocator
}

// block returns b for a block-I/O field (a digest), owned by the caller.
func (o owner) block(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if o.alias {
		return b, nil
	}
	c, err := o.get(len(b))
	if err != nil {
		return nil, err
	}
	copy(c, b)
	return c, nil
}

func (o owner) get(n int) ([]byte, error) {
	c := o.alloc(n)
	if len(c) != n {
		return nil, errAllocator
	}
	return c, nil
}

// plain returns b for any other variable field (auth bytes, bitmap code).
func (o owner) plain(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if o.alias {
		return b
	}
	return bytes.Clone(b)
}

var errAllocator = errors.New("protocol: Allocator returned a buffer of the wrong length")

// DecodePayload decodes the payload of the packet with header h in dialect
// d. payload must be exactly h.Length bytes. The sizes are checked as the
// Reader checks them; byte slices in the result (Data.Payload, digests,
// Auth.Data, CompressedBitmap.Code) alias payload. Unknown ignorable
// commands give *Unknown. Errors are *ProtocolError.
func DecodePayload(d Dialect, h Header, payload []byte) (Packet, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	if h.Cmd.Ignorable() && !known(h.Cmd) {
		return &Unknown{Cmd: h.Cmd, Length: h.Length}, nil
	}
	s, err := check(d, h)
	if err != nil {
		return nil, err
	}
	if len(payload) != int(h.Length) {
		return nil, protoErr(h, ErrBadSize, "have %d payload bytes", len(payload))
	}
	fixed, bulk := payload, []byte(nil)
	if s.bulk {
		fixed, bulk = payload[:s.min], payload[s.min:]
		if len(bulk) == 0 {
			bulk = nil
		}
	}
	return decodeBody(d, h, fixed, bulk, owner{alias: true})
}

// Decode decodes the first whole packet in b: its message and the number
// of bytes it took. It checks in the Reader's order (header, then the
// command's limits, then the payload), so a b that ends inside an otherwise
// acceptable packet gives ErrBadSize with the detail "truncated". Byte
// slices in the result alias b. Use a Reader for streams.
func Decode(d Dialect, b []byte) (Message, int, error) {
	if err := d.validate(); err != nil {
		return Message{}, 0, err
	}
	h, err := ParseHeader(d, b)
	if err != nil {
		return Message{}, 0, err
	}
	if !h.Cmd.Ignorable() || known(h.Cmd) {
		if _, err := check(d, h); err != nil {
			return Message{}, 0, err
		}
	}
	hs := h.Format.Size()
	if uint64(len(b)-hs) < uint64(h.Length) {
		return Message{}, 0, protoErr(h, ErrBadSize, "truncated: %d of %d payload bytes", len(b)-hs, h.Length)
	}
	n := hs + int(h.Length)
	p, err := DecodePayload(d, h, b[hs:n])
	if err != nil {
		return Message{}, 0, err
	}
	return Message{Volume: h.Volume, Packet: p}, n, nil
}

// known reports whether DRBD 8.4 defines cmd among the ignorable numbers.
func known(c Cmd) bool {
	return c == CmdInitialData || c == CmdInitialMeta || c == CmdConnectionFeatures
}

// getName reads a name. padded: a NUL-padded fixed-width field, which must
// hold a NUL and only NULs after it. Otherwise all of b is the string and
// its NUL: exactly one, at the end. Anything else cannot come from DRBD (it
// memsets and strcpys) and would not re-encode to the same bytes.
func getName(h Header, field string, b []byte, padded bool) (string, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", protoErr(h, ErrMalformed, "%s is not NUL-terminated", field)
	}
	if !padded && i != len(b)-1 {
		return "", protoErr(h, ErrMalformed, "%s has bytes after its NUL", field)
	}
	for _, c := range b[i:] {
		if c != 0 {
			return "", protoErr(h, ErrMalformed, "%s has bytes after its NUL", field)
		}
	}
	return string(b[:i]), nil
}

// decodeBody decodes a payload whose length passed check: fixed is the part
// up to the data (the whole payload for non-data packets), bulk the data.
func decodeBody(d Dialect, h Header, b, bulk []byte, o owner) (Packet, error) {
	u32 := func(off int) uint32 { return be.Uint32(b[off:]) }
	u64 := func(off int) uint64 { return be.Uint64(b[off:]) }
	ds := d.IntegrityDigestSize
	switch c := h.Cmd; c {
	case CmdInitialData, CmdInitialMeta:
		return &Initial{Cmd: c}, nil
	case CmdPing, CmdPingAck, CmdUnplugRemote:
		return &Empty{Cmd: c}, nil
	case CmdConnectionFeatures:
		p := &ConnectionFeatures{ProtocolMin: u32(0), FeatureFlags: u32(4), ProtocolMax: u32(8)}
		copy(p.reserved[:], b[12:])
		return p, nil
	case CmdAuthChallenge, CmdAuthResponse:
		return &Auth{Cmd: c, Data: o.plain(b)}, nil
	case CmdProtocol, CmdProtocolUpdate:
		p := &Protocol{Cmd: c, Protocol: u32(0), AfterSB0P: u32(4), AfterSB1P: u32(8),
			AfterSB2P: u32(12), ConnFlags: u32(16), TwoPrimaries: u32(20)}
		if d.Version >= 87 {
			alg, err := getName(h, "integrity-alg", b[sizeProtocol:], false)
			if err != nil {
				return nil, err
			}
			p.IntegrityAlg = alg
		}
		return p, nil
	case CmdSyncParam, CmdSyncParam89:
		p := &SyncParam{ResyncRate: u32(0)}
		var err error
		switch {
		case d.Version >= 89:
			if p.VerifyAlg, err = getName(h, "verify-alg", b[4:4+SharedSecretMax], true); err != nil {
				return nil, err
			}
			if p.CsumsAlg, err = getName(h, "csums-alg", b[4+SharedSecretMax:4+2*SharedSecretMax], true); err != nil {
				return nil, err
			}
		case d.Version == 88:
			if p.VerifyAlg, err = getName(h, "verify-alg", b[4:], false); err != nil {
				return nil, err
			}
		}
		if d.Version >= 95 {
			p.CPlanAhead, p.CDelayTarget, p.CFillTarget, p.CMaxRate = u32(132), u32(136), u32(140), u32(144)
		}
		return p, nil
	case CmdSizes:
		p := &Sizes{DiskSize: u64(0), UserSize: u64(8), CurrentSize: u64(16), MaxBIOSize: u32(24),
			QueueOrderType: be.Uint16(b[28:]), DDSFlags: be.Uint16(b[30:])}
		if len(b) > sizeSizes {
			p.QueueLimits = &QueueLimits{PhysicalBlockSize: u32(32), LogicalBlockSize: u32(36),
				AlignmentOffset: u32(40), IOMin: u32(44), IOOpt: u32(48),
				DiscardEnabled: b[52], DiscardZeroesData: b[53], WriteSameCapable: b[54], pad: b[55]}
		}
		return p, nil
	case CmdUUIDs:
		return &UUIDs{Current: u64(0), Bitmap: u64(8), History: [2]uint64{u64(16), u64(24)},
			DirtyBits: u64(32), Flags: u64(40)}, nil
	case CmdSyncUUID:
		return &SyncUUID{UUID: u64(0)}, nil
	case CmdState:
		return &State{State: u32(0)}, nil
	case CmdStateChgReq, CmdConnStChgReq:
		return &StateChgReq{Cmd: c, Mask: u32(0), Val: u32(4)}, nil
	case CmdStateChgReply, CmdConnStChgReply:
		return &StateChgReply{Cmd: c, RetCode: int32(u32(0))}, nil
	case CmdData, CmdDataReply, CmdRSDataReply:
		dig, err := o.block(b[sizeData : sizeData+ds])
		if err != nil {
			return nil, err
		}
		return &Data{Cmd: c, Sector: u64(0), BlockID: u64(8), SeqNum: u32(16), Flags: u32(20),
			Digest: dig, Payload: bulk}, nil
	case CmdWSame:
		dig, err := o.block(b[sizeTrim : sizeTrim+ds])
		if err != nil {
			return nil, err
		}
		return &WSame{Sector: u64(0), BlockID: u64(8), SeqNum: u32(16), Flags: u32(20), Size: u32(24),
			Digest: dig, Payload: bulk}, nil
	case CmdTrim, CmdZeroes:
		return &Trim{Cmd: c, Sector: u64(0), BlockID: u64(8), SeqNum: u32(16), Flags: u32(20), Size: u32(24)}, nil
	case CmdBarrier:
		return &Barrier{Barrier: u32(0), pad: u32(4)}, nil
	case CmdBarrierAck:
		return &BarrierAck{Barrier: u32(0), SetSize: u32(4)}, nil
	case CmdRecvAck, CmdWriteAck, CmdRSWriteAck, CmdSuperseded, CmdNegAck,
		CmdNegDReply, CmdNegRSDReply, CmdOVResult, CmdRSIsInSync, CmdRSCancel, CmdRetryWrite:
		return &BlockAck{Cmd: c, Sector: u64(0), BlockID: u64(8), BlockSize: u32(16), SeqNum: u32(20)}, nil
	case CmdDataRequest, CmdRSDataRequest, CmdOVRequest, CmdRSThinReq, CmdCsumRSRequest, CmdOVReply:
		dig, err := o.block(b[sizeBlockReq:])
		if err != nil {
			return nil, err
		}
		return &BlockReq{Cmd: c, Sector: u64(0), BlockID: u64(8), BlockSize: u32(16), pad: u32(20), Digest: dig}, nil
	case CmdOutOfSync, CmdRSDeallocated:
		return &BlockDesc{Cmd: c, Sector: u64(0), BlockSize: u32(8), pad: u32(12)}, nil
	case CmdBitmap:
		p := &Bitmap{}
		if n := len(b) / 8; n > 0 {
			p.Words = make([]uint64, n)
			for i := range p.Words {
				p.Words[i] = binary.LittleEndian.Uint64(b[8*i:])
			}
		}
		return p, nil
	case CmdCompressedBitmap:
		return &CompressedBitmap{Encoding: b[0], Code: o.plain(b[1:])}, nil
	case CmdDelayProbe:
		return &DelayProbe{SeqNum: u32(0), Offset: u32(4)}, nil
	}
	// check admitted a command this switch does not know: a bug here.
	panic("protocol: no decoder for " + h.Cmd.String())
}
