package replication

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// Table tests of DRBD 8.4's drbd_uuid_compare rules: each case names the
// rule DRBD reports.
func TestUUIDCompareRules(t *testing.T) {
	t.Parallel()
	const (
		A = uint64(0xAAAA0000)
		B = uint64(0xBBBB0000)
		C = uint64(0xCCCC0000)
		D = uint64(0xDDDD0000)
	)
	cases := []struct {
		name     string
		self     genUUIDs
		peer     genUUIDs
		peerFlag uint64
		crashed  bool
		rc       bool
		wantHG   int
		wantRule int
	}{
		{"both just created", genUUIDs{4}, genUUIDs{4}, 0, false, false, 0, 10},
		{"we are fresh", genUUIDs{4}, genUUIDs{A}, 0, false, false, -2, 20},
		{"peer is fresh", genUUIDs{A}, genUUIDs{4}, 0, false, false, 2, 30},
		{"same data, clean", genUUIDs{A}, genUUIDs{A | 1}, 0, false, false, 0, 40},
		{"same data, we crashed as primary", genUUIDs{A}, genUUIDs{A}, 0, true, false, 1, 40},
		{"same data, peer crashed as primary", genUUIDs{A}, genUUIDs{A}, 2, false, false, -1, 40},
		{"both crashed, resolve conflicts", genUUIDs{A}, genUUIDs{A}, 2, true, true, -1, 40},
		{"both crashed, no resolve conflicts", genUUIDs{A}, genUUIDs{A}, 2, true, false, 1, 40},
		{"peer wrote since our current", genUUIDs{A}, genUUIDs{B, A}, 0, false, false, -1, 50},
		{"we wrote since peer's current", genUUIDs{B, A}, genUUIDs{A}, 0, false, false, 1, 70},
		{"peer's history has our current", genUUIDs{A}, genUUIDs{B, C, A}, 0, false, false, -2, 60},
		{"our history has peer's current", genUUIDs{B, C, A}, genUUIDs{A}, 0, false, false, 2, 80},
		{"split brain: both wrote", genUUIDs{B, A}, genUUIDs{C, A}, 0, false, false, 100, 90},
		{"split brain: common history only", genUUIDs{B, 0, D}, genUUIDs{C, 0, D}, 0, false, false, -100, 100},
		{"unrelated data", genUUIDs{B, 0, A, 0x1110000}, genUUIDs{C, 0, D, 0x2220000}, 0, false, false, -1000, 100},
		// DRBD compares empty history slots too: two unrelated fresh
		// generations look like a split brain, not unrelated data.
		{"no history at all", genUUIDs{B}, genUUIDs{C}, 0, false, false, -100, 100},
		{"sync source missed the finish", genUUIDs{A, B, C}, genUUIDs{A, 0, B, C}, 0, false, false, 1, 34},
		{"sync target: peer missed the finish", genUUIDs{A, 0, B, C}, genUUIDs{A, B, C}, 0, false, false, -1, 35},
	}
	for _, c := range cases {
		cmp := uuidCompare{self: c.self, peer: c.peer, peerFlags: c.peerFlag, selfCrashedPrimary: c.crashed,
			selfRole: RoleSecondary, peerRole: RoleSecondary, resolveConflicts: c.rc, agreedVersion: 101, agreedFeatures: 0xf}
		hg, rule := cmp.compare()
		require.Equal(t, c.wantHG, hg, c.name)
		require.Equal(t, c.wantRule, rule, c.name)
	}
}

// Rule 34 corrects our own UUIDs the way DRBD does.
func TestUUIDCompareCorrectsSelf(t *testing.T) {
	t.Parallel()
	c := uuidCompare{self: genUUIDs{0xA0, 0xB0, 0xC0}, peer: genUUIDs{0xA0, 0, 0xB0, 0xC0}, agreedVersion: 101}
	hg, rule := c.compare()
	require.Equal(t, 1, hg)
	require.Equal(t, 34, rule)
	require.Equal(t, genUUIDs{0xA0, 0, 0xB0, 0xC0}, c.self)
}

// A lost P_SYNC_UUID (rule 51, protocol >= 96) undoes the peer's bump.
func TestUUIDCompareLostSyncUUID(t *testing.T) {
	t.Parallel()
	c := uuidCompare{self: genUUIDs{0xA0}, peer: genUUIDs{0xB0, 0xA0 + uuidNewBMOffset, 0xA0, 0xC0}, agreedVersion: 101}
	hg, rule := c.compare()
	require.Equal(t, -1, hg)
	require.Equal(t, 51, rule)
	require.Equal(t, genUUIDs{0xB0, 0xA0, 0xC0, 0xC0}, c.peer)
}

