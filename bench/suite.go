package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Workload is one fio pattern of the matrix. A plain value.
type Workload struct {
	Key     string
	Label   string
	RW      string
	BS      int64
	IODepth int
	NumJobs int
	Fsync   bool
}

// The workloads of section 1 (issue 4).
var (
	Rand4kJ1 = Workload{Key: "rand4k-j1", Label: "4k randwrite qd16 x1", RW: "randwrite", BS: 4 << 10, IODepth: 16, NumJobs: 1}
	Rand4kJ4 = Workload{Key: "rand4k-j4", Label: "4k randwrite qd16 x4", RW: "randwrite", BS: 4 << 10, IODepth: 16, NumJobs: 4}
	Seq1MJ1  = Workload{Key: "seq1m-j1", Label: "1M write qd4 x1", RW: "write", BS: 1 << 20, IODepth: 4, NumJobs: 1}
	Seq1MJ4  = Workload{Key: "seq1m-j4", Label: "1M write qd4 x4", RW: "write", BS: 1 << 20, IODepth: 4, NumJobs: 4}
	Sync4k   = Workload{Key: "fsync4k", Label: "4k randwrite qd1 fsync=1", RW: "randwrite", BS: 4 << 10, IODepth: 1, NumJobs: 1, Fsync: true}
)

// Job is the workload as a fio job against target for d.
func (w Workload) Job(engine Engine, target string, size int64, d time.Duration) FioJob {
	return FioJob{Name: w.Key, Engine: engine, Target: target, RW: w.RW, BS: w.BS, IODepth: w.IODepth,
		NumJobs: w.NumJobs, Size: size, Runtime: d, Fsync: w.Fsync}
}

// Target is what a point writes to. A plain value.
type Target int

// The targets of section 1: the anchors (the loop device and its file
// straight, two reference NBD servers on the same loop device) and gdrbd
// as Primary of a pair on the same loop device.
const (
	TargetLoop Target = 1 + iota
	TargetFile
	TargetNBDKit
	TargetQemuNBD
	TargetStandAlone
	TargetProtoA
	TargetProtoB
	TargetProtoC
	TargetProtoCMB128
	TargetProtoAMB128
	// TargetProtoCNoFlush: protocol C without the Secondary's flush at
	// every epoch boundary (disk-flushes no, as DRBD's guide advises only
	// for a battery-backed write cache): what that flush costs.
	TargetProtoCNoFlush
	lastTarget = TargetProtoCNoFlush
)

func (t Target) String() string {
	switch t {
	case TargetLoop:
		return "loop device (libaio/psync)"
	case TargetFile:
		return "backing file (libaio/psync)"
	case TargetNBDKit:
		return "nbdkit file plugin"
	case TargetQemuNBD:
		return "qemu-nbd"
	case TargetStandAlone:
		return "gdrbd StandAlone"
	case TargetProtoA:
		return "gdrbd protocol A"
	case TargetProtoB:
		return "gdrbd protocol B"
	case TargetProtoC:
		return "gdrbd protocol C"
	case TargetProtoCMB128:
		return "gdrbd protocol C, max-buffers 128"
	case TargetProtoAMB128:
		return "gdrbd protocol A, max-buffers 128"
	case TargetProtoCNoFlush:
		return "gdrbd protocol C, disk-flushes no"
	}
	return fmt.Sprintf("Target(%d)", int(t))
}

func (t Target) gdrbd() bool { return t >= TargetStandAlone }

// maxBuffers128 reports the targets of the memory section only.
func (t Target) maxBuffers128() bool { return t == TargetProtoCMB128 || t == TargetProtoAMB128 }

// Point is one fio run of the matrix. A plain value.
type Point struct {
	Rep     int
	Target  Target
	Work    Workload
	Fio     FioResult
	Usage   Usage
	Primary int // pid of the gdrbd Primary or of the NBD server (0: none)
	Second  int // pid of the gdrbd Secondary (0: none)
	Quiet   float64
}

// CPUPerIO is the CPU time of the server side (both gdrbd daemons, or the
// reference server) per completed write.
func (p Point) CPUPerIO() float64 {
	if p.Fio.Ops == 0 || p.Primary == 0 {
		return math.NaN()
	}
	c := p.Usage.ProcCPU[p.Primary] + p.Usage.ProcCPU[p.Second]
	return c.Seconds() / float64(p.Fio.Ops)
}

