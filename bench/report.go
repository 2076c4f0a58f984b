package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Tables turns the results into the report's tables: every cell is the
// median over the repetitions.
func (res *Results) Tables() []Table {
	var ts []Table
	if len(res.Points) > 0 {
		ts = append(ts, res.iopsTable(), res.seqTable(), res.latencyTable(), res.memTable())
	}
	if len(res.Copies) > 0 {
		ts = append(ts, res.resyncTable())
	}
	return ts
}

// targets present in the results, in matrix order.
func (res *Results) targets() []Target {
	seen := map[Target]bool{}
	for _, p := range res.Points {
		seen[p.Target] = true
	}
	var ts []Target
	for t := TargetLoop; t <= lastTarget; t++ {
		if seen[t] {
			ts = append(ts, t)
		}
	}
	return ts
}

// med is the median of f over the points of (t, w).
func (res *Results) med(t Target, w Workload, f func(Point) float64) float64 {
	var xs []float64
	for _, p := range res.Points {
		if p.Target == t && p.Work.Key == w.Key {
			xs = append(xs, f(p))
		}
	}
	return Median(xs)
}

func iops(p Point) float64     { return p.Fio.IOPS }
func bw(p Point) float64       { return p.Fio.BW }
func cpuIO(p Point) float64    { return p.CPUPerIO() }
func others(p Point) float64   { return 100 * p.Others() }
func sysPerIO(p Point) float64 { return p.PerIO(syscalls) }
func csPerIO(p Point) float64  { return p.PerIO(ctxSw) }
func wP50(p Point) float64     { return seconds(p.Fio.WriteP50) }
func wP99(p Point) float64     { return seconds(p.Fio.WriteP99) }
func sP50(p Point) float64     { return seconds(p.Fio.SyncP50) }
func sP99(p Point) float64     { return seconds(p.Fio.SyncP99) }
func perOp(p Point) float64    { return 1 / p.Fio.IOPS }
func priRSS(p Point) float64   { return float64(p.Usage.PeakRSS[p.Primary]) }
func priHWM(p Point) float64   { return float64(p.Usage.HWM[p.Primary]) }
func secRSS(p Point) float64   { return float64(p.Usage.PeakRSS[p.Second]) }
func secHWM(p Point) float64   { return float64(p.Usage.HWM[p.Second]) }
func isMB128(t Target) bool    { return t.maxBuffers128() }
func hasSecond(t Target) bool  { return t.gdrbd() && t != TargetStandAlone }
func fmtPct(v float64) string  { return fmtNum(v) }
func fmtIOPS(v float64) string { return fmtNum(v) }

func (res *Results) iopsTable() Table {
	t := Table{Title: "4 KiB random write, iodepth 16: IOPS (median of runs)",
		Header: []string{"target", "IOPS x1 job", "IOPS x4 jobs", "/StandAlone x1", "/StandAlone x4", "server CPU us/IO x1", "syscalls/IO x1", "ctx switches/IO x1", "others' CPU % x1"}}
	for _, tg := range res.targets() {
		if isMB128(tg) {
			continue
		}
		i1, i4 := res.med(tg, Rand4kJ1, iops), res.med(tg, Rand4kJ4, iops)
		t.Add(tg.String(), fmtIOPS(i1), fmtIOPS(i4),
			fmtRatio(i1, res.med(TargetStandAlone, Rand4kJ1, iops)), fmtRatio(i4, res.med(TargetStandAlone, Rand4kJ4, iops)),
			fmtMicros(res.med(tg, Rand4kJ1, cpuIO)), fmtNum(res.med(tg, Rand4kJ1, sysPerIO)), fmtNum(res.med(tg, Rand4kJ1, csPerIO)),
			fmtPct(res.med(tg, Rand4kJ1, others)))
	}
	t.Notes = append(t.Notes, "x4 jobs = fio --numjobs=4, each job its own NBD connection (multi-conn); target: protocol C >= 0.5x StandAlone",
		"server CPU = user+system CPU of both gdrbd daemons (or the reference server) per write; syscalls = /proc/PID/io syscr+syscw (read/write-class calls); ctx switches = voluntary+involuntary, all threads; others' CPU = the machine's busy share (of 2 CPUs) used by neither the server nor fio: other people's jobs during the point")
	return t
}

func (res *Results) seqTable() Table {
	t := Table{Title: "1 MiB sequential write, iodepth 4: MiB/s (median of runs)",
		Header: []string{"target", "MiB/s x1 job", "MiB/s x4 jobs", "/StandAlone x1", "/StandAlone x4", "server CPU ms/GiB x1"}}
	for _, tg := range res.targets() {
		if isMB128(tg) {
			continue
		}
		b1, b4 := res.med(tg, Seq1MJ1, bw), res.med(tg, Seq1MJ4, bw)
		t.Add(tg.String(), fmtMiB(b1), fmtMiB(b4),
			fmtRatio(b1, res.med(TargetStandAlone, Seq1MJ1, bw)), fmtRatio(b4, res.med(TargetStandAlone, Seq1MJ4, bw)),
			fmtNum(res.med(tg, Seq1MJ1, cpuIO)*1e3*1024))
	}
	return t
}

