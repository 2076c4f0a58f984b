package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProcSpeed(t *testing.T) {
	t.Parallel()
	target := "version: 8.4.11 (api:1/proto:86-101)\nbuilt-in\n" +
		" 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n" +
		"    ns:0 nr:409600 dw:409600 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:0 wo:f oos:638908\n" +
		"\t[=====>..............] sync'ed: 39.1% (638908/1048508)K\n" +
		"\tfinish: 0:00:15 speed: 40,960 (40,448) want: 4,096,000 K/sec\n"
	s, ok := ParseProcSpeed(target)
	require.True(t, ok)
	require.Equal(t, ProcSpeed{Recent: 40960, Avg: 40448, Want: 4096000}, s)

	// The SyncSource shows no want:.
	s, ok = ParseProcSpeed("\tfinish: 5:27:02 speed: 40,480 (39,870) K/sec\n")
	require.True(t, ok)
	require.Equal(t, ProcSpeed{Recent: 40480, Avg: 39870}, s)

	_, ok = ParseProcSpeed(" 0: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----\n")
	require.False(t, ok)
}

// Lines as the daemon logs them (JSON, zap's ISO8601 timestamps).
const resyncLog = `{"level":"info","ts":"2026-11-25T20:15:00.558Z","msg":"replication event","resource":"r0","volume":0,"event":"attached: 2097016 sectors, 0 KiB marked out-of-sync"}
{"level":"info","ts":"2026-11-25T20:15:01.102Z","msg":"replication event","resource":"r0","volume":0,"event":"Began resync as SyncTarget (will sync 1048508 KB [262127 bits set])."}
{"level":"info","ts":"2026-11-25T20:15:26.681Z","msg":"replication event","resource":"r0","volume":0,"event":"Resync done (total 25 sec; 41940 K/sec)"}
not json
{"level":"info","ts":"2026-11-25T20:16:00.000Z","msg":"replication event","resource":"r0","volume":0,"event":"Began resync as SyncTarget (will sync 4096 KB [1024 bits set])."}
{"level":"info","ts":"2026-11-25T20:16:00.500Z","msg":"replication event","resource":"r0","volume":0,"event":"Resync done (total 1 sec; 4096 K/sec)"}
{"level":"info","ts":"2026-11-25T20:17:00.000Z","msg":"replication event","resource":"r0","volume":0,"event":"Began resync as SyncTarget (will sync 8192 KB [2048 bits set])."}
`

func TestParseResyncLog(t *testing.T) {
	t.Parallel()
	// The last completed resync counts; the one still running does not.
	r, err := ParseResyncLog(resyncLog)
	require.NoError(t, err)
	require.Equal(t, int64(4096), r.KiB)
	require.Equal(t, 500*time.Millisecond, r.Done.Sub(r.Began))
	require.InDelta(t, 8192, r.Rate(), 1e-9)
	require.Equal(t, int64(1), r.TotalSec)
	require.Equal(t, int64(4096), r.LogKiBs)
	require.Equal(t, "Resync done (total 1 sec; 4096 K/sec)", r.DoneLine)

	r, err = ParseResyncLog(resyncLog[:len(resyncLog)/2])
	require.NoError(t, err)
	require.Equal(t, int64(1048508), r.KiB)
	require.InDelta(t, 1048508/25.579, r.Rate(), 1e-6)

	_, err = ParseResyncLog(`{"ts":"2026-11-25T20:15:01.102Z","event":"Began resync as SyncTarget (will sync 4 KB [1 bits set])."}`)
	require.Error(t, err)
}

func TestResyncMedians(t *testing.T) {
	t.Parallel()
	r := ResyncResult{Samples: []ProcSpeed{{Recent: 0, Want: 0}, {Recent: 100, Want: 500}, {Recent: 300, Want: 500}, {Recent: 200, Want: 500}}}
	// The first sample (ramp-up) and samples before the controller's
	// first tick (want 0) are left out.
	require.InDelta(t, 200, r.MedianRecent(), 1e-9)
	require.InDelta(t, 500, r.MedianWant(), 1e-9)
	require.True(t, isNaN(ResyncResult{}.MedianRecent()))
	r = ResyncResult{Samples: []ProcSpeed{{Recent: 0}, {Recent: 400}}}
	require.InDelta(t, 400, r.MedianRecent(), 1e-9, "a resync done within two samples")
}