// FioCPU is the CPU time fio itself used (its usr_cpu and sys_cpu are
// shares of one CPU per job over the runtime).
func (p Point) FioCPU() time.Duration {
	share := (p.Fio.UsrCPU + p.Fio.SysCPU) / 100 * float64(max(p.Work.NumJobs, 1))
	return time.Duration(share * float64(p.Fio.Runtime))
}

// Others is the busy share of all CPUs during the point that was neither
// the server side nor fio: other people's jobs on this machine.
func (p Point) Others() float64 { return p.Usage.OtherBusy(p.FioCPU()) }

// PerIO is a count of the server side (both gdrbd daemons, or the
// reference server) per completed write.
func (p Point) PerIO(f func(ProcCounts) int64) float64 {
	if p.Fio.Ops == 0 || p.Primary == 0 {
		return math.NaN()
	}
	return float64(f(p.Usage.Counts[p.Primary])+f(p.Usage.Counts[p.Second])) / float64(p.Fio.Ops)
}

func syscalls(c ProcCounts) int64 { return c.Syscalls }
func ctxSw(c ProcCounts) int64    { return c.CtxSwitches }

// ResyncCase is one configuration of section 2 (issue 5). A plain value.
type ResyncCase struct {
	Key    string
	Label  string
	Config PairConfig
	Load   bool // run Rand4kJ1 on the Primary during the resync
}

// The resync cases.
var (
	ResyncUnlimited   = ResyncCase{Key: "unlimited", Label: "no limit (c-plan-ahead 0; resync-rate 4000M), max-buffers 2048", Config: PairConfig{Disk: "c-plan-ahead 0; resync-rate 4000M;"}}
	ResyncUnlimitedMB = ResyncCase{Key: "unlimited-mb32k", Label: "no limit, max-buffers 32768", Config: PairConfig{Disk: "c-plan-ahead 0; resync-rate 4000M;", MaxBuffers: 32768}}
	ResyncFixed200    = ResyncCase{Key: "fixed200", Label: "resync-rate 200M; c-plan-ahead 0, max-buffers 2048", Config: PairConfig{Disk: "c-plan-ahead 0; resync-rate 200M;"}}
	ResyncFixed200MB  = ResyncCase{Key: "fixed200-mb32k", Label: "resync-rate 200M; c-plan-ahead 0, max-buffers 32768", Config: PairConfig{Disk: "c-plan-ahead 0; resync-rate 200M;", MaxBuffers: 32768}}
	ResyncSeed        = ResyncCase{Key: "seed", Label: "seed: syncer { rate 200M; } (c-plan-ahead 20, c-max-rate 100M)", Config: PairConfig{Syncer: "rate 200M;"}}
	ResyncSeedMB      = ResyncCase{Key: "seed-mb32k", Label: "seed, max-buffers 32768", Config: PairConfig{Syncer: "rate 200M;", MaxBuffers: 32768}}
	ResyncSeedLoad    = ResyncCase{Key: "seed-load", Label: "seed, fio 4k randwrite qd16 on the Primary", Config: PairConfig{Syncer: "rate 200M;"}, Load: true}
	ResyncSeedMBLoad  = ResyncCase{Key: "seed-mb32k-load", Label: "seed, max-buffers 32768, fio 4k randwrite qd16 on the Primary", Config: PairConfig{Syncer: "rate 200M;", MaxBuffers: 32768}, Load: true}

	// AllResyncCases are the cases of a full run, in order.
	AllResyncCases = []ResyncCase{ResyncUnlimited, ResyncUnlimitedMB, ResyncFixed200, ResyncFixed200MB, ResyncSeed, ResyncSeedMB, ResyncSeedLoad, ResyncSeedMBLoad}
)

// ResyncPoint is one measured case. A plain value.
type ResyncPoint struct {
	Rep    int
	Case   ResyncCase
	Result ResyncResult
	// AppAlone is the load's fio result on the same pair once in sync
	// (Load cases only), the application's rate without a resync.
	AppAlone *FioResult
}

