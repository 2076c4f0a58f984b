package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func loadCorpus(t *testing.T, name, node string) *Config {
	t.Helper()
	c, err := Load("testdata/corpus/"+name, Options{Node: node})
	require.NoError(t, err)
	return c
}

func mustResource(t *testing.T, c *Config, name string) *Resource {
	t.Helper()
	r, err := c.Resource(name)
	require.NoError(t, err)
	return r
}

// TestSeed: the seed's configuration (with plain spaces) means what the
// how-to relies on, on both nodes.
func TestSeed(t *testing.T) {
	t.Parallel()
	for _, node := range []string{"Rserver-1", "Lserver-1"} {
		c := loadCorpus(t, "seed-heartbeat-drbd-nfs-ascii.conf", node)
		r := mustResource(t, c, "r0")
		require.Equal(t, ProtocolC, r.Protocol)
		require.Equal(t, 6*time.Second, r.Net.Timeout)
		require.Equal(t, 10*time.Second, r.Net.ConnectInt)
		require.Equal(t, 10*time.Second, r.Net.PingInt)
		require.Equal(t, 2048, r.Net.MaxBuffers)
		require.Equal(t, 2048, r.Net.MaxEpochSize)
		require.Equal(t, IOErrorDetach, r.Disk.OnIOError)
		require.Equal(t, int64(200<<20), r.Disk.ResyncRate) // syncer { rate 200M; }
		require.Equal(t, int64(204800), r.Disk.ResyncRateKiB())
		require.True(t, r.Disk.IsSet("resync-rate"))
		require.Zero(t, r.Startup.WFCTimeout)
		require.Equal(t, 120*time.Second, r.Startup.DegrWFCTimeout)
		require.Equal(t, []string{node}, r.Local.Names)
		require.NotNil(t, r.Peer)
		require.NotEqual(t, r.Local, r.Peer)
		require.Len(t, r.Volumes, 1)
		v := r.Volumes[0]
		require.Equal(t, 0, v.Number)
		require.Equal(t, "/dev/drbd0", v.Device)
		require.Equal(t, 0, v.Minor)
		require.Equal(t, "/dev/sdb1", v.Disk)
		require.Equal(t, "internal", v.MetaDisk)
		require.Equal(t, -1, v.MetaIndex)
		require.Equal(t, "internal", v.MetaIndexArg())
		require.Equal(t, "/dev/sdb1", v.MetaDevice())
		require.Equal(t, int64(200<<20), v.DiskOptions.ResyncRate)
		require.Equal(t, 7788, r.Local.Address.Port)
		require.Equal(t, "ipv4", r.Local.Address.Family)
	}
	c := loadCorpus(t, "seed-heartbeat-drbd-nfs-ascii.conf", "Rserver-1")
	r := mustResource(t, c, "r0")
	require.Equal(t, "ipv4 172.16.1.1:7788", r.Local.Address.String())
	require.Equal(t, "172.16.1.2:7788", r.Peer.Address.HostPort())
}

func TestInheritance(t *testing.T) {
	t.Parallel()
	c := loadCorpus(t, "common-inheritance.conf", "alpha")
	require.Equal(t, UsageCountYes, c.Global.UsageCount)
	r0 := mustResource(t, c, "r0")
	require.Equal(t, ProtocolA, r0.Protocol)            // common protocol A
	require.Equal(t, 7*time.Second, r0.Net.Timeout)     // own 70 beats common 50
	require.Equal(t, 20*time.Second, r0.Net.PingInt)    // common
	require.Equal(t, 4096, r0.Net.MaxBuffers)           // common
	require.Equal(t, int64(200<<20), r0.Disk.CMaxRate)  // own beats common 300M
	require.Equal(t, int64(30<<20), r0.Disk.ResyncRate) // common
	require.Equal(t, OnNoDataSuspendIO, r0.Options.OnNoDataAccessible)
	require.Equal(t, "/bin/true", r0.Handlers["fence-peer"]) // own beats common
	require.Equal(t, "/bin/echo split", r0.Handlers["split-brain"])
	require.Equal(t, []string{"alpha"}, r0.Startup.BecomePrimaryOn)
	require.Equal(t, 2*time.Minute, r0.Startup.WFCTimeout)

	v0, ok := r0.Volume(0)
	require.True(t, ok)
	require.Equal(t, "/dev/drbd10", v0.Device)
	require.Equal(t, "/dev/vg/a0", v0.Disk)
	require.Equal(t, int64(40<<20), v0.DiskOptions.ResyncRate) // the host volume's own
	require.Equal(t, int64(1<<20), v0.DiskOptions.CMinRate)    // resource-level volume
	require.Equal(t, 3000, v0.DiskOptions.ALExtents)           // resource-level volume
	require.Equal(t, int64(200<<20), v0.DiskOptions.CMaxRate)  // resource
	require.Equal(t, IOErrorPassOn, v0.DiskOptions.OnIOError)  // common
	v1, ok := r0.Volume(1)
	require.True(t, ok)
	require.Equal(t, "/dev/drbd11", v1.Device)
	require.Equal(t, "/dev/vg/meta", v1.MetaDisk)
	require.Equal(t, 3, v1.MetaIndex)
	require.Equal(t, "3", v1.MetaIndexArg())
	require.Equal(t, int64(30<<20), v1.DiskOptions.ResyncRate) // common

	// NB: drbdadm-84 merges a resource-level volume's disk options last, so
	// common's resync-rate (30M) beats the resource-level volume 0's 20M
	// on beta, whose volume 0 has no own resync-rate.
	cb := loadCorpus(t, "common-inheritance.conf", "beta")
	rb := mustResource(t, cb, "r0")
	vb, _ := rb.Volume(0)
	require.Equal(t, int64(30<<20), vb.DiskOptions.ResyncRate)

	r1 := mustResource(t, c, "r1")
	require.Equal(t, ProtocolC, r1.Protocol) // own protocol C beats common A
	require.Equal(t, 5*time.Second, r1.Net.Timeout)
	require.Equal(t, 15*time.Second, r1.Startup.DegrWFCTimeout)
}

