package replication

import "fmt"

// StateErr is the result of a refused state change, DRBD's enum
// drbd_state_rv (negative values). Error() returns the exact text DRBD
// prints after "State change failed: ", which drbdadm users and scripts
// know.
type StateErr int

// Values and texts of DRBD 8.4 (drbd_strings.c).
const (
	ErrTwoPrimaries       StateErr = -1
	ErrNoUpToDateDisk     StateErr = -2
	ErrNoLocalDisk        StateErr = -4
	ErrNoRemoteDisk       StateErr = -5
	ErrConnectedOutdates  StateErr = -6
	ErrPrimaryNop         StateErr = -7
	ErrResyncRunning      StateErr = -8
	ErrAlreadyStandAlone  StateErr = -9
	ErrCWFailedByPeer     StateErr = -10
	ErrIsDiskless         StateErr = -11
	ErrDeviceInUse        StateErr = -12
	ErrNoNetConfig        StateErr = -13
	ErrNoVerifyAlg        StateErr = -14
	ErrNeedConnection     StateErr = -15
	ErrLowerThanOutdated  StateErr = -16
	ErrNotSupported       StateErr = -17
	ErrInTransientState   StateErr = -18
	ErrConcurrentStChg    StateErr = -19
	ErrOtherVolPeerPri    StateErr = -20
	ErrOutdateWithoutConn StateErr = -21
)

var stateErrText = map[StateErr]string{
	ErrTwoPrimaries:       "Multiple primaries not allowed by config",
	ErrNoUpToDateDisk:     "Need access to UpToDate data",
	ErrNoLocalDisk:        "Can not resync without local disk",
	ErrNoRemoteDisk:       "Can not resync without remote disk",
	ErrConnectedOutdates:  "Refusing to be Outdated while Connected",
	ErrPrimaryNop:         "Refusing to be Primary while peer is not outdated",
	ErrResyncRunning:      "Can not start OV/resync since it is already active",
	ErrAlreadyStandAlone:  "Can not disconnect a StandAlone device",
	ErrCWFailedByPeer:     "State change was refused by peer node",
	ErrIsDiskless:         "Device is diskless, the requested operation requires a disk",
	ErrDeviceInUse:        "Device is held open by someone",
	ErrNoNetConfig:        "Have no net/connection configuration",
	ErrNoVerifyAlg:        "Need a verify algorithm to start online verify",
	ErrNeedConnection:     "Need a connection to start verify or resync",
	ErrLowerThanOutdated:  "Disk state is lower than outdated",
	ErrNotSupported:       "Peer does not support protocol",
	ErrInTransientState:   "In transient state, retry after next state change",
	ErrConcurrentStChg:    "Concurrent state changes detected and aborted",
	ErrOtherVolPeerPri:    "Other vol primary on peer not allowed by config",
	ErrOutdateWithoutConn: "Need a connection for a graceful disconnect/outdate peer",
}

func (e StateErr) Error() string {
	if t, ok := stateErrText[e]; ok {
		return t
	}
	return fmt.Sprintf("state change error %d", int(e))
}

// Code is DRBD's numeric value (SS_*), sent in P_STATE_CHG_REPLY.
func (e StateErr) Code() int32 { return int32(e) }

// Wire result codes that are not errors.
const (
	ssSuccess   int32 = 1
	ssNothingTo int32 = 2
	ssCWSuccess int32 = 3
	ssCWNoNeed  int32 = 4
)

// ruleEnv is what the validity rules need to know besides the states.
type ruleEnv struct {
	twoPrimaries  bool // net allow-two-primaries
	haveNetConf   bool
	fencing       Fencing
	openCount     int  // users of the exported device (NBD clients, kernel)
	verifyAlg     bool // a verify-alg is configured
	agreedVersion int
	stateSent     bool // our state was sent and the handshake is in progress
}

// Fencing is the disk option "fencing".
type Fencing uint8

const (
	FencingDontCare Fencing = 1 + iota
	FencingResourceOnly
	FencingResourceAndStonith
)

func (f Fencing) String() string {
	switch f {
	case FencingDontCare:
		return "dont-care"
	case FencingResourceOnly:
		return "resource-only"
	case FencingResourceAndStonith:
		return "resource-and-stonith"
	}
	return fmt.Sprintf("Fencing(%d)", uint8(f))
}