// CopyPoint is the plain copy of the same bytes (dd between the loop
// devices), the yardstick for the resync. A plain value.
type CopyPoint struct {
	Rep   int
	Bytes int64
	Wall  time.Duration
	Argv  []string
}

// Plan says what Run measures. A plain value.
type Plan struct {
	Gdrbd      string // the gdrbd binary
	Fio        string // fio ("fio" on PATH)
	Dir        string // scratch directory; keep it short (unix socket paths)
	Size       int64  // section 1 device size
	ResyncSize int64  // section 2 device size
	Runtime    time.Duration
	AppRuntime time.Duration // fio during a resync
	Repeat     int
	Quick      bool // fewer targets, workloads and resync cases
	Write      bool // section 1: write matrix and latency
	Memory     bool // section 1: daemon memory, max-buffers 2048 vs 128
	Resync     bool // section 2
	// ResyncCases picks cases of section 2 by key (nil: all, or the
	// quick ones).
	ResyncCases []string
	QuietBusy   float64       // wait before each point until the machine is less busy than this (0..1)
	QuietWait   time.Duration // ... but no longer than this
	Progress    io.Writer     `json:"-"` // one line per point
}

// Results is everything Run measured. A plain value.
type Results struct {
	Plan    Plan
	Started time.Time
	Ended   time.Time
	LoadBeg float64
	LoadEnd float64
	Points  []Point
	Resyncs []ResyncPoint
	Copies  []CopyPoint
	Skipped []string // targets or sections left out, and why
}

// LoadResults reads results Run wrote as JSON (gdrbd-bench -json) and
// merges them, so that tables can be made again, or from several runs
// (e.g. the write and the memory section measured apart).
func LoadResults(paths ...string) (*Results, error) {
	var all *Results
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var r Results
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", p, err)
		}
		if all == nil {
			all = &r
			continue
		}
		all.Points = append(all.Points, r.Points...)
		all.Resyncs = append(all.Resyncs, r.Resyncs...)
		all.Copies = append(all.Copies, r.Copies...)
		all.Skipped = append(all.Skipped, r.Skipped...)
		if r.Plan.ResyncSize != 0 {
			all.Plan.ResyncSize = r.Plan.ResyncSize
		}
		all.Started, all.LoadBeg = minTime(all.Started, r.Started, all.LoadBeg, r.LoadBeg)
		if r.Ended.After(all.Ended) {
			all.Ended, all.LoadEnd = r.Ended, r.LoadEnd
		}
	}
	if all == nil {
		return nil, errors.New("bench: no results to load")
	}
	return all, nil
}

func minTime(a, b time.Time, la, lb float64) (time.Time, float64) {
	if b.Before(a) {
		return b, lb
	}
	return a, la
}

// ErrSkip is returned by Run when the benchmark cannot run here at all
// (not root, or fio missing): the caller reports it and exits 0.
var ErrSkip = errors.New("bench: skipped")

// CheckEnv reports why the matrix cannot run here (ErrSkip), if so.
func CheckEnv(p Plan) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (loop devices)", ErrSkip)
	}
	for _, t := range []string{"losetup", p.Fio, "dd"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%w: %s is not installed (scripts/install-deps.sh installs it)", ErrSkip, t)
		}
	}
	if _, err := os.Stat(p.Gdrbd); err != nil {
		return fmt.Errorf("%w: no gdrbd binary at %s (make build)", ErrSkip, p.Gdrbd)
	}
	return nil
}

// runner carries one Run.
type runner struct {
	ctx context.Context
	p   Plan
	res *Results
	dir string
}

// Run measures the plan. Everything it creates (loop devices, files,
// daemons and servers, by pid) is removed before it returns, also on
// error or when ctx is cancelled.
func Run(ctx context.Context, p Plan) (*Results, error) {
	if err := CheckEnv(p); err != nil {
		return nil, err
	}
	if p.Progress == nil {
		p.Progress = io.Discard
	}
	p.Repeat = max(p.Repeat, 1)
	if p.Fio == "" {
		p.Fio = "fio"
	}
	dir, err := os.MkdirTemp(p.Dir, "gb")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	defer os.RemoveAll(dir)
	r := &runner{ctx: ctx, p: p, dir: dir, res: &Results{Plan: p, Started: time.Now(), LoadBeg: LoadAvg()}}
	if p.Write || p.Memory {
		err = r.writeSection()
	}
	if err == nil && p.Resync {
		err = r.resyncSection()
	}
	r.res.Ended, r.res.LoadEnd = time.Now(), LoadAvg()
	return r.res, err
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.p.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *runner) have(prog string) bool {
	_, err := exec.LookPath(prog)
	return err == nil
}