func TestSyncerRemap(t *testing.T) {
	t.Parallel()
	c := loadCorpus(t, "syncer-remap.conf", "alpha")
	r := mustResource(t, c, "r0")
	d := r.Disk
	require.Equal(t, int64(200<<20), d.ResyncRate)
	require.Equal(t, 3389, d.ALExtents)
	require.Equal(t, 1500*time.Millisecond, d.CPlanAhead)
	require.Equal(t, 2*time.Second, d.CDelayTarget)
	require.Equal(t, int64(2048), d.CFillTarget)
	require.Equal(t, int64(500<<20), d.CMaxRate)
	require.Equal(t, int64(10<<20), d.CMinRate)
	require.Equal(t, "md5", r.Net.VerifyAlg)
	require.Equal(t, "sha1", r.Net.CsumsAlg)
	require.True(t, r.Net.UseRLE)
	require.True(t, r.Net.IsSet("use-rle"))
	require.Equal(t, "3", r.Options.CPUMask)
	require.Equal(t, OnNoDataSuspendIO, r.Options.OnNoDataAccessible)

	r1 := mustResource(t, c, "r1")
	require.Equal(t, int64(5<<20), r1.Disk.ResyncRate) // the syncer's rate comes after disk {}
	require.Equal(t, "r0", r1.Disk.ResyncAfter)
	require.Equal(t, 0, r1.Disk.ResyncAfterMinor)
	require.False(t, r1.Net.UseRLE)
	s, ok := r1.Disk.Setting("resync-rate")
	require.True(t, ok)
	require.Equal(t, "5M", s.Value)
}

