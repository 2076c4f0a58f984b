package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ProcSpeed is the resync speed line of /proc/drbd (`status --proc`):
//
//	finish: 0:00:21 speed: 40,960 (40,448) want: 409,600 K/sec
//
// Recent is the speed over the last marks, Avg since the start, Want the
// sync target's controller setting (0 when not shown). KiB/s. A plain value.
type ProcSpeed struct {
	Recent, Avg, Want int64
}

var procSpeedRE = regexp.MustCompile(`speed: ([\d,]+) \(([\d,]+)\)(?: want: ([\d,]+))? K/sec`)

// ParseProcSpeed finds the speed line in `status --proc` output.
func ParseProcSpeed(text string) (ProcSpeed, bool) {
	m := procSpeedRE.FindStringSubmatch(text)
	if m == nil {
		return ProcSpeed{}, false
	}
	num := func(s string) int64 {
		v, _ := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		return v
	}
	return ProcSpeed{Recent: num(m[1]), Avg: num(m[2]), Want: num(m[3])}, true
}

// ResyncLog is what a node's daemon log says about one resync: when it
// began and ended (the log's millisecond timestamps), how much it had to
// sync, and the kernel-style summary line "Resync done (total 25 sec;
// 41940 K/sec)" (whole seconds, as DRBD prints it). A plain value.
type ResyncLog struct {
	Began, Done time.Time
	KiB         int64 // "will sync N KB"
	TotalSec    int64
	LogKiBs     int64 // the K/sec of the done line
	DoneLine    string
}

// Rate is KiB per second between Began and Done (the log timestamps).
func (r ResyncLog) Rate() float64 {
	d := r.Done.Sub(r.Began).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.KiB) / d
}

var (
	beganRE = regexp.MustCompile(`^Began resync as \w+ \(will sync (\d+) KB`)
	doneRE  = regexp.MustCompile(`^Resync done \(total (\d+) sec; (\d+) K/sec\)`)
)

// ParseResyncLog reads a daemon's JSON log (gdrbd.log) and returns the
// last completed resync in it.
func ParseResyncLog(text string) (ResyncLog, error) {
	var cur, last ResyncLog
	found := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			TS    string `json:"ts"`
			Event string `json:"event"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Event == "" {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", e.TS)
		if err != nil {
			continue
		}
		if m := beganRE.FindStringSubmatch(e.Event); m != nil {
			cur = ResyncLog{Began: ts}
			cur.KiB, _ = strconv.ParseInt(m[1], 10, 64)
			continue
		}
		if m := doneRE.FindStringSubmatch(e.Event); m != nil && !cur.Began.IsZero() {
			cur.Done = ts
			cur.TotalSec, _ = strconv.ParseInt(m[1], 10, 64)
			cur.LogKiBs, _ = strconv.ParseInt(m[2], 10, 64)
			cur.DoneLine = e.Event
			last, found = cur, true
			cur = ResyncLog{}
		}
	}
	if !found {
		return last, fmt.Errorf("bench: no completed resync in the log")
	}
	return last, nil
}

// ResyncResult is one measured full initial sync. A plain value.
type ResyncResult struct {
	Log     ResyncLog   // the SyncTarget's log
	Samples []ProcSpeed // the SyncTarget's `status --proc`, once a second
	Usage   Usage       // both daemons over the resync
	App     *FioResult  // the application load run during the resync
}

// MedianRecent is the median of the sampled recent speeds (KiB/s),
// leaving out the first sample (the rate is still ramping up then) and
// samples taken before any progress (speed 0).
func (r ResyncResult) MedianRecent() float64 {
	var xs []float64
	for i, s := range r.Samples {
		if (i == 0 && len(r.Samples) > 2) || s.Recent == 0 {
			continue
		}
		xs = append(xs, float64(s.Recent))
	}
	return Median(xs)
}

// MedianWant is the median controller setting (KiB/s) the target showed,
// leaving out samples taken before its first tick (want 0).
func (r ResyncResult) MedianWant() float64 {
	var xs []float64
	for _, s := range r.Samples {
		if s.Want > 0 {
			xs = append(xs, float64(s.Want))
		}
	}
	return Median(xs)
}

// FullSync promotes a with --force (a becomes SyncSource of a full sync
// to b) and waits until both are UpToDate, sampling b's `status --proc`
// every second. When app is non-nil, that fio job runs against a's export
// from the start of the resync.
func (p *Pair) FullSync(ctx context.Context, fio string, app *FioJob, timeout time.Duration) (ResyncResult, error) {
	var res ResyncResult
	m := StartMeter(p.A.Pid(), p.B.Pid())
	if _, err := p.A.Run(ctx, "primary", "r0", "--force"); err != nil {
		m.Stop()
		return res, err
	}
	appDone := make(chan error, 1)
	if app != nil {
		j := *app
		j.Target = p.URI()
		go func() {
			r, err := RunFio(ctx, fio, p.Dir, j)
			res.App = &r
			appDone <- err
		}()
	} else {
		appDone <- nil
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
	for {
		out, e := p.B.Run(ctx, "status", "r0", "--proc")
		if e == nil {
			if s, ok := ParseProcSpeed(out); ok {
				res.Samples = append(res.Samples, s)
			} else if strings.Contains(out, "ds:UpToDate/UpToDate") {
				break
			}
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("bench: resync not done after %v: %s", timeout, out)
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
		if err != nil {
			break
		}
	}
	res.Usage = m.Stop()
	if aerr := <-appDone; err == nil && aerr != nil {
		err = aerr
	}
	if err != nil {
		return res, err
	}
	if err := p.B.WaitDState(ctx, "UpToDate/UpToDate", 30*time.Second); err != nil {
		return res, err
	}
	b, err := os.ReadFile(filepath.Join(p.B.RunDir, "gdrbd.log"))
	if err != nil {
		return res, fmt.Errorf("bench: the SyncTarget's log: %w", err)
	}
	res.Log, err = ParseResyncLog(string(b))
	return res, err
}
