package replication

import "fmt"

// Indexes into a generation UUID set, as DRBD's enum drbd_uuid_index.
const (
	uiCurrent = iota
	uiBitmap
	uiHistory0
	uiHistory1
)

// uuidJustCreated is the current UUID of freshly created metadata.
const uuidJustCreated uint64 = 4

// uuidNewBMOffset is added to the bitmap UUID when a sync source starts a
// resync (protocol >= 96), so the peer can tell a lost P_SYNC_UUID.
const uuidNewBMOffset uint64 = 1 << 48

// genUUIDs is a set of generation UUIDs: current, bitmap, history[2].
// Bit 0 of current records "was Primary"; comparisons mask it.
type genUUIDs [4]uint64

func (u genUUIDs) String() string {
	return fmt.Sprintf("%016X:%016X:%016X:%016X", u[0], u[1], u[2], u[3])
}

// m masks the Primary bit.
func m(v uint64) uint64 { return v &^ 1 }

// uuidCompare holds the inputs of DRBD's drbd_uuid_compare. The
// comparison may correct self or peer in place (rules 34..37, 51, 71),
// exactly as DRBD does, so callers pass copies they then adopt.
type uuidCompare struct {
	self, peer         genUUIDs
	peerFlags          uint64 // UUIDFlag* from the peer's P_UUIDS
	selfCrashedPrimary bool
	selfRole, peerRole Role
	resolveConflicts   bool // we hold RESOLVE_CONFLICTS (accepted the meta socket)
	agreedVersion      int
	agreedFeatures     uint32
	log                []string // what DRBD would log ("was SyncSource, ...")
}

// Results of compare beyond the ±2 / ±1 / 0 / ±100 / -1000 scale.
const (
	hgUnrelated             = -1000
	hgSplitBrainAutoRecover = 100
	hgSplitBrainDisconnect  = -100
)