func TestVolumesFloatingIPv6Stacked(t *testing.T) {
	t.Parallel()
	c := loadCorpus(t, "volumes.conf", "alpha")
	r := mustResource(t, c, "data")
	require.Len(t, r.Volumes, 3)
	require.Equal(t, []int{0, 1, 7}, []int{r.Volumes[0].Number, r.Volumes[1].Number, r.Volumes[2].Number})
	require.Equal(t, "/dev/vg/shared1", r.Volumes[1].Disk)
	require.True(t, r.Volumes[1].Flexible)
	require.Equal(t, "flexible", r.Volumes[1].MetaIndexArg())
	require.Equal(t, "/dev/vg/md1", r.Volumes[1].MetaDevice())
	require.Equal(t, "/dev/vg/mdx", r.Volumes[2].MetaDisk)
	require.Equal(t, 2, r.Volumes[2].MetaIndex)
	require.Equal(t, 27, r.Volumes[2].Minor)
	require.Equal(t, "/dev/drbd27", r.Volumes[2].Device)

	c = loadCorpus(t, "floating.conf", "10.10.5.1")
	r0 := mustResource(t, c, "r0")
	require.True(t, r0.Local.Floating)
	require.Equal(t, "10.10.5.1", r0.Local.Address.Host)
	require.Equal(t, "10.10.5.2", r0.Peer.Address.Host)
	require.Equal(t, "/dev/vg/r0", r0.Volumes[0].Disk)
	r1 := mustResource(t, c, "r1")
	require.Equal(t, "/dev/vg/other", r1.Volumes[0].Disk)
	// Selected by a local address too, whatever the node is called.
	c2, err := Load("testdata/corpus/floating.conf", Options{Node: "somehost", HaveIP: func(f, a string) bool { return a == "10.10.5.2" }})
	require.NoError(t, err)
	require.Equal(t, "10.10.5.2", mustResource(t, c2, "r0").Local.Address.Host)

	c = loadCorpus(t, "ipv6.conf", "alpha")
	r = mustResource(t, c, "r0")
	require.Equal(t, Address{Family: "ipv6", Host: "fd00:10::1", Port: 7788}, r.Local.Address)
	require.Equal(t, "ipv6 [fd00:10::1]:7788", r.Local.Address.String())
	require.Equal(t, "[fd00:10::1]:7788", r.Local.Address.HostPort())
	require.Equal(t, "fe80::1%eth0", mustResource(t, c, "r2").Local.Address.Host)

	c = loadCorpus(t, "stacked.conf", "alpha")
	up := mustResource(t, c, "r0-U")
	require.True(t, up.Stacked)
	require.Equal(t, "r0", up.Local.StackedOn)
	require.Equal(t, []string{"alpha", "beta"}, up.Local.Names)
	require.Equal(t, "/dev/drbd0", up.Volumes[0].Disk) // r0's device
	require.Equal(t, ProtocolA, up.Protocol)
	require.False(t, mustResource(t, c, "r0").Stacked)
	_, err = loadCorpus(t, "stacked.conf", "gamma").Resource("r0")
	require.ErrorIs(t, err, ErrNotOnThisHost)

	c = loadCorpus(t, "multiple-hosts.conf", "beta2")
	require.Equal(t, []string{"beta", "beta2"}, mustResource(t, c, "r0").Local.Names)
	r1 = mustResource(t, c, "r1")
	require.Nil(t, r1.Peer) // three host sections: 8.4 needs --peer
	require.Len(t, r1.Hosts, 3)
}

func TestOptionsMisc(t *testing.T) {
	t.Parallel()
	c := loadCorpus(t, "net-options.conf", "alpha")
	n := mustResource(t, c, "r0").Net
	require.Equal(t, ProtocolB, n.Protocol)
	require.Equal(t, 8192, n.MaxBuffers)
	require.Equal(t, int64(512<<10), n.SndbufSize)
	require.Equal(t, "s3cret with spaces", n.SharedSecret)
	require.Equal(t, ASBDiscardZeroChanges, n.AfterSB0Pri)
	require.Equal(t, ASBDiscardSecondary, n.AfterSB1Pri)
	require.Equal(t, ASBCallPriLostAfterSB, n.AfterSB2Pri)
	require.Equal(t, uint32(9), n.AfterSB2Pri.Wire()) // ASB_CALL_HELPER
	require.Equal(t, RRConflictCallPriLost, n.RRConflict)
	require.Equal(t, uint32(9), n.RRConflict.Wire())
	require.True(t, n.AlwaysASBP)
	require.False(t, n.TCPCork)
	require.Equal(t, CongestionPullAhead, n.OnCongestion)
	require.Equal(t, int64(400<<11), n.CongestionFill)
	require.True(t, n.CsumsAfterCrashOnly)
	require.False(t, n.UseRLE)

	c = loadCorpus(t, "disk-options.conf", "alpha")
	d := mustResource(t, c, "r0").Disk
	require.Equal(t, int64(10<<21), d.Size)
	require.Equal(t, IOErrorCallLocalIOError, d.OnIOError)
	require.Equal(t, FencingResourceAndStonith, d.Fencing)
	require.True(t, d.DiskBarrier)
	require.False(t, d.DiskFlushes)
	require.False(t, d.DiskDrain)
	require.True(t, d.MDFlushes)
	require.Equal(t, 67, d.ALExtents) // 7 clamped up
	require.Equal(t, Read64KStriping, d.ReadBalancing)
	require.Equal(t, "64K-striping", d.ReadBalancing.String())
	require.Zero(t, d.CPlanAhead)

	c = loadCorpus(t, "protocol-and-duplicates.conf", "alpha")
	r := mustResource(t, c, "r0")
	require.Equal(t, ProtocolB, r.Protocol) // `protocol a;` then net { protocol b; }
	require.Equal(t, 4500*time.Millisecond, r.Net.Timeout)
	require.Equal(t, int64(2<<20), r.Disk.ResyncRate)
	require.Equal(t, "/bin/first", r.Handlers["split-brain"])

	c = loadCorpus(t, "discard-node.conf", "alpha")
	require.Equal(t, ASBDiscardLocal, mustResource(t, c, "r0").Net.AfterSB0Pri)
	require.Equal(t, ASBDiscardRemote, mustResource(t, c, "r1").Net.AfterSB0Pri)
	require.Equal(t, ASBViolentlyAS0P, mustResource(t, c, "r0").Net.AfterSB2Pri)

	c = loadCorpus(t, "resync-after.conf", "alpha")
	r2 := mustResource(t, c, "r2")
	require.Equal(t, "r1/1", r2.Disk.ResyncAfter)
	require.Equal(t, 2, r2.Volumes[0].DiskOptions.ResyncAfterMinor)
	r1 := mustResource(t, c, "r1")
	require.Equal(t, 0, r1.Volumes[1].DiskOptions.ResyncAfterMinor)

	c = loadCorpus(t, "deprecated.conf", "alpha")
	require.Equal(t, "/usr/lib/heartbeat/drbd-peer-outdater -t 5", mustResource(t, c, "r0").Handlers["fence-peer"])
	require.Equal(t, "ssocks", mustResource(t, c, "r1").Local.Address.Family)
	require.Len(t, c.Warnings, 1)
	require.Contains(t, c.Warnings[0], "'ignore-on' keyword is deprecated")

	c = loadCorpus(t, "include-glob.conf", "alpha")
	require.Len(t, c.Resources, 3)
	require.Equal(t, []string{"r0", "r2", "r1"}, []string{c.Resources[0].Name, c.Resources[1].Name, c.Resources[2].Name})
	require.Equal(t, int64(5<<20), mustResource(t, c, "r1").Disk.ResyncRate)
	require.Equal(t, int64(100<<20), mustResource(t, c, "r2").Disk.ResyncRate)
	require.Equal(t, 8000, mustResource(t, c, "r0").Net.MaxBuffers)
	require.Equal(t, UsageCountNo, c.Global.UsageCount)
}