// workloads of section 1 per target.
func (r *runner) workloads() []Workload {
	if r.p.Quick {
		return []Workload{Rand4kJ1, Rand4kJ4, Seq1MJ1, Sync4k}
	}
	return []Workload{Rand4kJ1, Rand4kJ4, Seq1MJ1, Seq1MJ4, Sync4k}
}

// point runs one fio job, metering the given pids.
func (r *runner) point(rep int, t Target, w Workload, engine Engine, target string, primary, second int) error {
	quiet := 0.0
	if r.p.QuietWait > 0 {
		quiet = WaitQuiet(r.ctx, r.p.QuietBusy, r.p.QuietWait)
	}
	if w.Fsync && engine == EngineLibaio {
		engine = EnginePsync
	}
	size := r.p.Size - 8<<20 // clear of gdrbd's internal metadata
	m := StartMeter(primary, second)
	fr, err := RunFio(r.ctx, r.p.Fio, r.dir, w.Job(engine, target, size, r.p.Runtime))
	u := m.Stop()
	if err != nil {
		return fmt.Errorf("%v, %s: %w", t, w.Label, err)
	}
	pt := Point{Rep: rep, Target: t, Work: w, Fio: fr, Usage: u, Primary: primary, Second: second, Quiet: quiet}
	r.res.Points = append(r.res.Points, pt)
	r.logf("rep %d  %-34s %-26s %9.0f IOPS %8.1f MiB/s  p50 %6.0f us  sync p50 %6.0f us  cpu/io %5.0f us  sysc/io %4.1f  cs/io %4.1f  others %3.0f%%",
		rep, t, w.Label, fr.IOPS, fr.BW/(1<<20), fr.WriteP50.Seconds()*1e6, fr.SyncP50.Seconds()*1e6,
		pt.CPUPerIO()*1e6, pt.PerIO(syscalls), pt.PerIO(ctxSw), 100*pt.Others())
	return nil
}

