package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// ErrFio is wrapped by every failure to run fio or read its report.
var ErrFio = errors.New("bench: fio")

// Engine is the fio I/O engine of a job. A plain value.
type Engine int

// The engines the matrix uses: nbd for every NBD server (gdrbd, nbdkit,
// qemu-nbd), libaio and psync straight at a block device or file.
const (
	EngineNBD Engine = 1 + iota
	EngineLibaio
	EnginePsync
)

func (e Engine) String() string {
	switch e {
	case EngineNBD:
		return "nbd"
	case EngineLibaio:
		return "libaio"
	case EnginePsync:
		return "psync"
	}
	return fmt.Sprintf("Engine(%d)", int(e))
}

// FioJob is one fio run: a workload against one target. A plain value.
type FioJob struct {
	Name    string
	Engine  Engine
	Target  string // NBD URI for EngineNBD, else a file or block device
	RW      string // randwrite, write, randrw, ...
	BS      int64  // block size in bytes
	IODepth int
	NumJobs int // each job its own NBD connection (multi-conn)
	// Size is the region written, from offset 0; with NumJobs > 1 and a
	// sequential RW every job gets its own Size/NumJobs slice, so that
	// the jobs write sequentially side by side.
	Size    int64
	Runtime time.Duration
	Ramp    time.Duration // ramp_time: not counted
	Fsync   bool          // fsync (NBD FLUSH) after every write
}

// Args returns fio's command line for the job, reporting JSON to out.
func (j FioJob) Args(out string) []string {
	numjobs := max(j.NumJobs, 1)
	a := []string{
		"--name=" + j.Name,
		"--ioengine=" + j.Engine.String(),
		"--rw=" + j.RW,
		"--bs=" + strconv.FormatInt(j.BS, 10),
		"--iodepth=" + strconv.Itoa(max(j.IODepth, 1)),
		"--numjobs=" + strconv.Itoa(numjobs),
		"--group_reporting",
		"--time_based",
		"--runtime=" + strconv.FormatInt(max(int64(j.Runtime/time.Millisecond), 1), 10) + "ms",
		"--randrepeat=0",
		"--output-format=json",
		"--output=" + out,
	}
	size := j.Size
	if numjobs > 1 && (j.RW == "write" || j.RW == "read") {
		size = j.Size / int64(numjobs) / j.BS * j.BS
		a = append(a, "--offset_increment="+strconv.FormatInt(size, 10))
	}
	a = append(a, "--size="+strconv.FormatInt(size, 10))
	if j.Ramp > 0 {
		a = append(a, "--ramp_time="+strconv.FormatInt(int64(j.Ramp/time.Millisecond), 10)+"ms")
	}
	if j.Fsync {
		a = append(a, "--fsync=1")
	}
	switch j.Engine {
	case EngineNBD:
		a = append(a, "--uri="+j.Target)
	default:
		a = append(a, "--filename="+j.Target, "--direct=1")
	}
	return a
}

// FioResult is what the tables need from fio's JSON report. Latencies are
// completion latencies (clat: submission to completion) of the writes;
// Sync* are the fsync (NBD FLUSH) latencies when the job had Fsync. A
// plain value.
type FioResult struct {
	IOPS      float64
	BW        float64 // bytes/s
	Ops       int64   // writes completed
	WriteP50  time.Duration
	WriteP99  time.Duration
	WriteMean time.Duration
	SyncP50   time.Duration
	SyncP99   time.Duration
	SyncOps   int64
	UsrCPU    float64 // fio's own CPU, % of one CPU per job
	SysCPU    float64
	Runtime   time.Duration
	Command   []string // fio and its arguments, as run
}

// fioReport mirrors the part of fio's --output-format=json we read.
type fioReport struct {
	Jobs []struct {
		Error  int     `json:"error"`
		Write  fioDir  `json:"write"`
		Sync   fioSync `json:"sync"`
		UsrCPU float64 `json:"usr_cpu"`
		SysCPU float64 `json:"sys_cpu"`
	} `json:"jobs"`
}

type fioDir struct {
	IOPS     float64 `json:"iops"`
	BW       float64 `json:"bw_bytes"`
	TotalIOs int64   `json:"total_ios"`
	Runtime  int64   `json:"runtime"` // ms
	Clat     fioLat  `json:"clat_ns"`
}

type fioSync struct {
	TotalIOs int64  `json:"total_ios"`
	Lat      fioLat `json:"lat_ns"`
}

type fioLat struct {
	Mean       float64            `json:"mean"`
	Percentile map[string]float64 `json:"percentile"`
}

func (l fioLat) pct(p string) time.Duration { return time.Duration(l.Percentile[p]) }

// ParseFio reads fio's JSON report of a group_reporting run (one job).
func ParseFio(b []byte) (FioResult, error) {
	var r fioReport
	if err := json.Unmarshal(b, &r); err != nil {
		return FioResult{}, fmt.Errorf("%w: report: %w", ErrFio, err)
	}
	if len(r.Jobs) != 1 {
		return FioResult{}, fmt.Errorf("%w: report has %d jobs, want 1 (group_reporting)", ErrFio, len(r.Jobs))
	}
	j := r.Jobs[0]
	if j.Error != 0 {
		return FioResult{}, fmt.Errorf("%w: job error %d", ErrFio, j.Error)
	}
	const p50, p99 = "50.000000", "99.000000"
	return FioResult{
		IOPS:      j.Write.IOPS,
		BW:        j.Write.BW,
		Ops:       j.Write.TotalIOs,
		WriteP50:  j.Write.Clat.pct(p50),
		WriteP99:  j.Write.Clat.pct(p99),
		WriteMean: time.Duration(j.Write.Clat.Mean),
		SyncP50:   j.Sync.Lat.pct(p50),
		SyncP99:   j.Sync.Lat.pct(p99),
		SyncOps:   j.Sync.TotalIOs,
		UsrCPU:    j.UsrCPU,
		SysCPU:    j.SysCPU,
		Runtime:   time.Duration(j.Write.Runtime) * time.Millisecond,
	}, nil
}

// RunFio runs the job with the fio at path (fio's report goes to a file
// in dir: the nbd engine prints to stdout, which would corrupt it).
func RunFio(ctx context.Context, fio, dir string, j FioJob) (FioResult, error) {
	out := filepath.Join(dir, "fio-"+j.Name+".json")
	args := j.Args(out)
	cmd := exec.CommandContext(ctx, fio, args...)
	cmd.WaitDelay = 5 * time.Second
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return FioResult{}, fmt.Errorf("%w %v: %w: %s", ErrFio, args, err, lastLines(string(msg), 5))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return FioResult{}, fmt.Errorf("%w: %w", ErrFio, err)
	}
	os.Remove(out)
	r, err := ParseFio(b)
	if err != nil {
		return r, fmt.Errorf("%w (%s)", err, lastLines(string(msg), 5))
	}
	if r.Ops == 0 {
		return r, fmt.Errorf("%w %v: no write completed: %s", ErrFio, args, lastLines(string(msg), 5))
	}
	r.Command = append([]string{"fio"}, args...)
	return r, nil
}