// isValidState checks a state on its own (DRBD's is_valid_state). It
// returns nil or the StateErr DRBD would.
func isValidState(env ruleEnv, ns State) error {
	if env.haveNetConf && !env.twoPrimaries && ns.Role == RolePrimary && ns.Peer == RolePrimary {
		return ErrTwoPrimaries
	}
	switch {
	case ns.Role == RoleSecondary && env.openCount > 0:
		return ErrDeviceInUse
	case ns.Role == RolePrimary && ns.Conn < Connected && ns.Disk < UpToDate:
		return ErrNoUpToDateDisk
	case env.fencing >= FencingResourceOnly && ns.Role == RolePrimary && ns.Conn < Connected && ns.PDsk >= DUnknown:
		return ErrPrimaryNop
	case ns.Role == RolePrimary && ns.Disk <= Inconsistent && ns.PDsk <= Inconsistent:
		return ErrNoUpToDateDisk
	case ns.Conn > Connected && ns.Disk < Inconsistent:
		return ErrNoLocalDisk
	case ns.Conn > Connected && ns.PDsk < Inconsistent:
		return ErrNoRemoteDisk
	case ns.Conn > Connected && ns.Disk < UpToDate && ns.PDsk < UpToDate:
		return ErrNoUpToDateDisk
	case (ns.Conn == Connected || ns.Conn == WFBitMapS || ns.Conn == SyncSource || ns.Conn == PausedSyncS) && ns.Disk == Outdated:
		return ErrConnectedOutdates
	case (ns.Conn == VerifyS || ns.Conn == VerifyT) && !env.verifyAlg:
		return ErrNoVerifyAlg
	case (ns.Conn == VerifyS || ns.Conn == VerifyT) && env.agreedVersion < 88:
		return ErrNotSupported
	case ns.Role == RolePrimary && ns.Disk < UpToDate && ns.PDsk < UpToDate:
		return ErrNoUpToDateDisk
	case (ns.Conn == StartingSyncS || ns.Conn == StartingSyncT) && ns.PDsk == DUnknown:
		return ErrNeedConnection
	case ns.Conn >= Connected && ns.PDsk == DUnknown:
		return ErrConnectedOutdates
	}
	return nil
}

// isValidSoftTransition limits transitions that a user (or the peer) may
// request; DRBD's is_valid_soft_transition. Later rules win, as in DRBD.
func isValidSoftTransition(env ruleEnv, os, ns State) error {
	var rv error
	if (ns.Conn == StartingSyncT || ns.Conn == StartingSyncS) && os.Conn > Connected {
		rv = ErrResyncRunning
	}
	if ns.Conn == Disconnecting && os.Conn == StandAlone {
		rv = ErrAlreadyStandAlone
	}
	if ns.Disk > Attaching && os.Disk == Diskless {
		rv = ErrIsDiskless
	}
	if ns.Conn == WFConnection && os.Conn < Unconnected {
		rv = ErrNoNetConfig
	}
	if ns.Disk == Outdated && os.Disk < Outdated && os.Disk != Attaching {
		rv = ErrLowerThanOutdated
	}
	if ns.Conn == Disconnecting && os.Conn == Unconnected {
		rv = ErrInTransientState
	}
	if env.stateSent && !((ns.Conn == WFReportParams && os.Conn == WFConnection) ||
		(ns.Conn >= Connected && os.Conn == WFReportParams)) {
		rv = ErrInTransientState
	}
	if os.Role != RolePrimary && ns.Role == RolePrimary && ns.PDsk == UpToDate &&
		ns.Disk != UpToDate && ns.Disk != Diskless &&
		(ns.Conn <= WFSyncUUID || ns.Conn != os.Conn) {
		rv = ErrInTransientState
	}
	if (ns.Conn == VerifyS || ns.Conn == VerifyT) && os.Conn < Connected {
		rv = ErrNeedConnection
	}
	if (ns.Conn == VerifyS || ns.Conn == VerifyT) && ns.Conn != os.Conn && os.Conn > Connected {
		rv = ErrResyncRunning
	}
	if (ns.Conn == StartingSyncS || ns.Conn == StartingSyncT) && os.Conn < Connected {
		rv = ErrNeedConnection
	}
	if (ns.Conn == SyncTarget || ns.Conn == SyncSource) && os.Conn < WFReportParams {
		rv = ErrNeedConnection
	}
	if ns.Conn == Disconnecting && ns.PDsk == Outdated && os.Conn < Connected && os.PDsk > Outdated {
		rv = ErrOutdateWithoutConn
	}
	return rv
}