// compare returns DRBD's handshake number and the rule that decided:
//
//	100 split brain, try auto recovery    2 sync source, full sync
//	  1 sync source, bitmap               0 no sync
//	 -1 sync target, bitmap              -2 sync target, full sync
//	-100 split brain, disconnect       -1000 unrelated data
//	-1091 / -1096 need protocol 91 / 96; < -0x10000 needs protocol+features
func (c *uuidCompare) compare() (hg int, rule int) {
	self := m(c.self[uiCurrent])
	peer := m(c.peer[uiCurrent])

	if self == uuidJustCreated && peer == uuidJustCreated {
		return 0, 10
	}
	if (self == uuidJustCreated || self == 0) && peer != uuidJustCreated {
		return -2, 20
	}
	if self != uuidJustCreated && (peer == uuidJustCreated || peer == 0) {
		return 2, 30
	}

	if self == peer {
		if c.peer[uiBitmap] == 0 && c.self[uiBitmap] != 0 {
			if c.agreedVersion < 91 {
				return -1091, 34
			}
			if m(c.self[uiBitmap]) == m(c.peer[uiHistory0]) && m(c.self[uiHistory0]) == m(c.peer[uiHistory1]) {
				c.log = append(c.log, "was SyncSource, missed the resync finished event, corrected myself")
				c.self[uiHistory1] = c.self[uiHistory0]
				c.self[uiHistory0] = c.self[uiBitmap]
				c.self[uiBitmap] = 0
				return 1, 34
			}
			c.log = append(c.log, "was SyncSource (peer failed to write sync_uuid)")
			return 1, 36
		}
		if c.self[uiBitmap] == 0 && c.peer[uiBitmap] != 0 {
			if c.agreedVersion < 91 {
				return -1091, 35
			}
			if m(c.self[uiHistory0]) == m(c.peer[uiBitmap]) && m(c.self[uiHistory1]) == m(c.peer[uiHistory0]) {
				c.log = append(c.log, "was SyncTarget, peer missed the resync finished event, corrected peer")
				c.peer[uiHistory1] = c.peer[uiHistory0]
				c.peer[uiHistory0] = c.peer[uiBitmap]
				c.peer[uiBitmap] = 0
				return -1, 35
			}
			c.log = append(c.log, "was SyncTarget (failed to write sync_uuid)")
			return -1, 37
		}

		// Common power failure: who was a crashed Primary?
		rct := 0
		if c.selfCrashedPrimary {
			rct = 1
		}
		if c.peerFlags&2 != 0 {
			rct += 2
		}
		if rct == 0 {
			return 0, 40
		}
		if c.selfRole == RolePrimary || c.peerRole == RolePrimary {
			if c.agreedFeatures&4 == 0 { // DRBD_FF_WSAME doubles as "new enough"
				c.log = append(c.log, "Equivalent unrotated UUIDs, but current primary present.")
				return -(0x10000 | 101 | 4<<8), 41
			}
			if c.selfRole == RolePrimary && c.peerRole == RolePrimary {
				c.log = append(c.log, "Equivalent unrotated UUIDs, but both are primary. Can not resolve this.")
				return -100, 41
			}
			if c.selfRole == RolePrimary {
				return 1, 41
			}
			return -1, 41
		}
		switch rct {
		case 1:
			return 1, 40
		case 2:
			return -1, 40
		default: // both were primary
			if c.resolveConflicts {
				return -1, 40
			}
			return 1, 40
		}
	}

	if self == m(c.peer[uiBitmap]) {
		return -1, 50
	}

	if p := m(c.peer[uiHistory0]); self == p {
		var lost bool
		if c.agreedVersion < 96 {
			lost = m(c.self[uiHistory0]) == m(c.peer[uiHistory1])
		} else {
			lost = p+uuidNewBMOffset == m(c.peer[uiBitmap])
		}
		if lost {
			if c.agreedVersion < 91 {
				return -1091, 51
			}
			c.peer[uiBitmap] = c.peer[uiHistory0]
			c.peer[uiHistory0] = c.peer[uiHistory1]
			c.log = append(c.log, "Lost last syncUUID packet, corrected peer")
			return -1, 51
		}
	}

	for _, h := range c.peer[uiHistory0:] {
		if self == m(h) {
			return -2, 60
		}
	}

	peer = m(c.peer[uiCurrent])
	if m(c.self[uiBitmap]) == peer {
		return 1, 70
	}

	if s := m(c.self[uiHistory0]); s == peer {
		var lost bool
		if c.agreedVersion < 96 {
			lost = m(c.self[uiHistory1]) == m(c.peer[uiHistory0])
		} else {
			lost = s+uuidNewBMOffset == m(c.self[uiBitmap])
		}
		if lost {
			if c.agreedVersion < 91 {
				return -1091, 71
			}
			c.self[uiBitmap] = c.self[uiHistory0]
			c.self[uiHistory0] = c.self[uiHistory1]
			c.log = append(c.log, "Last syncUUID did not get through, corrected self")
			return 1, 71
		}
	}

	for _, h := range c.self[uiHistory0:] {
		if m(h) == peer {
			return 2, 80
		}
	}

	if s, p := m(c.self[uiBitmap]), m(c.peer[uiBitmap]); s == p && s != 0 {
		return 100, 90
	}

	for _, s := range c.self[uiHistory0:] {
		for _, p := range c.peer[uiHistory0:] {
			if m(s) == m(p) {
				return -100, 100
			}
		}
	}
	return -1000, 100
}

// AfterSB is an after-split-brain policy (net after-sb-0pri/1pri/2pri and
// rr-conflict), DRBD's enum drbd_after_sb_p.
type AfterSB uint8

const (
	ASBDisconnect AfterSB = 1 + iota
	ASBDiscardYoungerPrimary
	ASBDiscardOlderPrimary
	ASBDiscardZeroChanges
	ASBDiscardLeastChanges
	ASBDiscardLocal
	ASBDiscardRemote
	ASBConsensus
	ASBDiscardSecondary
	ASBCallHelper
	ASBViolently
)

var asbNames = [...]string{
	"disconnect", "discard-younger-primary", "discard-older-primary",
	"discard-zero-changes", "discard-least-changes", "discard-local",
	"discard-remote", "consensus", "discard-secondary", "call-pri-lost-after-sb",
	"violently",
}

