package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReportTables(t *testing.T) {
	t.Parallel()
	pt := func(rep int, tg Target, w Workload, iops float64, p50 time.Duration) Point {
		return Point{Rep: rep, Target: tg, Work: w, Primary: 10, Second: 11,
			Fio: FioResult{IOPS: iops, BW: iops * float64(w.BS), Ops: int64(iops), WriteP50: p50, SyncP50: p50},
			Usage: Usage{ProcCPU: map[int]time.Duration{10: time.Duration(iops) * time.Microsecond, 11: 0},
				PeakRSS: map[int]int64{10: 20 << 20, 11: 30 << 20}, HWM: map[int]int64{10: 21 << 20, 11: 31 << 20},
				Counts: map[int]ProcCounts{10: {Syscalls: 2 * int64(iops)}, 11: {Syscalls: int64(iops)}}}}
	}
	res := &Results{Plan: Plan{ResyncSize: 1 << 30}}
	for rep := 1; rep <= 3; rep++ {
		// Medians: StandAlone 1000, C 500 IOPS; the outlier run does not count.
		sa, c := 1000.0, 500.0
		if rep == 2 {
			sa, c = 5, 99999
		}
		res.Points = append(res.Points,
			pt(rep, TargetStandAlone, Rand4kJ1, sa, 300*time.Microsecond),
			pt(rep, TargetProtoC, Rand4kJ1, c, 400*time.Microsecond),
			pt(rep, TargetStandAlone, Sync4k, 1500, 300*time.Microsecond),
			pt(rep, TargetProtoC, Sync4k, 1000, 360*time.Microsecond),
			pt(rep, TargetProtoCMB128, Rand4kJ4, 700, time.Millisecond))
	}
	res.Copies = []CopyPoint{{Bytes: 1 << 30, Wall: 2 * time.Second}}
	res.Resyncs = []ResyncPoint{{Case: ResyncUnlimited, Result: ResyncResult{
		Log:   ResyncLog{KiB: 1 << 20, Began: time.Unix(0, 0), Done: time.Unix(25, 0), TotalSec: 25, LogKiBs: 41943},
		Usage: Usage{ProcCPU: map[int]time.Duration{1: time.Second, 2: 2 * time.Second}}}}}
	ts := res.Tables()
	require.Len(t, ts, 5)
	row := func(tb Table, first string) []string {
		for _, r := range tb.Rows {
			if r[0] == first {
				return r
			}
		}
		t.Fatalf("no row %q in %q", first, tb.Title)
		return nil
	}
	c := row(ts[0], "gdrbd protocol C")
	require.Equal(t, "500", c[1])
	require.Equal(t, "0.50x", c[3])
	require.Equal(t, "1.00", c[5], "1 us of CPU per IO")
	require.Equal(t, "3.00", c[6], "syscalls per IO of both daemons")
	lat := row(ts[2], "gdrbd protocol C")
	require.Equal(t, "120", lat[6], "added p50: (360+360) - (300+300) us")
	mem := row(ts[3], "gdrbd protocol C, max-buffers 128")
	require.Equal(t, []string{"gdrbd protocol C, max-buffers 128", "4k randwrite qd16 x4", "700", "20.0", "21.0", "30.0", "31.0"}, mem)
	rs := row(ts[4], ResyncUnlimited.Label)
	require.Equal(t, "41.0", rs[1], "1 GiB in 25 s")
	require.Equal(t, "0.08x", rs[2])
	require.Equal(t, "25 s; 41943 K/sec", rs[3])
	require.Equal(t, "3.00", rs[6])
	var b strings.Builder
	res.Markdown(&b)
	require.Contains(t, b.String(), "### Full initial sync of 1024 MiB")
}

// Results written with -json come back whole, and two files merge.
func TestLoadResults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := &Results{Plan: Plan{Size: 1 << 30, Progress: os.Stderr}, Started: time.Unix(100, 0), Ended: time.Unix(200, 0),
		Points: []Point{{Rep: 1, Target: TargetProtoC, Work: Rand4kJ1, Primary: 7,
			Fio:   FioResult{IOPS: 4000, Ops: 8000, WriteP50: time.Millisecond},
			Usage: Usage{ProcCPU: map[int]time.Duration{7: time.Second}, Counts: map[int]ProcCounts{7: {Syscalls: 5}}}}}}
	rs := &Results{Plan: Plan{ResyncSize: 256 << 20}, Started: time.Unix(50, 0), Ended: time.Unix(300, 0),
		Copies: []CopyPoint{{Bytes: 1 << 20, Wall: time.Second}}}
	var paths []string
	for i, r := range []*Results{w, rs} {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		p := filepath.Join(dir, fmt.Sprint(i, ".json"))
		require.NoError(t, os.WriteFile(p, b, 0o600))
		paths = append(paths, p)
	}
	got, err := LoadResults(paths...)
	require.NoError(t, err)
	require.Len(t, got.Points, 1)
	require.Equal(t, w.Points[0].Usage.ProcCPU, got.Points[0].Usage.ProcCPU)
	require.Equal(t, w.Points[0].Fio, got.Points[0].Fio)
	require.Equal(t, w.Points[0].Work, got.Points[0].Work)
	require.Len(t, got.Copies, 1)
	require.Equal(t, int64(256<<20), got.Plan.ResyncSize)
	require.Equal(t, int64(1<<30), got.Plan.Size)
	require.True(t, got.Started.Equal(time.Unix(50, 0)))
	require.True(t, got.Ended.Equal(time.Unix(300, 0)))
	_, err = LoadResults()
	require.Error(t, err)
}
