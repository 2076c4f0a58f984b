package sim

import (
	"strings"
	"testing"

	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/stretchr/testify/require"
)

// Scenario tests drive the two simulated nodes step by step, each checking
// one behaviour DRBD users rely on. They share the simulator's invariant
// checks (two primaries, epochs in order, ...).

// scenario builds a quiet cluster (no random workload, no random faults)
// and boots both nodes.
func scenario(t *testing.T, tweak func(int, *replication.Config)) *Sim {
	t.Helper()
	s := New(Options{Seed: 1, DiskSize: 16 << 20, Trace: true, Tweak: tweak})
	s.allowSplitBrain = true
	s.boot(s.nodes[0])
	s.boot(s.nodes[1])
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.Trace())
		}
	})
	return s
}

func (s *Sim) waitFor(t *testing.T, what string, limitUS int64, cond func() bool) {
	t.Helper()
	s.runUntil(s.now+limitUS, cond)
	require.NoError(t, s.err)
	require.Truef(t, cond(), "timed out waiting for %s: %s / %s", what, s.state(s.nodes[0]), s.state(s.nodes[1]))
}

// adminErr runs an admin command and returns its result once it is known.
func (s *Sim) adminErr(nd *node, f func(done func(error))) error {
	var res error
	got := false
	f(func(err error) { res, got = err, true })
	s.pump(nd)
	s.runUntil(s.now+2_000_000, func() bool { return got })
	return res
}

// connectedPair: both nodes UpToDate/UpToDate, n0 Primary (skip initial sync).
func (s *Sim) connectedPair(t *testing.T) {
	t.Helper()
	a, b := s.nodes[0], s.nodes[1]
	s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(a, b) })
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.NewCurrentUUID(true, d) }))
	s.waitFor(t, "UpToDate", 2_000_000, func() bool { return upToDate(a) && upToDate(b) })
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Primary(false, d) }))
}

// write issues one application write on nd and waits for its completion.
func (s *Sim) write(t *testing.T, nd *node, block int64, blocks int64, version uint64) {
	t.Helper()
	if nd.app == nil {
		nd.app = &app{inflight: map[uint64]*appReq{}, sinceFlush: map[int64]uint64{}, stopped: true}
	}
	a := nd.app
	a.nextID++
	id := a.nextID
	q := &appReq{op: replication.OpWrite, off: block * blk, length: blocks * blk, version: version, data: pattern(version, blocks*blk)}
	for b := block; b < block+blocks; b++ {
		s.model.written(b, version)
	}
	a.inflight[id] = q
	require.NoError(t, nd.core.Propose(replication.Request{ID: id, Op: replication.OpWrite, Offset: q.off, Length: q.length, Data: q.data}))
	s.pump(nd)
	s.waitFor(t, "write completion", 2_000_000, func() bool { _, pending := a.inflight[id]; return !pending })
}

func (s *Sim) traceHas(sub string) bool { return strings.Contains(s.Trace(), sub) }

func TestScenarioWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) {
		c.CramHMACAlg = "sha1"
		c.SharedSecret = "right"
		if i == 1 {
			c.SharedSecret = "wrong"
		}
	})
	s.runUntil(3_000_000, func() bool { return false })
	require.NoError(t, s.err)
	for _, nd := range s.nodes {
		require.Less(t, nd.core.State().Conn, replication.Connected, "%s connected with a wrong secret", nd.name)
	}
	require.True(t, s.traceHas("Authentication of peer failed"), "the refusal is logged")
}

func TestScenarioRightSecretConnects(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.CramHMACAlg = "sha256"; c.SharedSecret = "s3cret" })
	s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(s.nodes[0], s.nodes[1]) })
	require.True(t, s.traceHas("Peer authenticated using 32 bytes HMAC"))
}

func TestScenarioProtocolMismatchGoesStandAlone(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) {
		if i == 1 {
			c.Protocol = replication.ProtocolA
		}
	})
	s.waitFor(t, "StandAlone", 2_000_000, func() bool {
		return s.nodes[0].core.State().Conn == replication.StandAlone || s.nodes[1].core.State().Conn == replication.StandAlone
	})
	require.True(t, s.traceHas("incompatible protocol settings"))
}

