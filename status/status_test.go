package status_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/status"
)

const gib = int64(1) << 30

func st(role, peer replication.Role, c replication.ConnState, d, pd replication.DiskState) replication.State {
	return replication.State{Role: role, Peer: peer, Conn: c, Disk: d, PDsk: pd}
}

var (
	pri   = replication.RolePrimary
	sec   = replication.RoleSecondary
	unk   = replication.RoleUnknown
	upd   = replication.UpToDate
	inc   = replication.Inconsistent
	dunk  = replication.DUnknown
	dless = replication.Diskless
)

func vol(res string, nr, minor int, s replication.State) status.Volume {
	return status.Volume{Resource: res, Volume: nr, Minor: minor, Device: "/dev/drbd0", State: s,
		Protocol: replication.ProtocolC, SizeBytes: gib, Attached: s.Disk != dless}
}

func TestOneWordAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                string
		s                   replication.State
		role, cstate, dstat string
	}{
		{"connected", st(pri, sec, replication.Connected, upd, upd), "Primary/Secondary", "Connected", "UpToDate/UpToDate"},
		{"waiting", st(sec, unk, replication.WFConnection, inc, dunk), "Secondary/Unknown", "WFConnection", "Inconsistent/DUnknown"},
		{"syncing", st(sec, pri, replication.SyncTarget, inc, upd), "Secondary/Primary", "SyncTarget", "Inconsistent/UpToDate"},
		{"standalone with disk", st(sec, unk, replication.StandAlone, upd, dunk), "Secondary/Unknown", "StandAlone", "UpToDate/DUnknown"},
		{"unconfigured", st(sec, unk, replication.StandAlone, dless, dunk), "Unconfigured", "Unconfigured", "Unconfigured"},
		{"diskless but connected", st(pri, sec, replication.Connected, dless, upd), "Primary/Secondary", "Connected", "Diskless/UpToDate"},
	} {
		v := vol("r0", 0, 0, tc.s)
		require.Equal(t, tc.role, v.RoleText(), tc.name)
		require.Equal(t, tc.cstate, v.CStateText(), tc.name)
		require.Equal(t, tc.dstat, v.DStateText(), tc.name)
	}
}

func TestDRBD9(t *testing.T) {
	t.Parallel()
	syncing := vol("r0", 0, 0, st(pri, sec, replication.SyncSource, upd, inc))
	syncing.Stats.OOS = 655360 // of 1 GiB: 37.5 % done
	paused := vol("r0", 0, 0, replication.State{Role: sec, Peer: pri, Conn: replication.PausedSyncT, Disk: inc, PDsk: upd, UserISP: true})
	paused.Stats.OOS = 1 << 19
	suspended := vol("r0", 0, 0, replication.State{Role: pri, Peer: unk, Conn: replication.WFConnection, Disk: upd, PDsk: dunk, SuspNod: true, Susp: true})
	for _, tc := range []struct {
		name string
		vols []status.Volume
		want string
	}{
		{"connected primary", []status.Volume{vol("r0", 0, 0, st(pri, sec, replication.Connected, upd, upd))},
			"r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    replication:Established peer-disk:UpToDate\n\n"},
		{"syncing", []status.Volume{syncing},
			"r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    replication:SyncSource peer-disk:Inconsistent done:37.50\n\n"},
		{"paused by user", []status.Volume{paused},
			"r0 role:Secondary\n  disk:Inconsistent\n  peer role:Primary\n    replication:PausedSyncT peer-disk:UpToDate done:50.00 resync-suspended:user\n\n"},
		{"waiting for the peer", []status.Volume{vol("r0", 0, 0, st(sec, unk, replication.WFConnection, inc, dunk))},
			"r0 role:Secondary\n  disk:Inconsistent\n  peer connection:Connecting\n\n"},
		{"handshake", []status.Volume{vol("r0", 0, 0, st(sec, sec, replication.WFReportParams, inc, dunk))},
			"r0 role:Secondary\n  disk:Inconsistent\n  peer role:Secondary\n\n\n"},
		{"standalone", []status.Volume{vol("r0", 0, 0, st(pri, unk, replication.StandAlone, upd, dunk))},
			"r0 role:Primary\n  disk:UpToDate\n\n"},
		{"suspended", []status.Volume{suspended},
			"r0 role:Primary suspended:user,no-data\n  disk:UpToDate\n  peer connection:Connecting\n\n"},
		{"two volumes, two resources, sorted", []status.Volume{
			vol("r1", 0, 5, st(sec, unk, replication.Unconnected, upd, dunk)),
			vol("r0", 1, 1, st(sec, pri, replication.Connected, upd, upd)),
			vol("r0", 0, 0, st(sec, pri, replication.Connected, upd, upd)),
		}, "r0 role:Secondary\n  volume:0 disk:UpToDate\n  volume:1 disk:UpToDate\n  peer role:Primary\n" +
			"    volume:0 replication:Established peer-disk:UpToDate\n" +
			"    volume:1 replication:Established peer-disk:UpToDate\n\n" +
			"r1 role:Secondary\n  disk:UpToDate\n  peer connection:Unconnected\n\n"},
	} {
		var b bytes.Buffer
		require.NoError(t, status.WriteDRBD9(&b, tc.vols), tc.name)
		require.Equal(t, tc.want, b.String(), tc.name)
	}
}

