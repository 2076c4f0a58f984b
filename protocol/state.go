package protocol

import "fmt"

// StateFields is DRBD's 32-bit state word (union drbd_state) as plain
// fields, for P_STATE and for the mask and value of P_STATE_CHG_REQ /
// P_CONN_ST_CHG_REQ (a mask has all bits of a field set, e.g. Conn 31).
// The numbers are the kernel's enums (Role: 0 unknown, 1 primary,
// 2 secondary; Conn: drbd_conns 0..23; Disk, PDsk: drbd_disk_state 0..8);
// package replication owns their names.
//
// The word is sent as a big-endian uint32 whose bits are, from bit 0:
//
//	 31       23  22  21  20  19  18  17  16  13 12   9 8    4 3  2 1  0
//	+-----------+---+---+---+---+---+---+------+------+------+----+----+
//	|  unused   |sf |sn |ui |pi |ai |su | pdsk | disk | conn |peer|role|
//	+-----------+---+---+---+---+---+---+------+------+------+----+----+
//	sf SuspFen, sn SuspNod, ui UserISP, pi PeerISP, ai AftrISP, su Susp
//
// (the kernel's little-endian bitfield order; big-endian hosts declare the
// fields reversed to get the same word). A StateFields is a plain value.
type StateFields struct {
	Role, Peer uint8 // 2 bits each
	Conn       uint8 // 5 bits
	Disk, PDsk uint8 // 4 bits each
	Susp       bool  // I/O suspended by the user
	AftrISP    bool  // resync paused: waiting for a resync it is "after"
	PeerISP    bool  // resync paused by the peer
	UserISP    bool  // resync paused by the user
	SuspNod    bool  // I/O suspended: no data accessible
	SuspFen    bool  // I/O suspended: fence-peer handler running
}

// Bit positions and widths of the state word's fields.
const (
	stRoleShift, stRoleBits = 0, 2
	stPeerShift, stPeerBits = 2, 2
	stConnShift, stConnBits = 4, 5
	stDiskShift, stDiskBits = 9, 4
	stPDskShift, stPDskBits = 13, 4
	stSusp                  = 17
	stAftrISP               = 18
	stPeerISP               = 19
	stUserISP               = 20
	stSuspNod               = 21
	stSuspFen               = 22
)

// UnpackState splits a state word into its fields. The unused top 9 bits
// are dropped.
func UnpackState(w uint32) StateFields {
	field := func(shift, bits uint) uint8 { return uint8(w >> shift & (1<<bits - 1)) }
	flag := func(bit uint) bool { return w>>bit&1 == 1 }
	return StateFields{
		Role: field(stRoleShift, stRoleBits), Peer: field(stPeerShift, stPeerBits),
		Conn: field(stConnShift, stConnBits),
		Disk: field(stDiskShift, stDiskBits), PDsk: field(stPDskShift, stPDskBits),
		Susp: flag(stSusp), AftrISP: flag(stAftrISP), PeerISP: flag(stPeerISP),
		UserISP: flag(stUserISP), SuspNod: flag(stSuspNod), SuspFen: flag(stSuspFen),
	}
}

// Pack builds the state word. A field wider than its bits is a bug in the
// caller (a state that cannot exist), and panics rather than being
// truncated into another state.
func (s StateFields) Pack() uint32 {
	var w uint32
	field := func(name string, v uint8, shift, bits uint) {
		if v >= 1<<bits {
			panic(fmt.Sprintf("protocol: state field %s = %d does not fit %d bits", name, v, bits))
		}
		w |= uint32(v) << shift
	}
	flag := func(v bool, bit uint) {
		if v {
			w |= 1 << bit
		}
	}
	field("role", s.Role, stRoleShift, stRoleBits)
	field("peer", s.Peer, stPeerShift, stPeerBits)
	field("conn", s.Conn, stConnShift, stConnBits)
	field("disk", s.Disk, stDiskShift, stDiskBits)
	field("pdsk", s.PDsk, stPDskShift, stPDskBits)
	flag(s.Susp, stSusp)
	flag(s.AftrISP, stAftrISP)
	flag(s.PeerISP, stPeerISP)
	flag(s.UserISP, stUserISP)
	flag(s.SuspNod, stSuspNod)
	flag(s.SuspFen, stSuspFen)
	return w
}

// Fields unpacks the packet's state word.
func (p *State) Fields() StateFields { return UnpackState(p.State) }