func TestScenarioPrimaryRefusedWhilePeerIsPrimary(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	b := s.nodes[1]
	err := s.adminErr(b, func(d func(error)) { b.core.Primary(false, d) })
	require.ErrorIs(t, err, replication.ErrTwoPrimaries)
	require.Equal(t, replication.RoleSecondary, b.core.State().Role)
}

func TestScenarioTwoPrimariesWhenAllowed(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.AllowTwoPrimaries = true })
	s.connectedPair(t)
	b := s.nodes[1]
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Primary(false, d) }))
	require.Equal(t, replication.RolePrimary, b.core.State().Role)
	require.Equal(t, replication.RolePrimary, b.core.State().Peer)
}

// After a disconnect only the blocks written meanwhile travel.
func TestScenarioResyncCopiesOnlyChangedBlocks(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	require.NoError(t, b.core.Disconnect())
	s.pump(b)
	s.waitFor(t, "primary alone", 2_000_000, func() bool { return a.core.State().Conn == replication.WFConnection })
	require.True(t, s.traceHas("cs:TearDown ro:Primary/Unknown"), "a graceful disconnect (TearDown), not a network failure")
	s.write(t, a, 10, 3, 1001)
	s.write(t, a, 2000, 5, 1002)
	s.write(t, a, 11, 1, 1003) // overlaps: 8 distinct blocks
	require.Equal(t, int64(8*blk), a.core.OutOfSync())
	s.rsBytes = 0
	require.NoError(t, b.core.Connect(false))
	s.pump(b)
	s.waitFor(t, "resync", 5_000_000, func() bool { return upToDate(a) && upToDate(b) })
	require.Equal(t, int64(8*blk), s.rsBytes, "resync bytes equal the out-of-sync bytes")
	s.checkConverged()
	require.NoError(t, s.err)
}

// Both sides written while apart: split brain, nothing overwritten without
// a policy; discard-my-data on the victim resyncs only the divergent
// blocks.
func TestScenarioSplitBrainManualRecovery(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.partition(2_000_000)
	s.waitFor(t, "partition noticed", 2_000_000, func() bool {
		return a.core.State().Conn == replication.WFConnection && b.core.State().Conn == replication.WFConnection
	})
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Primary(false, d) }))
	s.write(t, a, 100, 2, 2001)
	s.write(t, b, 300, 4, 2002)
	s.waitFor(t, "split brain", 5_000_000, func() bool { return s.traceHas("Split-Brain detected but unresolved, dropping connection!") })
	s.waitFor(t, "standalone", 2_000_000, func() bool {
		return a.core.State().Conn == replication.StandAlone || b.core.State().Conn == replication.StandAlone
	})
	// Nothing was overwritten: each side still has its own write.
	v, _ := versionOf(b.disk.read(300*blk, blk))
	require.Equal(t, uint64(2002), v)
	v, _ = versionOf(a.disk.read(100*blk, blk))
	require.Equal(t, uint64(2001), v)
	// Manual recovery: b is the victim.
	for _, nd := range s.nodes {
		if nd.core.State().Conn != replication.StandAlone {
			require.NoError(t, nd.core.Disconnect())
			s.pump(nd)
		}
	}
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Secondary(d) }))
	s.rsBytes = 0
	require.NoError(t, b.core.Connect(true))
	s.pump(b)
	require.NoError(t, a.core.Connect(false))
	s.pump(a)
	s.waitFor(t, "resync after split brain", 5_000_000, func() bool { return upToDate(a) && upToDate(b) })
	require.Equal(t, int64(6*blk), s.rsBytes, "only the divergent blocks travel")
	v, _ = versionOf(b.disk.read(300*blk, blk))
	require.Equal(t, uint64(0), v, "the victim's change was discarded")
	v, _ = versionOf(b.disk.read(100*blk, blk))
	require.Equal(t, uint64(2001), v)
}

// discard-zero-changes: only one side wrote; it wins automatically.
func TestScenarioSplitBrainAutoDiscardZeroChanges(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.AfterSB0Pri = replication.ASBDiscardZeroChanges })
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.partition(3_000_000)
	s.waitFor(t, "partition noticed", 2_000_000, func() bool {
		return a.core.State().Conn == replication.WFConnection && b.core.State().Conn == replication.WFConnection
	})
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Primary(false, d) }))
	s.write(t, a, 7, 1, 3001)
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Secondary(d) }))
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Secondary(d) }))
	s.waitFor(t, "auto recovery", 6_000_000, func() bool { return upToDate(a) && upToDate(b) })
	require.True(t, s.traceHas("Split-Brain detected, 0 primaries, automatically solved. Sync from this node"))
	v, _ := versionOf(b.disk.read(7*blk, blk))
	require.Equal(t, uint64(3001), v)
}