// The figures of drbd84.md's /proc/drbd example: 952288 MiB to sync,
// 776076 MiB left, 10120 bits/s over an 18 s mark window.
func referenceSync() status.Volume {
	v := vol("r0", 0, 0, st(pri, sec, replication.SyncSource, upd, inc))
	v.Stats = replication.Stats{NS: 180441216, DR: 180441216, AL: 16, EP: 1, OOS: 794704668}
	const total, left = 952288 * 1024, 776076 * 1024
	v.Progress = replication.SyncProgress{Running: true, TotalKiB: total, LeftKiB: left, ElapsedMs: 4526000, RateKiB: 40960}
	v.Mark = status.SyncMark{LeftKiB: left + 182160*4, ElapsedMs: 4526000 - 18000}
	return v
}

func TestProgressArithmetic(t *testing.T) {
	t.Parallel()
	ref := referenceSync()
	p := status.ComputeProgress(&ref)
	require.Equal(t, uint64(186), p.PerMil)
	// 18 s * (198675456 bits / (182160/100 + 1)) / 100
	require.Equal(t, uint64(19627), p.FinishSec)
	require.Equal(t, uint64(40480), p.RecentKiBs)
	// (243785728 - 198675456) bits / 4526 s = 9966 bits/s
	require.Equal(t, uint64(39864), p.AvgKiBs)

	small := vol("r0", 0, 0, st(sec, pri, replication.SyncTarget, inc, upd))
	small.Progress = replication.SyncProgress{Running: true, TotalKiB: 1 << 20, LeftKiB: 1 << 19, ElapsedMs: 10500, RateKiB: 102400}
	p = status.ComputeProgress(&small)
	require.Equal(t, uint64(502), p.PerMil) // 1000 - 128*1000/257
	require.Equal(t, uint64(9), p.FinishSec)
	require.Equal(t, uint64(52428), p.RecentKiBs)
	require.Equal(t, uint64(52428), p.AvgKiBs)

	// Left above total (a race in the kernel too) shows 0 %, or 100 %
	// for an empty resync; nothing divides by zero.
	odd := small
	odd.Progress.LeftKiB = 2 << 20
	require.Equal(t, uint64(0), status.ComputeProgress(&odd).PerMil)
	odd.Progress = replication.SyncProgress{Running: true}
	require.Equal(t, uint64(1000), status.ComputeProgress(&odd).PerMil)
	require.Equal(t, uint64(0), status.ComputeProgress(&odd).FinishSec)

	// No progress over more than 180 s is "stalled".
	stall := small
	stall.Progress.ElapsedMs = 400000
	stall.Mark = status.SyncMark{LeftKiB: 1 << 19, ElapsedMs: 200000}
	p = status.ComputeProgress(&stall)
	require.True(t, p.Stalled)
	require.Equal(t, uint64(0), p.RecentKiBs)
}

func TestSyncProgressLines(t *testing.T) {
	t.Parallel()
	ref := referenceSync()
	require.Equal(t, "\t[==>.................] sync'ed: 18.6% (776076/952288)M\n"+
		"\tfinish: 5:27:07 speed: 40,480 (39,864) K/sec\n", status.SyncProgressLines(&ref))

	small := vol("r0", 0, 0, st(sec, pri, replication.SyncTarget, inc, upd))
	small.Progress = replication.SyncProgress{Running: true, TotalKiB: 1 << 20, LeftKiB: 1 << 19, ElapsedMs: 10500, RateKiB: 102400}
	require.Equal(t, "\t[=========>..........] sync'ed: 50.2% (524288/1048576)K\n"+
		"\tfinish: 0:00:09 speed: 52,428 (52,428) want: 102,400 K/sec\n", status.SyncProgressLines(&small))

	verify := vol("r0", 0, 0, st(pri, sec, replication.VerifyS, upd, upd))
	verify.Progress = replication.SyncProgress{Running: true, Verify: true, TotalKiB: 4096, LeftKiB: 4096, ElapsedMs: 0, RateKiB: 250}
	// The kernel's >>10 before dividing makes a tiny run start at 50 %:
	// 1024 bits left of 1024 is 1 of 1+1.
	require.Equal(t, "\t[=========>..........] verified: 50.0% (4096/4096)K\n"+
		"\tfinish: 0:00:10 speed: 0 (0) want: 250 K/sec\n", status.SyncProgressLines(&verify))

	stall := small
	stall.Progress.ElapsedMs = 400000
	stall.Mark = status.SyncMark{LeftKiB: 1 << 19, ElapsedMs: 200000}
	require.Contains(t, status.SyncProgressLines(&stall), " K/sec (stalled)\n")
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		perMil uint64
		want   string
	}{
		{0, "[>....................]"},
		{49, "[>....................]"},
		{50, "[>...................]"},
		{186, "[==>.................]"},
		{999, "[==================>.]"},
		{1000, "[===================>]"},
	} {
		require.Equal(t, tc.want, status.ProgressBar(tc.perMil), "per mil %d", tc.perMil)
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for in, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 40480: "40,480",
		999999: "999,999", 1000000: "1,000,000", 1234567: "1,234,567", 20003004: "20,003,004"} {
		require.Equal(t, want, status.Thousands(in))
	}
}

