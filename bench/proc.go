package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on every Linux
// architecture Go supports).
const clockTick = 10 * time.Millisecond

// Mem is a process's memory from /proc/PID/status. A plain value.
type Mem struct {
	RSS int64 // VmRSS, bytes
	HWM int64 // VmHWM (peak RSS since the process started), bytes
}

// ParseMem reads VmRSS and VmHWM from the text of /proc/PID/status.
func ParseMem(text string) (Mem, error) {
	var m Mem
	var seen int
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("bench: /proc status line %q", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("bench: /proc status line %q: %w", line, err)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.HWM = n << 10
		}
		seen++
	}
	if seen != 2 {
		return m, fmt.Errorf("bench: no VmRSS/VmHWM in /proc status")
	}
	return m, nil
}

// ReadMem is pid's Mem now.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return ParseMem(string(b))
}

// ProcCPU is the CPU time pid has used so far (user + system), from
// /proc/PID/stat; threads included.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %q", pid, s)
	}
	// After the command name: state is field 3; utime, stime 14, 15.
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %q", pid, s)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %q", pid, s)
	}
	return time.Duration(u+st) * clockTick, nil
}

// ProcCounts are a process's cumulative I/O syscalls and context
// switches. A plain value.
type ProcCounts struct {
	// Syscalls is /proc/PID/io's syscr + syscw: read- and write-class
	// system calls (read, pread, readv, write, pwrite, writev, ...).
	Syscalls int64
	// CtxSwitches sums voluntary and involuntary context switches over
	// the process's threads: a goroutine hand-off that parks and wakes an
	// OS thread shows up here.
	CtxSwitches int64
}

// ReadCounts is pid's ProcCounts now.
func ReadCounts(pid int) (ProcCounts, error) {
	var c ProcCounts
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return c, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "syscr" || k == "syscw") {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return c, fmt.Errorf("bench: /proc/%d/io: %q", pid, line)
			}
			c.Syscalls += n
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				c.CtxSwitches += n
			}
		}
	}
	return c, nil
}

// SystemCPU is the machine's busy and total CPU time so far, summed over
// all CPUs, from /proc/stat's first line (busy = everything but idle and
// iowait).
func SystemCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("bench: /proc/stat: %q", line)
	}
	var sum, idle int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc/stat: %q", line)
		}
		if i >= 8 { // guest times are already in user/nice
			break
		}
		sum += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return time.Duration(sum-idle) * clockTick, time.Duration(sum) * clockTick, nil
}

// LoadAvg is /proc/loadavg's 1-minute load.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Usage is what a measured interval cost: the CPU time of the watched
// processes, the machine's busy CPU in total, and the peak memory of the
// watched processes. A plain value.
type Usage struct {
	Wall    time.Duration
	ProcCPU map[int]time.Duration // per watched pid
	Busy    time.Duration         // whole machine, all CPUs
	Total   time.Duration         // whole machine, all CPUs (busy + idle)
	PeakRSS map[int]int64         // max VmRSS seen while sampling
	HWM     map[int]int64         // VmHWM at the end
	Counts  map[int]ProcCounts    // per watched pid, over the interval
}

// OtherBusy is the machine's busy CPU share (0..1 of all CPUs) not spent
// by the watched processes nor by `own` (e.g. fio's CPU, which fio
// reports itself): other people's load during the measurement.
func (u Usage) OtherBusy(own time.Duration) float64 {
	if u.Total <= 0 {
		return 0
	}
	o := u.Busy - own
	for _, c := range u.ProcCPU {
		o -= c
	}
	return max(float64(o)/float64(u.Total), 0)
}

// Meter watches processes over an interval: CPU at start and end, memory
// sampled every 100 ms in between. Start it, run the load, Stop it. Not
// safe for concurrent use (one interval at a time).
type Meter struct {
	pids     []int
	start    time.Time
	cpu0     map[int]time.Duration
	counts0  map[int]ProcCounts
	busy0    time.Duration
	total0   time.Duration
	mu       sync.Mutex
	peak     map[int]int64
	stop     chan struct{}
	sampling sync.WaitGroup
}

// StartMeter begins an interval over pids (0s are ignored).
func StartMeter(pids ...int) *Meter {
	m := &Meter{start: time.Now(), cpu0: map[int]time.Duration{}, counts0: map[int]ProcCounts{}, peak: map[int]int64{}, stop: make(chan struct{})}
	for _, p := range pids {
		if p > 0 {
			m.pids = append(m.pids, p)
		}
	}
	for _, p := range m.pids {
		m.cpu0[p], _ = ProcCPU(p)
		m.counts0[p], _ = ReadCounts(p)
	}
	m.busy0, m.total0, _ = SystemCPU()
	m.sampling.Add(1)
	go func() {
		defer m.sampling.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *Meter) sample() {
	for _, p := range m.pids {
		if mem, err := ReadMem(p); err == nil {
			m.mu.Lock()
			m.peak[p] = max(m.peak[p], mem.RSS)
			m.mu.Unlock()
		}
	}
}

// Stop ends the interval and returns its Usage.
func (m *Meter) Stop() Usage {
	close(m.stop)
	m.sampling.Wait()
	m.sample()
	u := Usage{Wall: time.Since(m.start), ProcCPU: map[int]time.Duration{}, PeakRSS: map[int]int64{}, HWM: map[int]int64{},
		Counts: map[int]ProcCounts{}}
	busy, total, _ := SystemCPU()
	u.Busy, u.Total = busy-m.busy0, total-m.total0
	for _, p := range m.pids {
		c, _ := ProcCPU(p)
		u.ProcCPU[p] = c - m.cpu0[p]
		u.PeakRSS[p] = m.peak[p]
		if c, err := ReadCounts(p); err == nil {
			c0 := m.counts0[p]
			u.Counts[p] = ProcCounts{Syscalls: c.Syscalls - c0.Syscalls, CtxSwitches: c.CtxSwitches - c0.CtxSwitches}
		}
		if mem, err := ReadMem(p); err == nil {
			u.HWM[p] = mem.HWM
		}
	}
	return u
}

// WaitQuiet waits until the machine was less than maxBusy (0..1 of all
// CPUs) busy over one second, or until within has passed; it returns the
// busy share of the last second. Other people's builds and tests share
// this machine: a point started in a quiet second is less disturbed.
func WaitQuiet(ctx context.Context, maxBusy float64, within time.Duration) float64 {
	deadline := time.Now().Add(within)
	for {
		b0, t0, _ := SystemCPU()
		select {
		case <-ctx.Done():
			return -1
		case <-time.After(time.Second):
		}
		b1, t1, _ := SystemCPU()
		share := 0.0
		if t1 > t0 {
			share = float64(b1-b0) / float64(t1-t0)
		}
		if share < maxBusy || time.Now().After(deadline) {
			return share
		}
	}
}