func TestScenarioVerifyFindsAndResyncFixes(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.VerifyAlg = "sha1" })
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 40, 2, 4001)
	// Corrupt one block behind DRBD's back.
	b.disk.write(41*blk, pattern(666, blk), true)
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.StartVerify(d) }))
	s.waitFor(t, "verify", 10_000_000, func() bool { return upToDate(a) && upToDate(b) && s.traceHas("Online verify done") })
	require.True(t, s.traceHas("Online verify found 1 4k block out of sync!"))
	require.Equal(t, int64(blk), a.core.OutOfSync())
	// disconnect/connect resyncs it, as in DRBD
	require.NoError(t, b.core.Disconnect())
	s.pump(b)
	require.NoError(t, b.core.Connect(false))
	s.pump(b)
	s.waitFor(t, "resync", 5_000_000, func() bool { return upToDate(a) && upToDate(b) && a.core.OutOfSync() == 0 })
	v, _ := versionOf(b.disk.read(41*blk, blk))
	require.Equal(t, uint64(4001), v)
}

func TestScenarioInvalidateRemoteResyncsEverything(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 5, 1, 5001)
	s.rsBytes = 0
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.InvalidateRemote(d) }))
	s.waitFor(t, "full resync", 10_000_000, func() bool { return upToDate(a) && upToDate(b) && s.rsBytes > 0 })
	require.Equal(t, int64(s.dataSectors)*512, s.rsBytes)
}

func TestScenarioPauseResumeSync(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.ResyncRate = 4096 }) // 4 MiB/s: the sync takes a while
	a, b := s.nodes[0], s.nodes[1]
	s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(a, b) })
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Primary(true, d) }))
	s.waitFor(t, "sync", 2_000_000, func() bool { return a.core.State().Conn == replication.SyncSource })
	require.NoError(t, a.core.PauseSync())
	s.pump(a)
	s.waitFor(t, "paused", 1_000_000, func() bool { return b.core.State().Conn == replication.PausedSyncT })
	left := b.core.Progress().LeftKiB
	s.runUntil(s.now+1_000_000, func() bool { return false })
	require.Equal(t, left, b.core.Progress().LeftKiB, "no progress while paused")
	require.NoError(t, a.core.ResumeSync())
	s.pump(a)
	s.waitFor(t, "done", 20_000_000, func() bool { return upToDate(a) && upToDate(b) })
}

// Checksum-based resync: blocks rewritten with the same content are not
// copied again.
func TestScenarioChecksumResyncSkipsEqualBlocks(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.CsumsAlg = "md5" })
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 50, 4, 6001)
	require.NoError(t, b.core.Disconnect())
	s.pump(b)
	s.waitFor(t, "primary alone", 2_000_000, func() bool { return a.core.State().Conn == replication.WFConnection })
	s.write(t, a, 50, 4, 6001) // same data again: out of sync, but equal
	s.write(t, a, 60, 2, 6002) // really different
	s.rsBytes = 0
	require.NoError(t, b.core.Connect(false))
	s.pump(b)
	s.waitFor(t, "resync", 5_000_000, func() bool { return upToDate(a) && upToDate(b) })
	require.Equal(t, int64(2*blk), s.rsBytes, "only the changed blocks travel")
	require.True(t, s.traceHas("66 % had equal checksums"), "DRBD's summary line")
	s.checkConverged()
	require.NoError(t, s.err)
}

