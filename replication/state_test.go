package replication

import (
	"testing"

	"github.com/gdrbd/gdrbd/protocol"
	"github.com/stretchr/testify/require"
)

func TestEnumNamesAndWireValues(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Primary", RolePrimary.String())
	require.Equal(t, uint8(1), RolePrimary.Wire())
	require.Equal(t, uint8(0), RoleUnknown.Wire())
	require.Equal(t, "WFConnection", WFConnection.String())
	require.Equal(t, uint8(8), WFConnection.Wire())
	require.Equal(t, uint8(23), Behind.Wire())
	require.Equal(t, "SyncSource", SyncSource.String())
	require.Equal(t, uint8(16), SyncSource.Wire())
	require.Equal(t, "DUnknown", DUnknown.String())
	require.Equal(t, uint8(8), UpToDate.Wire())
	require.Equal(t, "Role(0)", Role(0).String())
	for c := StandAlone; c <= Behind; c++ {
		back, ok := ConnStateFromWire(c.Wire())
		require.True(t, ok)
		require.Equal(t, c, back)
	}
	_, ok := ConnStateFromWire(24)
	require.False(t, ok)
}

// The state word must agree bit for bit with the protocol package's
// independent encoding of DRBD's bitfield.
func TestStatePackMatchesProtocol(t *testing.T) {
	t.Parallel()
	for _, s := range []State{
		{Role: RolePrimary, Peer: RoleSecondary, Conn: Connected, Disk: UpToDate, PDsk: UpToDate},
		{Role: RoleSecondary, Peer: RoleUnknown, Conn: WFConnection, Disk: Inconsistent, PDsk: DUnknown, UserISP: true},
		{Role: RolePrimary, Peer: RoleSecondary, Conn: PausedSyncS, Disk: UpToDate, PDsk: Inconsistent, Susp: true, AftrISP: true, PeerISP: true, SuspNod: true, SuspFen: true},
	} {
		w := s.Pack()
		f := protocol.StateFields{Role: s.Role.Wire(), Peer: s.Peer.Wire(), Conn: s.Conn.Wire(), Disk: s.Disk.Wire(), PDsk: s.PDsk.Wire(),
			Susp: s.Susp, AftrISP: s.AftrISP, PeerISP: s.PeerISP, UserISP: s.UserISP, SuspNod: s.SuspNod, SuspFen: s.SuspFen}
		require.Equal(t, f.Pack(), w, "%v", s)
		back, err := UnpackState(w)
		require.NoError(t, err)
		require.Equal(t, s, back)
	}
	// A partial state (the val of a state change request) keeps its
	// unset fields at zero bits.
	require.Equal(t, uint32(1), State{Role: RolePrimary}.Pack())
	require.Equal(t, uint32(8)<<9, State{Disk: UpToDate}.Pack())
	_, err := UnpackState(3) // role 3 does not exist
	require.Error(t, err)
}

func TestMaskRoundTrip(t *testing.T) {
	t.Parallel()
	m := StateMask{Role: true, PDsk: true, UserISP: true}
	require.Equal(t, m, UnpackMask(m.Pack()))
	s := m.apply(State{Role: RoleSecondary, Disk: UpToDate}, State{Role: RolePrimary, PDsk: Outdated, Disk: Diskless})
	require.Equal(t, State{Role: RolePrimary, Disk: UpToDate, PDsk: Outdated}, s)
}

func TestConvertStateSwapsPointOfView(t *testing.T) {
	t.Parallel()
	m, v := convertState(StateMask{Role: true, Conn: true}, State{Role: RolePrimary, Conn: StartingSyncS})
	require.Equal(t, StateMask{Peer: true, Conn: true}, m)
	require.Equal(t, RolePrimary, v.Peer)
	require.Equal(t, StartingSyncT, v.Conn)
	_, v = convertState(StateMask{Conn: true}, State{Conn: Disconnecting})
	require.Equal(t, TearDown, v.Conn)
}