// String is the drbd.conf keyword.
func (a AfterSB) String() string {
	if a < ASBDisconnect || a > ASBViolently {
		return fmt.Sprintf("AfterSB(%d)", uint8(a))
	}
	return asbNames[a-1]
}

// Wire is the value in P_PROTOCOL (enum drbd_after_sb_p: disconnect = 0).
func (a AfterSB) Wire() uint32 { return uint32(a - 1) }

// AfterSBFromWire converts a P_PROTOCOL value.
func AfterSBFromWire(v uint32) (AfterSB, bool) {
	if v > uint32(ASBViolently-1) {
		return 0, false
	}
	return AfterSB(v + 1), true
}

// splitBrainInput is what the automatic split-brain recovery policies look
// at (drbd_asb_recover_0p/1p/2p).
type splitBrainInput struct {
	selfBitmapPrimaryBit, peerBitmapPrimaryBit bool   // bit 0 of each bitmap UUID
	selfChanges, peerChanges                   uint64 // out-of-sync bits on each side
	resolveConflicts                           bool
	selfRole                                   Role
	after0, after1, after2                     AfterSB
}

// recover0p decides with no Primary: 1 we are the source, -1 the peer is,
// -100 no decision.
func (in splitBrainInput) recover0p() int {
	self, peer := in.selfBitmapPrimaryBit, in.peerBitmapPrimaryBit
	tie := func() int {
		if in.resolveConflicts {
			return -1
		}
		return 1
	}
	leastChanges := func() int {
		switch {
		case in.selfChanges < in.peerChanges:
			return -1
		case in.selfChanges > in.peerChanges:
			return 1
		}
		return tie()
	}
	zeroChanges := func() (int, bool) {
		if in.peerChanges == 0 && in.selfChanges == 0 {
			return tie(), true
		}
		if in.peerChanges == 0 {
			return 1, true
		}
		if in.selfChanges == 0 {
			return -1, true
		}
		return 0, false
	}
	switch in.after0 {
	case ASBDisconnect:
		return -100
	case ASBDiscardYoungerPrimary, ASBDiscardOlderPrimary:
		younger := in.after0 == ASBDiscardYoungerPrimary
		if !self && peer {
			if younger {
				return -1
			}
			return 1
		}
		if self && !peer {
			if younger {
				return 1
			}
			return -1
		}
		if younger {
			// Falls through to discard-older-primary, which cannot
			// decide either, then to the change counting rules.
		}
		if r, ok := zeroChanges(); ok {
			return r
		}
		return leastChanges()
	case ASBDiscardZeroChanges:
		if r, ok := zeroChanges(); ok {
			return r
		}
		return -100
	case ASBDiscardLeastChanges:
		return leastChanges()
	case ASBDiscardLocal:
		return -1
	case ASBDiscardRemote:
		return 1
	}
	return -100 // configuration error: not a 0pri policy
}

// recover1p decides with one Primary. demote is set when the policy asks
// the local Primary to give up its role (call-pri-lost-after-sb).
func (in splitBrainInput) recover1p() (hg int, demote bool) {
	switch in.after1 {
	case ASBConsensus:
		hg := in.recover0p()
		if hg == -1 && in.selfRole == RoleSecondary {
			return hg, false
		}
		if hg == 1 && in.selfRole == RolePrimary {
			return hg, false
		}
		return -100, false
	case ASBViolently:
		return in.recover0p(), false
	case ASBDiscardSecondary:
		if in.selfRole == RolePrimary {
			return 1, false
		}
		return -1, false
	case ASBCallHelper:
		hg := in.recover0p()
		if hg == -1 && in.selfRole == RolePrimary {
			return hg, true
		}
		return hg, false
	}
	return -100, false
}

// recover2p decides with two Primaries.
func (in splitBrainInput) recover2p() (hg int, demote bool) {
	switch in.after2 {
	case ASBViolently:
		return in.recover0p(), false
	case ASBCallHelper:
		hg := in.recover0p()
		if hg == -1 {
			return hg, true
		}
		return hg, false
	}
	return -100, false
}