// A resync interrupted midway resumes where it stopped: the bits already
// synced stay clear (they were written out as the bitmap shrank).
func TestScenarioInterruptedResyncResumes(t *testing.T) {
	t.Parallel()
	s := scenario(t, func(i int, c *replication.Config) { c.ResyncRate = 8192 })
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	require.NoError(t, b.core.Disconnect())
	s.pump(b)
	s.waitFor(t, "primary alone", 2_000_000, func() bool { return a.core.State().Conn == replication.WFConnection })
	for i := int64(0); i < 64; i++ {
		s.write(t, a, i*16, 16, uint64(7000+i)) // 4 MiB out of sync
	}
	total := a.core.OutOfSync()
	require.Equal(t, int64(4<<20), total)
	s.rsBytes = 0
	require.NoError(t, b.core.Connect(false))
	s.pump(b)
	s.waitFor(t, "resync half way", 5_000_000, func() bool { return s.rsBytes >= total/2 })
	s.breakConnection("cable pulled")
	s.waitFor(t, "disconnected", 2_000_000, func() bool { return b.core.State().Conn == replication.WFConnection })
	left := a.core.OutOfSync()
	require.Less(t, left, total)
	require.Greater(t, left, int64(0))
	before := s.rsBytes
	s.waitFor(t, "resync finished", 10_000_000, func() bool { return upToDate(a) && upToDate(b) })
	// Blocks in flight at the cut may travel twice, nothing else.
	require.LessOrEqual(t, s.rsBytes-before, left+int64(protocol.MaxBIOSize)*4)
	s.checkConverged()
	require.NoError(t, s.err)
}

// A Primary that crashes comes back with its activity log's extents out
// of sync, the crashed-primary flag travels in the UUIDs, and the
// reconnect resyncs those extents.
func TestScenarioCrashedPrimaryResyncsItsActivityLog(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 1030, 2, 8001) // extent 1
	s.write(t, a, 3000, 1, 8002) // extent 2
	s.flush(t, a)
	s.write(t, a, 3001, 1, 8003) // not flushed: may be lost with the cache
	// Power cut of the Primary (not a failover: the survivor stays
	// Secondary and the old Primary returns).
	s.model.crashed = true
	a.alive = false
	a.gen++
	a.disk.crashSorted(s.rng)
	s.breakConnection("power cut")
	s.waitFor(t, "survivor notices", 2_000_000, func() bool { return b.core.State().Conn == replication.WFConnection })
	s.boot(a)
	require.Equal(t, int64(2*replication.ExtentSize), a.core.OutOfSync(), "both hot extents marked out of sync on attach")
	s.waitFor(t, "handshake", 2_000_000, func() bool { return s.traceHas("flags:2") })
	s.waitFor(t, "resync", 5_000_000, func() bool { return upToDate(a) && upToDate(b) })
	s.checkConverged()
	require.NoError(t, s.err)
	for blkNr, want := range map[int64]uint64{1030: 8001, 1031: 8001, 3000: 8002} {
		for _, nd := range s.nodes {
			v, _ := versionOf(nd.disk.read(blkNr*blk, blk))
			require.Equal(t, want, v, "flushed block %d survives the power cut on %s", blkNr, nd.name)
		}
	}
}

// A fixed resync rate (c-plan-ahead 0) is what the resync achieves.
func TestScenarioFixedResyncRate(t *testing.T) {
	t.Parallel()
	const rateKiB = 10 << 10 // 10 MiB/s
	s := scenario(t, func(i int, c *replication.Config) { c.ResyncRate = rateKiB; c.CPlanAhead = 0 })
	a, b := s.nodes[0], s.nodes[1]
	s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(a, b) })
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Primary(true, d) }))
	s.waitFor(t, "sync start", 2_000_000, func() bool { return b.core.State().Conn == replication.SyncTarget })
	start := s.now
	s.waitFor(t, "sync end", 60_000_000, func() bool { return upToDate(a) && upToDate(b) })
	secs := float64(s.now-start) / 1e6
	got := float64(s.dataSectors*512) / 1024 / secs
	require.InEpsilon(t, float64(rateKiB), got, 0.05, "resync ran at %.0f KiB/s, want %d", got, rateKiB)
}

// The dynamic controller (c-plan-ahead > 0) never exceeds c-max-rate.
func TestScenarioDynamicControllerHonoursMaxRate(t *testing.T) {
	t.Parallel()
	const maxKiB = 20 << 10
	s := scenario(t, func(i int, c *replication.Config) {
		c.ResyncRate = 200 << 10 // the seed's "rate 200M" only seeds the controller
		c.CPlanAhead = 20
		c.CMaxRate = maxKiB
	})
	a, b := s.nodes[0], s.nodes[1]
	s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(a, b) })
	require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Primary(true, d) }))
	s.waitFor(t, "sync start", 2_000_000, func() bool { return b.core.State().Conn == replication.SyncTarget })
	start := s.now
	s.waitFor(t, "sync end", 60_000_000, func() bool { return upToDate(a) && upToDate(b) })
	got := float64(s.dataSectors*512) / 1024 / (float64(s.now-start) / 1e6)
	require.LessOrEqual(t, got, float64(maxKiB)*1.05, "resync ran at %.0f KiB/s", got)
	require.Greater(t, got, float64(maxKiB)*0.5, "the controller should get near c-max-rate on an idle link")
}

