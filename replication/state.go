package replication

import "fmt"

// Role is a node's role for a resource.
//
// The zero value is invalid; Wire() gives DRBD's enum drbd_role value
// (Unknown=0, Primary=1, Secondary=2).
type Role uint8

const (
	RoleUnknown Role = 1 + iota
	RolePrimary
	RoleSecondary
)

var roleNames = [...]string{"Unknown", "Primary", "Secondary"}

// String returns the name drbdadm prints.
func (r Role) String() string {
	if r < RoleUnknown || r > RoleSecondary {
		return fmt.Sprintf("Role(%d)", uint8(r))
	}
	return roleNames[r-1]
}

// Wire is DRBD's numeric value of the role.
func (r Role) Wire() uint8 { return uint8(r - 1) }

// RoleFromWire converts DRBD's numeric role.
func RoleFromWire(v uint8) (Role, bool) {
	if v > 2 {
		return 0, false
	}
	return Role(v + 1), true
}

// ConnState is the connection state (DRBD 8.4 enum drbd_conns). The order
// matters: DRBD compares states with < and >, and so does this package.
//
// The zero value is invalid; Wire() gives DRBD's value (StandAlone=0 ...
// Behind=23).
type ConnState uint8

const (
	StandAlone ConnState = 1 + iota
	Disconnecting
	Unconnected
	Timeout
	BrokenPipe
	NetworkFailure
	ProtocolError
	TearDown
	WFConnection
	WFReportParams
	Connected
	StartingSyncS
	StartingSyncT
	WFBitMapS
	WFBitMapT
	WFSyncUUID
	SyncSource
	SyncTarget
	VerifyS
	VerifyT
	PausedSyncS
	PausedSyncT
	Ahead
	Behind
)

var connNames = [...]string{
	"StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe",
	"NetworkFailure", "ProtocolError", "TearDown", "WFConnection",
	"WFReportParams", "Connected", "StartingSyncS", "StartingSyncT",
	"WFBitMapS", "WFBitMapT", "WFSyncUUID", "SyncSource", "SyncTarget",
	"VerifyS", "VerifyT", "PausedSyncS", "PausedSyncT", "Ahead", "Behind",
}

// String returns the name /proc/drbd and drbdadm cstate print.
func (c ConnState) String() string {
	if c < StandAlone || c > Behind {
		return fmt.Sprintf("ConnState(%d)", uint8(c))
	}
	return connNames[c-1]
}

// Wire is DRBD's numeric value of the connection state.
func (c ConnState) Wire() uint8 { return uint8(c - 1) }

// ConnStateFromWire converts DRBD's numeric connection state.
func ConnStateFromWire(v uint8) (ConnState, bool) {
	if v > Behind.Wire() {
		return 0, false
	}
	return ConnState(v + 1), true
}

// IsSyncing reports whether c is a resync or verify state (DRBD's
// "xx >= C_SYNC_SOURCE && xx <= C_PAUSED_SYNC_T").
func (c ConnState) IsSyncing() bool { return c >= SyncSource && c <= PausedSyncT }

// DiskState is a disk's state (DRBD 8.4 enum drbd_disk_state). Ordered as
// DRBD orders it.
//
// The zero value is invalid; Wire() gives DRBD's value (Diskless=0 ...
// UpToDate=8).
type DiskState uint8

const (
	Diskless DiskState = 1 + iota
	Attaching
	Failed
	Negotiating
	Inconsistent
	Outdated
	DUnknown
	Consistent
	UpToDate
)

var diskNames = [...]string{
	"Diskless", "Attaching", "Failed", "Negotiating", "Inconsistent",
	"Outdated", "DUnknown", "Consistent", "UpToDate",
}

// String returns the name drbdadm dstate prints.
func (d DiskState) String() string {
	if d < Diskless || d > UpToDate {
		return fmt.Sprintf("DiskState(%d)", uint8(d))
	}
	return diskNames[d-1]
}

// Wire is DRBD's numeric value of the disk state.
func (d DiskState) Wire() uint8 { return uint8(d - 1) }

// DiskStateFromWire converts DRBD's numeric disk state.
func DiskStateFromWire(v uint8) (DiskState, bool) {
	if v > UpToDate.Wire() {
		return 0, false
	}
	return DiskState(v + 1), true
}

// State is one volume's state as DRBD 8.4 keeps it (union drbd_state):
// our role, the peer's role, the connection, both disks, and the
// suspend / sync-pause bits.
type State struct {
	Role    Role
	Peer    Role
	Conn    ConnState
	Disk    DiskState
	PDsk    DiskState
	Susp    bool // I/O suspended by the user
	AftrISP bool // sync paused by resync-after dependency
	PeerISP bool // sync paused by the peer
	UserISP bool // sync paused by the user (pause-sync)
	SuspNod bool // I/O suspended: no data accessible
	SuspFen bool // I/O suspended: fence-peer handler running
}

func (s State) String() string {
	return fmt.Sprintf("{ cs:%s ro:%s/%s ds:%s/%s %s }", s.Conn, s.Role, s.Peer, s.Disk, s.PDsk, s.flagString())
}