func TestSplitBrainPolicies(t *testing.T) {
	t.Parallel()
	base := splitBrainInput{selfChanges: 10, peerChanges: 3}
	in := base
	in.after0 = ASBDiscardLeastChanges
	require.Equal(t, 1, in.recover0p(), "we changed more: we are the source")
	in.after0 = ASBDiscardZeroChanges
	require.Equal(t, -100, in.recover0p(), "both changed: no decision")
	in.peerChanges = 0
	require.Equal(t, 1, in.recover0p())
	in = base
	in.after0 = ASBDiscardLocal
	require.Equal(t, -1, in.recover0p())
	in.after0 = ASBDiscardRemote
	require.Equal(t, 1, in.recover0p())
	in.after0 = ASBDiscardYoungerPrimary
	in.selfBitmapPrimaryBit, in.peerBitmapPrimaryBit = false, true
	require.Equal(t, -1, in.recover0p())
	in.after0 = ASBDisconnect
	require.Equal(t, -100, in.recover0p())

	in = base
	in.after0, in.after1 = ASBDiscardLeastChanges, ASBDiscardSecondary
	in.selfRole = RolePrimary
	hg, demote := in.recover1p()
	require.Equal(t, 1, hg)
	require.False(t, demote)
	in.selfRole = RoleSecondary
	hg, _ = in.recover1p()
	require.Equal(t, -1, hg)
	in.after1 = ASBConsensus
	hg, _ = in.recover1p()
	require.Equal(t, -100, hg, "consensus: 0pri says we are the source, but we are secondary")
	in.after1 = ASBCallHelper
	in.selfRole = RolePrimary
	in.selfChanges = 1
	hg, demote = in.recover1p()
	require.Equal(t, -1, hg)
	require.True(t, demote, "the primary loses: it must give up its role")

	in.after2 = ASBDisconnect
	hg, _ = in.recover2p()
	require.Equal(t, -100, hg)
	in.after2 = ASBViolently
	hg, _ = in.recover2p()
	require.Equal(t, -1, hg)
}

func TestConvertAfterSB(t *testing.T) {
	t.Parallel()
	require.Equal(t, ASBDiscardLocal.Wire(), convertAfterSB(ASBDiscardRemote.Wire()))
	require.Equal(t, ASBDiscardRemote.Wire(), convertAfterSB(ASBDiscardLocal.Wire()))
	require.Equal(t, ASBDisconnect.Wire(), convertAfterSB(ASBDisconnect.Wire()))
	for a := ASBDisconnect; a <= ASBViolently; a++ {
		back, ok := AfterSBFromWire(a.Wire())
		require.True(t, ok)
		require.Equal(t, a, back)
	}
}

// A sync handshake that fails on a connection already up (here: the peer
// starts a resync as SyncSource from data unrelated to ours) ends the
// connection, as DRBD's receive_state does, instead of staying Connected
// and UpToDate/UpToDate over different data.
func TestFailedHandshakeOnConnectedLinkDisconnects(t *testing.T) {
	n := fuzzPeer(t)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.UUIDs{Current: 0x9999_0001, History: [2]uint64{0x7777_0000, 0}}}))
	step(n)
	err := n.Receive(DataStream, protocol.Message{Packet: &protocol.State{State: State{Role: RolePrimary, Peer: RoleSecondary, Conn: StartingSyncS, Disk: UpToDate, PDsk: Inconsistent}.Pack()}})
	require.Error(t, err)
	step(n)
	require.NotEqual(t, Connected, n.State().Conn, "%s", n.State())
	require.Less(t, n.State().Conn, Connected)
}

// A peer attaching its disk late (kernel DRBD: Negotiating) with data we
// cannot sync with stays connected, its disk counted as gone ("Disk
// attach process on the peer node was aborted."), as in DRBD.
func TestFailedLateAttachOfPeerKeepsConnection(t *testing.T) {
	n := fuzzPeer(t)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.UUIDs{Current: 0x9999_0001, History: [2]uint64{0x7777_0000, 0}}}))
	step(n)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.State{State: State{Role: RolePrimary, Peer: RoleSecondary, Conn: Connected, Disk: Negotiating, PDsk: UpToDate}.Pack()}}))
	step(n)
	require.Equal(t, Connected, n.State().Conn)
	require.Equal(t, Diskless, n.State().PDsk)
}