// flush issues an application FLUSH on nd and waits for it.
func (s *Sim) flush(t *testing.T, nd *node) {
	t.Helper()
	a := nd.app
	a.nextID++
	id := a.nextID
	q := &appReq{op: replication.OpFlush, covers: a.sinceFlush}
	a.sinceFlush = map[int64]uint64{}
	a.inflight[id] = q
	require.NoError(t, nd.core.Propose(replication.Request{ID: id, Op: replication.OpFlush}))
	s.pump(nd)
	s.waitFor(t, "flush completion", 2_000_000, func() bool { _, pending := a.inflight[id]; return !pending })
}

// With fencing resource-only, a Secondary that lost its Primary may only
// promote after the fence-peer handler outdated the peer.
func TestScenarioFencePeerHandlerGatesPromotion(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		exit int
		ok   bool
	}{{4, true}, {5, true}, {7, true}, {1, false}, {3, true}} {
		s := scenario(t, func(i int, c *replication.Config) { c.Fencing = replication.FencingResourceOnly })
		s.handlerExit = map[string]int{"fence-peer": c.exit}
		s.connectedPair(t)
		a, b := s.nodes[0], s.nodes[1]
		require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Secondary(d) }))
		s.partition(5_000_000)
		s.waitFor(t, "apart", 2_000_000, func() bool { return b.core.State().Conn == replication.WFConnection })
		err := s.adminErr(b, func(d func(error)) { b.core.Primary(false, d) })
		require.True(t, s.traceHas("n1: handler fence-peer"), "exit %d", c.exit)
		if c.ok {
			require.NoError(t, err, "exit %d", c.exit)
			require.Equal(t, replication.RolePrimary, b.core.State().Role)
		} else {
			require.ErrorIs(t, err, replication.ErrPrimaryNop, "exit %d", c.exit)
			require.Equal(t, "Refusing to be Primary while peer is not outdated", err.Error())
		}
	}
}

func TestScenarioInvalidateResyncsEverythingFromPeer(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 5, 1, 9001)
	b.disk.write(77*blk, pattern(666, blk), true) // garbage on the secondary
	s.rsBytes = 0
	require.NoError(t, s.adminErr(b, func(d func(error)) { b.core.Invalidate(d) }))
	s.waitFor(t, "full resync", 10_000_000, func() bool { return upToDate(a) && upToDate(b) && s.rsBytes > 0 })
	require.Equal(t, int64(s.dataSectors)*512, s.rsBytes)
	v, _ := versionOf(b.disk.read(77*blk, blk))
	require.Equal(t, uint64(0), v, "the invalidated node took the peer's data")
	s.checkConverged()
	require.NoError(t, s.err)
}

// Two overlapping writes in flight: both replicas must end with the later
// one, whatever order the disks complete in.
func TestScenarioOverlappingWritesKeepReplicasEqual(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 20; seed++ {
		s := scenario(t, nil)
		s.rng.Seed(seed)
		s.connectedPair(t)
		a, b := s.nodes[0], s.nodes[1]
		a.app = &app{inflight: map[uint64]*appReq{}, sinceFlush: map[int64]uint64{}, stopped: true}
		for i, v := range []uint64{100, 101, 102} {
			id := uint64(100 + i)
			q := &appReq{op: replication.OpWrite, off: 10 * blk, length: 2 * blk, version: v, data: pattern(v, 2*blk)}
			a.app.inflight[id] = q
			require.NoError(t, a.core.Propose(replication.Request{ID: id, Op: replication.OpWrite, Offset: q.off, Length: q.length, Data: q.data}))
		}
		s.pump(a)
		s.waitFor(t, "writes", 2_000_000, func() bool { return len(a.app.inflight) == 0 })
		s.waitFor(t, "quiet", 2_000_000, func() bool { return s.converged() })
		for _, nd := range []*node{a, b} {
			v, _ := versionOf(nd.disk.read(10*blk, blk))
			require.Equal(t, uint64(102), v, "seed %d: %s", seed, nd.name)
		}
	}
}