func TestStateErrTexts(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Device is held open by someone", ErrDeviceInUse.Error())
	require.Equal(t, int32(-12), ErrDeviceInUse.Code())
	require.Equal(t, "Multiple primaries not allowed by config", ErrTwoPrimaries.Error())
	require.Equal(t, "Need access to UpToDate data", ErrNoUpToDateDisk.Error())
}

func TestValidStateRules(t *testing.T) {
	t.Parallel()
	env := ruleEnv{haveNetConf: true, fencing: FencingDontCare}
	base := State{Role: RoleSecondary, Peer: RoleSecondary, Conn: Connected, Disk: UpToDate, PDsk: UpToDate}
	cases := []struct {
		name string
		env  ruleEnv
		mod  func(*State)
		want error
	}{
		{"secondary ok", env, func(*State) {}, nil},
		{"two primaries", env, func(s *State) { s.Role, s.Peer = RolePrimary, RolePrimary }, ErrTwoPrimaries},
		{"two primaries allowed", ruleEnv{haveNetConf: true, twoPrimaries: true}, func(s *State) { s.Role, s.Peer = RolePrimary, RolePrimary }, nil},
		{"open device", ruleEnv{openCount: 1}, func(*State) {}, ErrDeviceInUse},
		{"primary without data", env, func(s *State) { s.Role, s.Conn, s.Disk, s.PDsk = RolePrimary, WFConnection, Inconsistent, DUnknown }, ErrNoUpToDateDisk},
		{"primary, peer not outdated, fencing", ruleEnv{fencing: FencingResourceOnly}, func(s *State) { s.Role, s.Conn, s.PDsk = RolePrimary, WFConnection, DUnknown }, ErrPrimaryNop},
		{"diskless primary with UpToDate peer", env, func(s *State) { s.Role, s.Disk, s.Peer = RolePrimary, Diskless, RoleSecondary }, nil},
		{"outdated while connected", env, func(s *State) { s.Disk = Outdated }, ErrConnectedOutdates},
		{"verify without alg", env, func(s *State) { s.Conn = VerifyS }, ErrNoVerifyAlg},
		{"sync without remote disk", env, func(s *State) { s.Conn, s.PDsk = SyncSource, Diskless }, ErrNoRemoteDisk},
	}
	for _, c := range cases {
		s := base
		c.mod(&s)
		require.Equal(t, c.want, isValidState(c.env, s), c.name)
	}
}

func TestSanitizeState(t *testing.T) {
	t.Parallel()
	env := ruleEnv{fencing: FencingDontCare}
	// Losing the connection forgets the peer.
	os := State{Role: RolePrimary, Peer: RoleSecondary, Conn: Connected, Disk: UpToDate, PDsk: UpToDate}
	ns := os
	ns.Conn = NetworkFailure
	got := sanitizeState(env, os, ns)
	require.Equal(t, RoleUnknown, got.Peer)
	require.Equal(t, DUnknown, got.PDsk)
	// SyncTarget forces the disk Inconsistent and the peer UpToDate.
	ns = os
	ns.Conn = SyncTarget
	got = sanitizeState(env, os, ns)
	require.Equal(t, Inconsistent, got.Disk)
	require.Equal(t, UpToDate, got.PDsk)
	// A sync pause bit pauses the resync.
	ns = os
	ns.Conn, ns.PDsk, ns.UserISP = SyncSource, Inconsistent, true
	require.Equal(t, PausedSyncS, sanitizeState(env, os, ns).Conn)
	// Consistent becomes UpToDate once connected.
	ns = os
	ns.Disk = Consistent
	require.Equal(t, UpToDate, sanitizeState(env, os, ns).Disk)
}

func TestLostContactToPeerData(t *testing.T) {
	t.Parallel()
	require.True(t, lostContactToPeerData(UpToDate, DUnknown))
	require.True(t, lostContactToPeerData(Inconsistent, Diskless))
	require.False(t, lostContactToPeerData(DUnknown, DUnknown))
	require.True(t, lostContactToPeerData(DUnknown, Outdated))
	require.False(t, lostContactToPeerData(UpToDate, Inconsistent))
}