func (res *Results) latencyTable() Table {
	t := Table{Title: "4 KiB random write, iodepth 1, fsync after every write: latency in us (median of runs)",
		Header: []string{"target", "write p50", "write p99", "flush p50", "flush p99", "write+flush mean", "added p50 (write+flush) vs StandAlone"}}
	base := res.med(TargetStandAlone, Sync4k, wP50) + res.med(TargetStandAlone, Sync4k, sP50)
	for _, tg := range res.targets() {
		if isMB128(tg) {
			continue
		}
		w50, s50 := res.med(tg, Sync4k, wP50), res.med(tg, Sync4k, sP50)
		added := "-"
		if tg.gdrbd() && tg != TargetStandAlone {
			added = fmtMicros(w50 + s50 - base)
		}
		t.Add(tg.String(), fmtMicros(w50), fmtMicros(res.med(tg, Sync4k, wP99)), fmtMicros(s50),
			fmtMicros(res.med(tg, Sync4k, sP99)), fmtMicros(res.med(tg, Sync4k, perOp)), added)
	}
	t.Notes = append(t.Notes, "fio --fsync=1: a write, then an fsync (NBD FLUSH; psync's fdatasync on the raw targets); completion latencies; target: <= 150 us added p50")
	return t
}

func (res *Results) memTable() Table {
	t := Table{Title: "gdrbd daemon memory under write load, MiB (median of runs)",
		Header: []string{"target", "workload", "IOPS or MiB/s", "Primary peak VmRSS", "Primary VmHWM", "Secondary peak VmRSS", "Secondary VmHWM"}}
	for _, tg := range res.targets() {
		if !tg.gdrbd() {
			continue
		}
		for _, w := range []Workload{Rand4kJ4, Seq1MJ1, Seq1MJ4} {
			if math.IsNaN(res.med(tg, w, iops)) {
				continue
			}
			rate := fmtIOPS(res.med(tg, w, iops))
			if w.BS >= 1<<20 {
				rate = fmtMiB(res.med(tg, w, bw)) + " MiB/s"
			}
			sr, sh := "-", "-"
			if hasSecond(tg) {
				sr, sh = fmtMiB(res.med(tg, w, secRSS)), fmtMiB(res.med(tg, w, secHWM))
			}
			t.Add(tg.String(), w.Label, rate, fmtMiB(res.med(tg, w, priRSS)), fmtMiB(res.med(tg, w, priHWM)), sr, sh)
		}
	}
	t.Notes = append(t.Notes, "peak VmRSS sampled every 100 ms from /proc/PID/status during the run; VmHWM is the process's peak since it started (the pair is new for each protocol)")
	return t
}

func (res *Results) resyncTable() Table {
	var cp []float64
	for _, c := range res.Copies {
		cp = append(cp, float64(c.Bytes)/c.Wall.Seconds())
	}
	copyRate := Median(cp)
	t := Table{Title: fmt.Sprintf("Full initial sync of %d MiB: MiB/s (median of runs)", res.Plan.ResyncSize>>20),
		Header: []string{"case", "MiB/s (log timestamps)", "/dd copy", "\"Resync done\" lines (distinct)", "proc speed: median", "proc want: median", "daemons' CPU s", "app IOPS during / alone"}}
	t.Add("dd copy loop->loop (1M, direct, fdatasync)", fmtMiB(copyRate), "1.00x", "-", "-", "-", "-", "-")
	var keys []string
	seen := map[string]ResyncCase{}
	for _, p := range res.Resyncs {
		if _, ok := seen[p.Case.Key]; !ok {
			keys = append(keys, p.Case.Key)
			seen[p.Case.Key] = p.Case
		}
	}
	for _, k := range keys {
		var rate, recent, want, cpu, appD, appA []float64
		var lines []string
		for _, p := range res.Resyncs {
			if p.Case.Key != k {
				continue
			}
			rate = append(rate, p.Result.Log.Rate()*1024)
			recent = append(recent, p.Result.MedianRecent())
			want = append(want, p.Result.MedianWant())
			var c float64
			for _, d := range p.Result.Usage.ProcCPU {
				c += d.Seconds()
			}
			cpu = append(cpu, c)
			if l := fmt.Sprintf("%d s; %d K/sec", p.Result.Log.TotalSec, p.Result.Log.LogKiBs); !slices.Contains(lines, l) {
				lines = append(lines, l)
			}
			if p.Result.App != nil && p.AppAlone != nil {
				appD = append(appD, p.Result.App.IOPS)
				appA = append(appA, p.AppAlone.IOPS)
			}
		}
		app := "-"
		if len(appD) > 0 {
			app = fmtIOPS(Median(appD)) + " / " + fmtIOPS(Median(appA))
		}
		r := Median(rate)
		t.Add(seen[k].Label, fmtMiB(r), fmtRatio(r, copyRate), strings.Join(lines, " / "),
			fmtNum(Median(recent)), fmtNum(Median(want)), fmtNum(Median(cpu)), app)
	}
	t.Notes = append(t.Notes, "MiB/s from the SyncTarget's log: \"Began resync\" to \"Resync done\" timestamps (ms) over the KiB it announced; proc speed/want in K/sec from `gdrbd status --proc` on the SyncTarget once a second",
		"targets: no limit >= 0.8x dd; resync-rate 200M within 5% of 200 MiB/s")
	return t
}

// Markdown writes every table.
func (res *Results) Markdown(w io.Writer) {
	for _, t := range res.Tables() {
		t.Markdown(w)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintln(w, "Left out:")
		for _, s := range res.Skipped {
			fmt.Fprintf(w, "- %s\n", s)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Load average (1 min) %.2f at the start, %.2f at the end; %s to %s.\n",
		res.LoadBeg, res.LoadEnd, res.Started.Format("2006-01-02 15:04:05"), res.Ended.Format("15:04:05"))
}