// c-min-rate: while the application writes, the resync gives way down to
// c-min-rate; on an idle pair it runs at its full rate.
func TestScenarioResyncGivesWayToApplication(t *testing.T) {
	t.Parallel()
	const fullKiB, minKiB = 40 << 10, 4 << 10
	rate := func(withApp bool) float64 {
		s := scenario(t, func(i int, c *replication.Config) {
			c.ResyncRate, c.CPlanAhead, c.CMinRate, c.MaxBuffers = fullKiB, 0, minKiB, 8192
		})
		a, b := s.nodes[0], s.nodes[1]
		s.waitFor(t, "connection", 2_000_000, func() bool { return bothConnected(a, b) })
		require.NoError(t, s.adminErr(a, func(d func(error)) { a.core.Primary(true, d) }))
		s.waitFor(t, "sync start", 2_000_000, func() bool { return b.core.State().Conn == replication.SyncTarget })
		if withApp {
			s.opt.QueueDepth = 2
			s.startApp(a)
		}
		start := s.now
		s.waitFor(t, "sync end", 60_000_000, func() bool { return upToDate(a) && upToDate(b) })
		s.stopApp()
		return float64(s.dataSectors*512) / 1024 / (float64(s.now-start) / 1e6)
	}
	idle, loaded := rate(false), rate(true)
	require.Greater(t, idle, float64(fullKiB)*0.8, "idle resync at %.0f KiB/s", idle)
	require.Less(t, loaded, float64(minKiB)*2, "resync under application load at %.0f KiB/s", loaded)
	require.Greater(t, loaded, float64(minKiB)*0.5, "but it keeps going at about c-min-rate (%.0f KiB/s)", loaded)
}

// A double failure does not become a split brain: the node that took over
// after the Primary crashed fails too while the old Primary is back but
// not yet resynced (here: partitioned away). The cluster manager fenced
// the old Primary when the survivor ran without it (crm-fence-peer), so
// the heal promotes the survivor again, never the stale node, and the
// stale node resyncs from it. Seeds 404411 and 407111 ran into this.
func TestScenarioDoubleFailureDoesNotPromoteTheFencedNode(t *testing.T) {
	t.Parallel()
	s := scenario(t, nil)
	s.allowSplitBrain = false // one Primary at a time, connected or not
	s.opt.QueueDepth = 0      // the failover's app issues nothing; the test writes
	s.connectedPair(t)
	a, b := s.nodes[0], s.nodes[1]
	s.write(t, a, 10, 2, 9001)
	s.flush(t, a)

	s.crash(a, 1_000_000_000) // reboots when the test says so
	s.waitFor(t, "failover", 2_000_000, func() bool { return b.core.State().Role == replication.RolePrimary })
	require.True(t, s.fenced[a.id], "the survivor runs without the old Primary: fenced")
	s.write(t, b, 10, 1, 9002)
	s.write(t, b, 20, 1, 9003)
	s.flush(t, b)

	s.partitioned = true
	s.boot(a) // back, UpToDate in its own eyes, but misses 9002 and 9003
	s.runUntil(s.now+1_000_000, func() bool { return false })
	require.NoError(t, s.err)
	s.crash(b, 1_000_000_000) // the second failure: no failover onto a
	s.runUntil(s.now+2_000_000, func() bool { return false })
	require.NoError(t, s.err)
	require.Equal(t, replication.RoleSecondary, a.core.State().Role, "a fenced node is no failover target")

	s.healing = true
	s.heal()
	require.Equal(t, replication.RolePrimary, b.core.State().Role, "the heal promotes the node with the data")
	require.Equal(t, replication.RoleSecondary, a.core.State().Role)
	s.waitFor(t, "resync", 60_000_000, s.converged)
	s.checkConverged()
	require.NoError(t, s.err)
	require.False(t, s.fenced[a.id], "unfenced once connected and UpToDate")
	for blkNr, want := range map[int64]uint64{10: 9002, 11: 9001, 20: 9003} {
		for _, nd := range s.nodes {
			v, _ := versionOf(nd.disk.read(blkNr*blk, blk))
			require.Equal(t, want, v, "block %d on %s", blkNr, nd.name)
		}
	}
}
