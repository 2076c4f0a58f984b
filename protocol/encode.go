package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

var be = binary.BigEndian

// maxBody is the largest payload part an encoder copies: a bitmap packet
// (everything else that is bigger is data, sent without a copy).
const maxBody = BitmapPacketMax

// AppendMessage appends the whole packet (header and payload) for m in
// dialect d to dst, as DRBD would send it. It copies data payloads; a Writer
// does not.
func AppendMessage(dst []byte, d Dialect, m Message) ([]byte, error) {
	var scratch [MaxHeaderSize + maxBody]byte
	h, body, tail, err := encode(scratch[:MaxHeaderSize], d, m)
	if err != nil {
		return dst, err
	}
	hs := h.Format.Size()
	dst = append(dst, body[MaxHeaderSize-hs:]...)
	return append(dst, tail...), nil
}

// encode lays out m behind the MaxHeaderSize bytes of b (cap(b) must allow
// maxBody more) and writes its header right in front of the payload, so the
// packet is buf[MaxHeaderSize-h.Format.Size():] followed by tail, the data
// payload that is not copied.
func encode(b []byte, d Dialect, m Message) (h Header, buf, tail []byte, err error) {
	if err := d.validate(); err != nil {
		return h, nil, nil, err
	}
	if m.Packet == nil {
		return h, nil, nil, fmt.Errorf("%w: nil packet", ErrInvalidPacket)
	}
	cmd := m.Packet.Command()
	if _, ok := m.Packet.(*SyncParam); ok && d.Agreed() && d.Version < 89 {
		cmd = CmdSyncParam
	}
	buf, tail, err = appendBody(b, d, cmd, m.Packet)
	if err != nil {
		return h, nil, nil, err
	}
	n := len(buf) - MaxHeaderSize + len(tail)
	h = d.HeaderFor(m.Volume, cmd, uint32(n))
	if err := checkHeader(h); err != nil {
		return h, nil, nil, err
	}
	if _, ok := m.Packet.(*Unknown); !ok {
		if _, err := check(d, h); err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) && pe.Err == ErrUnknownCommand {
				return h, nil, nil, fmt.Errorf("%w: %v: %s", ErrDialect, cmd, pe.Detail)
			}
			return h, nil, nil, fmt.Errorf("%w: %v", ErrInvalidPacket, err)
		}
	}
	putHeader(buf[MaxHeaderSize-h.Format.Size():], h)
	return h, buf, tail, nil
}

func wantCmd(c Cmd, ok ...Cmd) error {
	for _, o := range ok {
		if c == o {
			return nil
		}
	}
	return invalid(c, "not a command of this packet type")
}

func put32(b []byte, v uint32) []byte { return be.AppendUint32(b, v) }
func put64(b []byte, v uint64) []byte { return be.AppendUint64(b, v) }

// putName appends s as a NUL-padded field of width bytes, or, with width 0,
// as a NUL-terminated string.
func putName(b []byte, c Cmd, field, s string, width int) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return b, invalid(c, "%s %q contains NUL", field, s)
	}
	if len(s) >= SharedSecretMax {
		return b, invalid(c, "%s %q is longer than %d bytes", field, s, SharedSecretMax-1)
	}
	b = append(b, s...)
	if width == 0 {
		return append(b, 0), nil
	}
	for i := len(s); i < width; i++ {
		b = append(b, 0)
	}
	return b, nil
}

func wantDigest(c Cmd, d Dialect, digest []byte) error {
	if len(digest) != d.IntegrityDigestSize {
		return invalid(c, "integrity digest of %d bytes, dialect says %d", len(digest), d.IntegrityDigestSize)
	}
	return nil
}