func TestProc(t *testing.T) {
	t.Parallel()
	ref := referenceSync()
	standalone := vol("r1", 0, 1, st(sec, unk, replication.StandAlone, upd, dunk))
	standalone.Stats = replication.Stats{DW: 4, DR: 8, AL: 2, BM: 1}
	unconf := vol("r2", 0, 4, st(sec, unk, replication.StandAlone, dless, dunk))
	waiting := vol("r3", 0, 5, replication.State{Role: pri, Peer: unk, Conn: replication.WFConnection, Disk: upd, PDsk: dunk, UserISP: true})
	waiting.WriteOrdering = 'd'
	waiting.Stats.OOS = 1024

	var b bytes.Buffer
	require.NoError(t, status.WriteProc(&b, []status.Volume{waiting, unconf, standalone, ref}))
	require.Equal(t, "version: 8.4.11 (api:1/proto:86-101)\nbuilt-in\n"+
		" 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n"+
		"    ns:180441216 nr:0 dw:0 dr:180441216 al:16 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:794704668\n"+
		"\t[==>.................] sync'ed: 18.6% (776076/952288)M\n"+
		"\tfinish: 5:27:07 speed: 40,480 (39,864) K/sec\n"+
		" 1: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----\n"+
		"    ns:0 nr:0 dw:4 dr:8 al:2 bm:1 lo:0 pe:0 ua:0 ap:0 ep:0 wo:f oos:0\n"+
		"\n"+
		" 4: cs:Unconfigured\n"+
		" 5: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r--u--\n"+
		"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:0 wo:d oos:1024\n", b.String())

	// The first minor not being 0 starts with an empty line too.
	b.Reset()
	require.NoError(t, status.WriteProc(&b, []status.Volume{unconf}))
	require.Equal(t, "version: 8.4.11 (api:1/proto:86-101)\nbuilt-in\n\n 4: cs:Unconfigured\n", b.String())

	// drbddisk's fallback parses the role out of the state line this way:
	// sed 's/:/ /g' and take the fifth word.
	line := status.ProcDevice(&ref)
	fields := bytes.Fields(bytes.ReplaceAll([]byte(line), []byte(":"), []byte(" ")))
	require.Equal(t, "Primary/Secondary", string(fields[4]))
}

func TestJSON(t *testing.T) {
	t.Parallel()
	ref := referenceSync()
	ref.UUIDs = [4]uint64{0xA1B2C3D4E5F60718, 4, 0, 0}
	ref.NBD = status.NBD{Socket: "/run/gdrbd/r0.nbd", Clients: 2, Writes: 7}
	alone := vol("a0", 0, 3, st(sec, unk, replication.StandAlone, upd, dunk))
	var b bytes.Buffer
	require.NoError(t, status.WriteJSON(&b, []status.Volume{ref, alone}))
	var got []status.JSONResource
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.Len(t, got, 2)
	require.Equal(t, "a0", got[0].Name)
	require.Empty(t, got[0].Connections)
	r := got[1]
	require.Equal(t, "r0", r.Name)
	require.Equal(t, "Primary", r.Role)
	require.Equal(t, "UpToDate", r.Devices[0].DiskState)
	require.Equal(t, "A1B2C3D4E5F60718", r.Devices[0].UUIDs[0])
	require.Equal(t, "/run/gdrbd/r0.nbd", r.Devices[0].NBD.Socket)
	require.Equal(t, 2, r.Devices[0].NBD.Clients)
	require.Len(t, r.Connections, 1)
	c := r.Connections[0]
	require.Equal(t, "Connected", c.ConnectionState)
	require.Equal(t, "Secondary", c.PeerRole)
	require.Equal(t, "SyncSource", c.PeerDevices[0].ReplicationState)
	require.Equal(t, "Inconsistent", c.PeerDevices[0].PeerDiskState)
	require.NotNil(t, c.PeerDevices[0].Sync)
	require.InDelta(t, 18.6, c.PeerDevices[0].Sync.Done, 1e-9)
	require.Equal(t, uint64(40480), c.PeerDevices[0].Sync.SpeedKiBs)

	b.Reset()
	require.NoError(t, status.WriteJSON(&b, nil))
	require.Equal(t, "[]\n", b.String())
}
