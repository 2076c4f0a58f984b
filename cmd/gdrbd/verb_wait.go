package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/status"
)

func init() {
	register(&verb{
		Name:    "wait-connect",
		Args:    "RES|all [--timeout SECONDS]",
		Summary: "wait until connected (default timeout: startup wfc-timeout; 0 waits forever)",
		Run:     runWaitConnect,
	})
	register(&verb{
		Name:    "wait-sync",
		Args:    "RES|all [--timeout SECONDS]",
		Summary: "wait until connected and in sync, drawing the resync progress",
		Run:     runWaitSync,
	})
}

// runWaitConnect is drbdsetup wait-connect: exit 5 on timeout.
func runWaitConnect(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("wait-connect", flag.ContinueOnError)
	timeout := fs.Int("timeout", -1, "seconds (0: forever; default: the resource's wfc-timeout)")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	return forTargets(env, pos, func(t resourceTarget) error {
		secs := *timeout
		if secs < 0 {
			secs = int(t.Res.Startup.WFCTimeout / time.Second)
		}
		req := newRequest(env, control.OpWait, t)
		req.Until = control.UntilConnected
		req.TimeoutMs = int64(secs) * 1000
		resp, err := call(ctx, env, req)
		if err == nil {
			err = resp.Err()
		}
		if err != nil {
			return failure(env, "wait-connect", t, err)
		}
		return nil
	})
}

// waitSyncPoll is how often wait-sync redraws its progress line;
// waitSyncLogEvery how often it writes one when not on a terminal.
const (
	waitSyncPoll     = 500 * time.Millisecond
	waitSyncLogEvery = 5 * time.Second
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// runWaitSync waits until each resource is Connected with no resync
// running, showing the resync's progress bar on one redrawn line.
func runWaitSync(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("wait-sync", flag.ContinueOnError)
	timeout := fs.Int("timeout", 0, "seconds (0: forever)")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	var deadline time.Time
	if *timeout > 0 {
		deadline = time.Now().Add(time.Duration(*timeout) * time.Second)
	}
	return forTargets(env, pos, func(t resourceTarget) error {
		tick := time.NewTicker(waitSyncPoll)
		defer tick.Stop()
		// On a terminal one line is redrawn; into a file or pipe a line
		// is written only when it changes, at most every few seconds.
		tty := isTerminal(env.Stdout)
		drawn := false
		last, lastAt := "", time.Time{}
		for {
			vols, err := volumesOf(ctx, env, t)
			if err != nil {
				return failure(env, "wait-sync", t, err)
			}
			if len(vols) == 0 {
				return failure(env, "wait-sync", t, &control.Error{Kind: control.KindNoResource})
			}
			done := true
			line := ""
			for i := range vols {
				v := &vols[i]
				if v.State.Conn != replication.Connected || v.Progress.Running {
					done = false
				}
				line += progressLine(v)
			}
			switch {
			case tty && (drawn || !done):
				fmt.Fprintf(env.Stdout, "\r\033[K%s", line)
				drawn = true
			case !tty && line != last && (done || time.Since(lastAt) >= waitSyncLogEvery):
				fmt.Fprintln(env.Stdout, line)
				last, lastAt = line, time.Now()
			}
			if done {
				if drawn {
					fmt.Fprintln(env.Stdout)
				}
				return nil
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				if drawn {
					fmt.Fprintln(env.Stdout)
				}
				return failure(env, "wait-sync", t, &control.Error{Kind: control.KindTimeout,
					Msg: fmt.Sprintf("%s: timed out waiting for the resync", t.Res.Name)})
			}
			select {
			case <-ctx.Done():
				if drawn {
					fmt.Fprintln(env.Stdout)
				}
				return silent(exitTimeout)
			case <-tick.C:
			}
		}
	})
}

// progressLine is one volume's live line: the /proc/drbd bar, percent,
// sizes, finish time and speed while syncing, else the states.
func progressLine(v *status.Volume) string {
	head := fmt.Sprintf("%s/%d %s %s ", v.Resource, v.Volume, v.State.Conn, v.DStateText())
	if !v.Progress.Running {
		return head
	}
	p := status.ComputeProgress(v)
	what := "sync'ed"
	if v.Progress.Verify {
		what = "verified"
	}
	return head + fmt.Sprintf("%s %s: %d.%d%% (%d/%d)K finish: %d:%02d:%02d speed: %s K/sec ",
		status.ProgressBar(p.PerMil), what, p.PerMil/10, p.PerMil%10, p.LeftBits*4, p.TotalBits*4,
		p.FinishSec/3600, p.FinishSec%3600/60, p.FinishSec%60, status.Thousands(p.AvgKiBs))
}