// writeSection is section 1: the anchors, then gdrbd per protocol on the
// same loop device, repeated.
func (r *runner) writeSection() (err error) {
	var disks [2]*Disk
	defer func() {
		for _, d := range disks {
			if d != nil {
				err = errors.Join(err, d.Close())
			}
		}
	}()
	for i, n := range []string{"a.img", "b.img"} {
		if disks[i], err = NewDisk(r.ctx, r.dir, n, r.p.Size); err != nil {
			return err
		}
	}
	if !disks[0].DirectIO {
		r.res.Skipped = append(r.res.Skipped, "loop devices without --direct-io (the filesystem refused it): writes go through the page cache")
	}
	servers := []ServerKind{ServerNBDKit, ServerQemuNBD}
	protos := []Target{TargetProtoC, TargetProtoB, TargetProtoA, TargetProtoCNoFlush}
	if r.p.Quick {
		servers = []ServerKind{ServerQemuNBD}
		protos = []Target{TargetProtoC, TargetProtoA}
	}
	for rep := 1; rep <= r.p.Repeat && r.p.Write; rep++ {
		for _, w := range r.workloads() {
			if err := r.point(rep, TargetLoop, w, EngineLibaio, disks[0].Dev, 0, 0); err != nil {
				return err
			}
			if !r.p.Quick {
				if err := r.point(rep, TargetFile, w, EngineLibaio, disks[0].File, 0, 0); err != nil {
					return err
				}
			}
		}
		for _, k := range servers {
			prog := map[ServerKind]string{ServerNBDKit: "nbdkit", ServerQemuNBD: "qemu-nbd"}[k]
			if !r.have(prog) {
				r.skip(prog + " is not installed")
				continue
			}
			s, err := StartServer(r.ctx, k, r.dir, disks[0].Dev)
			if err != nil {
				return err
			}
			t := map[ServerKind]Target{ServerNBDKit: TargetNBDKit, ServerQemuNBD: TargetQemuNBD}[k]
			for _, w := range r.workloads() {
				if err = r.point(rep, t, w, EngineNBD, s.URI, s.Pid(), 0); err != nil {
					break
				}
			}
			s.Close()
			if err != nil {
				return err
			}
		}
		for _, t := range protos {
			if err := r.gdrbdPoints(rep, t, disks, r.workloads(), t == TargetProtoC); err != nil {
				return err
			}
		}
	}
	// Memory: the Secondary holds what it received until it is on disk,
	// at most max-buffers; protocol A lets the Primary run ahead of it.
	memTargets := []Target{TargetProtoC, TargetProtoCMB128, TargetProtoA, TargetProtoAMB128}
	memWorks := []Workload{Rand4kJ4, Seq1MJ4}
	if r.p.Quick {
		memTargets, memWorks = []Target{TargetProtoA, TargetProtoAMB128}, []Workload{Seq1MJ4}
	}
	for rep := 1; rep <= r.p.Repeat && r.p.Memory; rep++ {
		for _, t := range memTargets {
			if err := r.gdrbdPoints(rep, t, disks, memWorks, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *runner) skip(why string) {
	for _, s := range r.res.Skipped {
		if s == why {
			return
		}
	}
	r.res.Skipped = append(r.res.Skipped, why)
}

// gdrbdPoints sets up a pair for t on the disks, skips the initial sync,
// runs the workloads on the Primary; after protocol C in the write
// section it disconnects the Primary (StandAlone) and runs them again.
func (r *runner) gdrbdPoints(rep int, t Target, disks [2]*Disk, works []Workload, thenStandAlone bool) (err error) {
	cfg := PairConfig{}
	switch t {
	case TargetProtoA:
		cfg.Protocol = "A"
	case TargetProtoB:
		cfg.Protocol = "B"
	case TargetProtoCMB128:
		cfg.MaxBuffers = 128
	case TargetProtoAMB128:
		cfg.Protocol, cfg.MaxBuffers = "A", 128
	case TargetProtoCNoFlush:
		cfg.Disk = "disk-flushes no;"
	}
	pdir, err := os.MkdirTemp(r.dir, "p")
	if err != nil {
		return err
	}
	defer os.RemoveAll(pdir)
	p, err := StartPair(r.ctx, r.p.Gdrbd, pdir, disks, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	if err := p.SkipSync(r.ctx); err != nil {
		return err
	}
	for _, w := range works {
		if err := r.point(rep, t, w, EngineNBD, p.URI(), p.A.Pid(), p.B.Pid()); err != nil {
			return err
		}
	}
	if !thenStandAlone {
		return nil
	}
	if _, err := p.A.Run(r.ctx, "disconnect", "r0"); err != nil {
		return err
	}
	if err := p.A.WaitCState(r.ctx, "StandAlone", 30*time.Second); err != nil {
		return err
	}
	for _, w := range r.workloads() {
		if err := r.point(rep, TargetStandAlone, w, EngineNBD, p.URI(), p.A.Pid(), 0); err != nil {
			return err
		}
	}
	return nil
}

// resyncCases of section 2.
func (r *runner) resyncCases() []ResyncCase {
	if len(r.p.ResyncCases) > 0 {
		var cs []ResyncCase
		for _, c := range AllResyncCases {
			if slices.Contains(r.p.ResyncCases, c.Key) {
				cs = append(cs, c)
			}
		}
		return cs
	}
	if r.p.Quick {
		return []ResyncCase{ResyncUnlimited, ResyncUnlimitedMB, ResyncFixed200MB}
	}
	return AllResyncCases
}

// resyncSection is section 2: a plain copy between the two loop devices,
// then full initial syncs of the same bytes per case, repeated.
func (r *runner) resyncSection() (err error) {
	var disks [2]*Disk
	defer func() {
		for _, d := range disks {
			if d != nil {
				err = errors.Join(err, d.Close())
			}
		}
	}()
	for i, n := range []string{"ra.img", "rb.img"} {
		if disks[i], err = NewDisk(r.ctx, r.dir, n, r.p.ResyncSize); err != nil {
			return err
		}
	}
	// Data that is not all zeros on the source, written once.
	fill := FioJob{Name: "fill", Engine: EngineLibaio, Target: disks[0].Dev, RW: "write", BS: 1 << 20, IODepth: 4,
		NumJobs: 1, Size: r.p.ResyncSize, Runtime: 0}
	if err := fillDevice(r.ctx, r.p.Fio, r.dir, fill); err != nil {
		return err
	}
	for rep := 1; rep <= r.p.Repeat; rep++ {
		if r.p.QuietWait > 0 {
			WaitQuiet(r.ctx, r.p.QuietBusy, r.p.QuietWait)
		}
		cp, err := copyDevice(r.ctx, disks[0].Dev, disks[1].Dev, r.p.ResyncSize)
		if err != nil {
			return err
		}
		cp.Rep = rep
		r.res.Copies = append(r.res.Copies, cp)
		r.logf("rep %d  dd copy %d MiB: %.0f MiB/s", rep, cp.Bytes>>20, float64(cp.Bytes)/(1<<20)/cp.Wall.Seconds())
		for _, c := range r.resyncCases() {
			if err := r.resyncPoint(rep, c, disks); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *runner) resyncPoint(rep int, c ResyncCase, disks [2]*Disk) (err error) {
	if r.p.QuietWait > 0 {
		WaitQuiet(r.ctx, r.p.QuietBusy, r.p.QuietWait)
	}
	pdir, err := os.MkdirTemp(r.dir, "r")
	if err != nil {
		return err
	}
	defer os.RemoveAll(pdir)
	p, err := StartPair(r.ctx, r.p.Gdrbd, pdir, disks, c.Config)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	var app *FioJob
	if c.Load {
		j := Rand4kJ1.Job(EngineNBD, "", r.p.ResyncSize-8<<20, r.p.AppRuntime)
		app = &j
	}
	res, err := p.FullSync(r.ctx, r.p.Fio, app, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("resync %s: %w", c.Key, err)
	}
	pt := ResyncPoint{Rep: rep, Case: c, Result: res}
	if c.Load {
		j := *app
		j.Target = p.URI()
		alone, err := RunFio(r.ctx, r.p.Fio, r.dir, j)
		if err != nil {
			return err
		}
		pt.AppAlone = &alone
	}
	r.res.Resyncs = append(r.res.Resyncs, pt)
	line := fmt.Sprintf("rep %d  resync %-16s %7.1f MiB/s (log: %s), proc recent median %.0f K/sec, want %.0f",
		rep, c.Key, res.Log.Rate()/1024, res.Log.DoneLine, res.MedianRecent(), res.MedianWant())
	if pt.AppAlone != nil && res.App != nil {
		line += fmt.Sprintf(", app %.0f IOPS during vs %.0f alone", res.App.IOPS, pt.AppAlone.IOPS)
	}
	r.logf("%s", line)
	return nil
}

// fillDevice writes the whole device once with fio's (non-zero) buffers.
func fillDevice(ctx context.Context, fio, dir string, j FioJob) error {
	out := filepath.Join(dir, "fill.json")
	args := j.Args(out)
	// Not time based: exactly one pass over Size.
	var keep []string
	for _, a := range args {
		if a != "--time_based" && !strings.HasPrefix(a, "--runtime=") {
			keep = append(keep, a)
		}
	}
	if msg, err := exec.CommandContext(ctx, fio, keep...).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: filling %s: %w: %s", ErrFio, j.Target, err, lastLines(string(msg), 5))
	}
	os.Remove(out)
	return nil
}

// copyDevice copies size bytes from src to dst with dd, 1 MiB direct I/O
// both ways, and an fdatasync at the end: what the resync has to beat.
func copyDevice(ctx context.Context, src, dst string, size int64) (CopyPoint, error) {
	n := size >> 20
	argv := []string{"dd", "if=" + src, "of=" + dst, "bs=1M", fmt.Sprintf("count=%d", n),
		"iflag=direct", "oflag=direct", "conv=fdatasync", "status=none"}
	t0 := time.Now()
	if msg, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return CopyPoint{}, fmt.Errorf("%w: %v: %w: %s", ErrSetup, argv, err, msg)
	}
	return CopyPoint{Bytes: n << 20, Wall: time.Since(t0), Argv: argv}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