// flagString is the "r-----" column of /proc/drbd: I/O running or
// suspended, then after-sync pause, peer pause, user pause (the
// congestion and AL-suspend columns are '-' here).
func (s State) flagString() string {
	b := []byte("r-----")
	if s.Susp || s.SuspNod || s.SuspFen {
		b[0] = 's'
	}
	if s.AftrISP {
		b[1] = 'a'
	}
	if s.PeerISP {
		b[2] = 'p'
	}
	if s.UserISP {
		b[3] = 'u'
	}
	return string(b)
}

// Flags returns the /proc/drbd flag column ("r-----").
func (s State) Flags() string { return s.flagString() }

// Pack encodes s as the 32-bit word of P_STATE (DRBD's bitfield with the
// first field in the least significant bits): role:2 peer:2 conn:5 disk:4
// pdsk:4 susp:1 aftr_isp:1 peer_isp:1 user_isp:1 susp_nod:1 susp_fen:1.
func (s State) Pack() uint32 {
	// Zero (unset) fields pack as 0, so partial states (the val of a
	// state change request) never spill into neighbouring fields.
	wire := func(v, zero uint8) uint32 {
		if v == 0 {
			return 0
		}
		return uint32(v - 1)
	}
	w := wire(uint8(s.Role), 0)&3 |
		(wire(uint8(s.Peer), 0)&3)<<2 |
		(wire(uint8(s.Conn), 0)&31)<<4 |
		(wire(uint8(s.Disk), 0)&15)<<9 |
		(wire(uint8(s.PDsk), 0)&15)<<13
	for i, b := range []bool{s.Susp, s.AftrISP, s.PeerISP, s.UserISP, s.SuspNod, s.SuspFen} {
		if b {
			w |= 1 << (17 + i)
		}
	}
	return w
}

// UnpackState decodes a P_STATE word. Out-of-range fields are an error:
// the caller treats the packet as a protocol error.
func UnpackState(w uint32) (State, error) {
	var s State
	var ok [5]bool
	s.Role, ok[0] = RoleFromWire(uint8(w & 3))
	s.Peer, ok[1] = RoleFromWire(uint8(w >> 2 & 3))
	s.Conn, ok[2] = ConnStateFromWire(uint8(w >> 4 & 31))
	s.Disk, ok[3] = DiskStateFromWire(uint8(w >> 9 & 15))
	s.PDsk, ok[4] = DiskStateFromWire(uint8(w >> 13 & 15))
	for _, o := range ok {
		if !o {
			return State{}, fmt.Errorf("replication: invalid state word %#08x", w)
		}
	}
	s.Susp = w>>17&1 == 1
	s.AftrISP = w>>18&1 == 1
	s.PeerISP = w>>19&1 == 1
	s.UserISP = w>>20&1 == 1
	s.SuspNod = w>>21&1 == 1
	s.SuspFen = w>>22&1 == 1
	return s, nil
}

// StateMask selects the fields of a state change request (P_STATE_CHG_REQ
// mask/val use the same packing as Pack).
type StateMask struct {
	Role, Peer, Conn, Disk, PDsk                      bool
	Susp, AftrISP, PeerISP, UserISP, SuspNod, SuspFen bool
}

// Pack encodes the mask with all bits of each selected field set.
func (m StateMask) Pack() uint32 {
	var w uint32
	set := func(on bool, bits uint32) {
		if on {
			w |= bits
		}
	}
	set(m.Role, 3)
	set(m.Peer, 3<<2)
	set(m.Conn, 31<<4)
	set(m.Disk, 15<<9)
	set(m.PDsk, 15<<13)
	for i, b := range []bool{m.Susp, m.AftrISP, m.PeerISP, m.UserISP, m.SuspNod, m.SuspFen} {
		set(b, 1<<(17+i))
	}
	return w
}

// UnpackMask decodes a mask word: a field is selected if any of its bits is.
func UnpackMask(w uint32) StateMask {
	return StateMask{
		Role: w&3 != 0, Peer: w&(3<<2) != 0, Conn: w&(31<<4) != 0,
		Disk: w&(15<<9) != 0, PDsk: w&(15<<13) != 0,
		Susp: w&(1<<17) != 0, AftrISP: w&(1<<18) != 0, PeerISP: w&(1<<19) != 0,
		UserISP: w&(1<<20) != 0, SuspNod: w&(1<<21) != 0, SuspFen: w&(1<<22) != 0,
	}
}

// apply returns s with the masked fields taken from val.
func (m StateMask) apply(s, val State) State {
	if m.Role {
		s.Role = val.Role
	}
	if m.Peer {
		s.Peer = val.Peer
	}
	if m.Conn {
		s.Conn = val.Conn
	}
	if m.Disk {
		s.Disk = val.Disk
	}
	if m.PDsk {
		s.PDsk = val.PDsk
	}
	if m.Susp {
		s.Susp = val.Susp
	}
	if m.AftrISP {
		s.AftrISP = val.AftrISP
	}
	if m.PeerISP {
		s.PeerISP = val.PeerISP
	}
	if m.UserISP {
		s.UserISP = val.UserISP
	}
	if m.SuspNod {
		s.SuspNod = val.SuspNod
	}
	if m.SuspFen {
		s.SuspFen = val.SuspFen
	}
	return s
}