func TestExtensions(t *testing.T) {
	t.Parallel()
	c := loadCorpus(t, "gdrbd-directives.conf", "alpha")
	require.Equal(t, CompressionLZ4, c.Global.Ext.Compression)
	r0 := mustResource(t, c, "r0")
	e := r0.Ext
	require.Equal(t, "/run/gdrbd/r0.sock", e.NBDSocket)
	require.Equal(t, "/dev/nbd0", e.NBDDevice)
	require.True(t, e.TLS)
	require.Equal(t, "/etc/gdrbd/ca.pem", e.TLSCA)
	require.Equal(t, "/etc/gdrbd/alpha.pem", e.TLSCert)
	require.Equal(t, "/etc/gdrbd/alpha.key", e.TLSKey)
	require.Equal(t, CompressionLZ4, e.Compression)
	require.True(t, e.IsSet("nbd-socket"))
	require.False(t, e.IsSet("nonsense"))
	require.Len(t, e.Settings(), 7)
	r1 := mustResource(t, c, "r1")
	require.False(t, r1.Ext.TLS) // resource beats common
	require.Equal(t, CompressionNone, r1.Ext.Compression)
	require.Equal(t, "/etc/gdrbd/ca.pem", r1.Ext.TLSCA)
	// The host section that applies is this node's.
	cb := loadCorpus(t, "gdrbd-directives.conf", "beta")
	require.Equal(t, "/etc/gdrbd/beta.pem", mustResource(t, cb, "r0").Ext.TLSCert)
	require.Empty(t, mustResource(t, cb, "r0").Ext.NBDDevice)
}

func TestEnumStrings(t *testing.T) {
	t.Parallel()
	require.Equal(t, "C", ProtocolC.String())
	require.Equal(t, uint32(3), ProtocolC.Wire())
	require.Equal(t, "pass_on", IOErrorPassOn.String())
	require.Equal(t, "resource-only", FencingResourceOnly.String())
	require.Equal(t, "discard-secondary", ASBDiscardSecondary.String())
	require.Equal(t, uint32(0), ASBDisconnect.Wire())
	require.Equal(t, "violently", RRConflictViolently.String())
	require.Equal(t, "pull-ahead", CongestionPullAhead.String())
	require.Equal(t, "suspend-io", OnNoDataSuspendIO.String())
	require.Equal(t, "ask", UsageCountAsk.String())
	require.Equal(t, "lz4", CompressionLZ4.String())
	require.Equal(t, "Protocol(0)", Protocol(0).String())
	require.Equal(t, "RRConflictPolicy(2)", RRConflictPolicy(2).String())
}