// errNothingToDo is returned by isValidConnTransition when the connection
// part does not change; callers treat it as "no objection".
var errNothingToDo = fmt.Errorf("replication: nothing to do")

// isValidTransition limits hard transitions (facts imposed by the
// environment); DRBD's is_valid_transition.
func isValidTransition(os, ns State) error {
	var rv error
	switch oc, nc := os.Conn, ns.Conn; {
	case oc == nc:
		rv = errNothingToDo
	case oc == StandAlone && nc == Disconnecting:
		rv = ErrAlreadyStandAlone
	case oc == StandAlone && nc != Unconnected:
		rv = ErrNeedConnection
	case oc < WFReportParams && nc >= Connected:
		rv = ErrNeedConnection
	case oc >= Timeout && oc <= TearDown && nc != Unconnected && nc != Disconnecting:
		rv = ErrInTransientState
	case oc == Disconnecting && nc != StandAlone:
		rv = ErrInTransientState
	}
	if ns.Disk == Failed && os.Disk == Diskless {
		rv = ErrIsDiskless
	}
	return rv
}

// sanitizeState adds the changes implied by a transition (DRBD's
// sanitize_state): a lost connection makes the peer unknown, connection
// states bound the disk states, sync-pause bits pause a running resync.
func sanitizeState(env ruleEnv, os, ns State) State {
	if ns.Conn < Connected {
		ns.PeerISP = false
		ns.Peer = RoleUnknown
		if ns.PDsk > DUnknown || ns.PDsk < Inconsistent {
			ns.PDsk = DUnknown
		}
	}
	if ns.Conn == StandAlone && ns.Disk == Diskless && ns.Role == RoleSecondary {
		ns.AftrISP = false
	}
	if ns.Conn > Connected && (ns.Disk <= Failed || ns.PDsk <= Failed) {
		ns.Conn = Connected
	}
	if ns.Conn >= Connected && ns.Conn < Ahead {
		if ns.Disk == Consistent || ns.Disk == Outdated {
			ns.Disk = UpToDate
		}
		if ns.PDsk == Consistent || ns.PDsk == Outdated {
			ns.PDsk = UpToDate
		}
	}
	diskMin, diskMax, pdskMin, pdskMax := Diskless, UpToDate, Inconsistent, DUnknown
	switch ns.Conn {
	case WFBitMapT, PausedSyncT, StartingSyncT, WFSyncUUID, Behind:
		diskMin, diskMax, pdskMin, pdskMax = Inconsistent, Outdated, UpToDate, UpToDate
	case VerifyS, VerifyT:
		diskMin, diskMax, pdskMin, pdskMax = UpToDate, UpToDate, UpToDate, UpToDate
	case Connected:
		diskMin, diskMax, pdskMin, pdskMax = Diskless, UpToDate, Diskless, UpToDate
	case WFBitMapS, PausedSyncS, StartingSyncS, Ahead:
		diskMin, diskMax, pdskMin, pdskMax = UpToDate, UpToDate, Inconsistent, Consistent
	case SyncTarget:
		diskMin, diskMax, pdskMin, pdskMax = Inconsistent, Inconsistent, UpToDate, UpToDate
	case SyncSource:
		diskMin, diskMax, pdskMin, pdskMax = UpToDate, UpToDate, Inconsistent, Inconsistent
	}
	ns.Disk = min(max(ns.Disk, diskMin), diskMax)
	if ns.Disk > diskMax {
		ns.Disk = diskMax
	}
	if ns.PDsk > pdskMax {
		ns.PDsk = pdskMax
	}
	if ns.PDsk < pdskMin {
		ns.PDsk = pdskMin
	}
	if env.fencing == FencingResourceAndStonith &&
		(ns.Role == RolePrimary && ns.Conn < Connected && ns.PDsk > Outdated) &&
		!(os.Role == RolePrimary && os.Conn < Connected && os.PDsk > Outdated) {
		ns.SuspFen = true
	}
	if ns.Conn >= Connected {
		ns.SuspFen = false // the peer is back: no fencing needed
	}
	if ns.AftrISP || ns.PeerISP || ns.UserISP {
		if ns.Conn == SyncSource {
			ns.Conn = PausedSyncS
		}
		if ns.Conn == SyncTarget {
			ns.Conn = PausedSyncT
		}
	} else {
		if ns.Conn == PausedSyncS {
			ns.Conn = SyncSource
		}
		if ns.Conn == PausedSyncT {
			ns.Conn = SyncTarget
		}
	}
	return ns
}