// appendBody appends the payload of p to b, except a data payload, which it
// returns as tail.
func appendBody(b []byte, d Dialect, cmd Cmd, p Packet) (body, tail []byte, err error) {
	switch p := p.(type) {
	case *Initial:
		return b, nil, wantCmd(cmd, CmdInitialData, CmdInitialMeta)
	case *Empty:
		return b, nil, wantCmd(cmd, CmdPing, CmdPingAck, CmdUnplugRemote)
	case *ConnectionFeatures:
		b = put32(b, p.ProtocolMin)
		b = put32(b, p.FeatureFlags)
		b = put32(b, p.ProtocolMax)
		return append(b, p.reserved[:]...), nil, nil
	case *Auth:
		if err := wantCmd(cmd, CmdAuthChallenge, CmdAuthResponse); err != nil {
			return b, nil, err
		}
		if len(p.Data) > MaxAuthChallenge {
			return b, nil, invalid(cmd, "%d bytes", len(p.Data))
		}
		return append(b, p.Data...), nil, nil
	case *Protocol:
		if err := wantCmd(cmd, CmdProtocol, CmdProtocolUpdate); err != nil {
			return b, nil, err
		}
		b = put32(b, p.Protocol)
		b = put32(b, p.AfterSB0P)
		b = put32(b, p.AfterSB1P)
		b = put32(b, p.AfterSB2P)
		b = put32(b, p.ConnFlags)
		b = put32(b, p.TwoPrimaries)
		if d.Version < 87 {
			if p.IntegrityAlg != "" {
				return b, nil, invalid(cmd, "integrity-alg needs protocol 87")
			}
			return b, nil, nil
		}
		b, err = putName(b, cmd, "integrity-alg", p.IntegrityAlg, 0)
		return b, nil, err
	case *SyncParam:
		b = put32(b, p.ResyncRate)
		switch {
		case d.Version >= 89:
			if b, err = putName(b, cmd, "verify-alg", p.VerifyAlg, SharedSecretMax); err != nil {
				return b, nil, err
			}
			if b, err = putName(b, cmd, "csums-alg", p.CsumsAlg, SharedSecretMax); err != nil {
				return b, nil, err
			}
		case d.Version == 88:
			if p.CsumsAlg != "" {
				return b, nil, invalid(cmd, "csums-alg needs protocol 89")
			}
			if b, err = putName(b, cmd, "verify-alg", p.VerifyAlg, 0); err != nil {
				return b, nil, err
			}
		default:
			if p.VerifyAlg != "" || p.CsumsAlg != "" {
				return b, nil, invalid(cmd, "verify-alg needs protocol 88, csums-alg 89")
			}
		}
		if d.Version >= 95 {
			b = put32(b, p.CPlanAhead)
			b = put32(b, p.CDelayTarget)
			b = put32(b, p.CFillTarget)
			b = put32(b, p.CMaxRate)
		} else if p.CPlanAhead|p.CDelayTarget|p.CFillTarget|p.CMaxRate != 0 {
			return b, nil, invalid(cmd, "resync controller settings need protocol 95")
		}
		return b, nil, nil
	case *Sizes:
		b = put64(b, p.DiskSize)
		b = put64(b, p.UserSize)
		b = put64(b, p.CurrentSize)
		b = put32(b, p.MaxBIOSize)
		b = be.AppendUint16(b, p.QueueOrderType)
		b = be.AppendUint16(b, p.DDSFlags)
		if !d.has(FeatureWSame) {
			if p.QueueLimits != nil {
				return b, nil, invalid(cmd, "queue limits need feature WSAME")
			}
			return b, nil, nil
		}
		q := p.QueueLimits
		if q == nil {
			q = &QueueLimits{}
		}
		b = put32(b, q.PhysicalBlockSize)
		b = put32(b, q.LogicalBlockSize)
		b = put32(b, q.AlignmentOffset)
		b = put32(b, q.IOMin)
		b = put32(b, q.IOOpt)
		return append(b, q.DiscardEnabled, q.DiscardZeroesData, q.WriteSameCapable, q.pad), nil, nil
	case *UUIDs:
		b = put64(b, p.Current)
		b = put64(b, p.Bitmap)
		b = put64(b, p.History[0])
		b = put64(b, p.History[1])
		b = put64(b, p.DirtyBits)
		return put64(b, p.Flags), nil, nil
	case *SyncUUID:
		return put64(b, p.UUID), nil, nil
	case *State:
		return put32(b, p.State), nil, nil
	case *StateChgReq:
		if err := wantCmd(cmd, CmdStateChgReq, CmdConnStChgReq); err != nil {
			return b, nil, err
		}
		return put32(put32(b, p.Mask), p.Val), nil, nil
	case *StateChgReply:
		if err := wantCmd(cmd, CmdStateChgReply, CmdConnStChgReply); err != nil {
			return b, nil, err
		}
		return put32(b, uint32(p.RetCode)), nil, nil
	case *Data:
		if err := wantCmd(cmd, CmdData, CmdDataReply, CmdRSDataReply); err != nil {
			return b, nil, err
		}
		if err := wantDigest(cmd, d, p.Digest); err != nil {
			return b, nil, err
		}
		b = put64(b, p.Sector)
		b = put64(b, p.BlockID)
		b = put32(b, p.SeqNum)
		b = put32(b, p.Flags)
		return append(b, p.Digest...), p.Payload, nil
	case *WSame:
		if err := wantDigest(cmd, d, p.Digest); err != nil {
			return b, nil, err
		}
		b = put64(b, p.Sector)
		b = put64(b, p.BlockID)
		b = put32(b, p.SeqNum)
		b = put32(b, p.Flags)
		b = put32(b, p.Size)
		return append(b, p.Digest...), p.Payload, nil
	case *Trim:
		if err := wantCmd(cmd, CmdTrim, CmdZeroes); err != nil {
			return b, nil, err
		}
		b = put64(b, p.Sector)
		b = put64(b, p.BlockID)
		b = put32(b, p.SeqNum)
		b = put32(b, p.Flags)
		return put32(b, p.Size), nil, nil
	case *Barrier:
		return put32(put32(b, p.Barrier), p.pad), nil, nil
	case *BarrierAck:
		return put32(put32(b, p.Barrier), p.SetSize), nil, nil
	case *BlockAck:
		if err := wantCmd(cmd, CmdRecvAck, CmdWriteAck, CmdRSWriteAck, CmdSuperseded, CmdNegAck,
			CmdNegDReply, CmdNegRSDReply, CmdOVResult, CmdRSIsInSync, CmdRSCancel, CmdRetryWrite); err != nil {
			return b, nil, err
		}
		b = put64(b, p.Sector)
		b = put64(b, p.BlockID)
		b = put32(b, p.BlockSize)
		return put32(b, p.SeqNum), nil, nil
	case *BlockReq:
		if err := wantCmd(cmd, CmdDataRequest, CmdRSDataRequest, CmdOVRequest, CmdRSThinReq, CmdCsumRSRequest, CmdOVReply); err != nil {
			return b, nil, err
		}
		if len(p.Digest) > 0 && cmd != CmdCsumRSRequest && cmd != CmdOVReply {
			return b, nil, invalid(cmd, "carries no digest")
		}
		if len(p.Digest) > MaxDigestSize {
			return b, nil, invalid(cmd, "digest of %d bytes", len(p.Digest))
		}
		b = put64(b, p.Sector)
		b = put64(b, p.BlockID)
		b = put32(b, p.BlockSize)
		b = put32(b, p.pad)
		return append(b, p.Digest...), nil, nil
	case *BlockDesc:
		if err := wantCmd(cmd, CmdOutOfSync, CmdRSDeallocated); err != nil {
			return b, nil, err
		}
		b = put64(b, p.Sector)
		b = put32(b, p.BlockSize)
		return put32(b, p.pad), nil, nil
	case *Bitmap:
		if len(p.Words)*8 > BitmapPacketMax-d.HeaderSize() {
			return b, nil, invalid(cmd, "%d words do not fit in %d bytes", len(p.Words), BitmapPacketMax)
		}
		for _, w := range p.Words {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
		return b, nil, nil
	case *CompressedBitmap:
		if len(p.Code) == 0 || len(p.Code) > BitmapPacketMax {
			return b, nil, invalid(cmd, "code of %d bytes", len(p.Code))
		}
		return append(append(b, p.Encoding), p.Code...), nil, nil
	case *DelayProbe:
		return put32(put32(b, p.SeqNum), p.Offset), nil, nil
	case *Unknown:
		if !p.Cmd.Ignorable() {
			return b, nil, invalid(cmd, "only commands above %#x may be sent as Unknown", uint16(CmdMayIgnore))
		}
		if p.Length > MaxBIOSize {
			return b, nil, invalid(cmd, "%d bytes of filler", p.Length)
		}
		return b, make([]byte, p.Length), nil
	}
	return b, nil, fmt.Errorf("%w: packet type %T", ErrInvalidPacket, p)
}
