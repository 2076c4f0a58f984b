package main

import (
	"bytes"
	"flag"
	"fmt"
	"time"

	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/status"
)

func init() {
	register(&verb{
		Name:    "status",
		Args:    "[RES|all] [--proc] [--json] [--watch]",
		Summary: "show the resources the daemon holds (DRBD 9 style; --proc: /proc/drbd; --json)",
		Run:     runStatus,
	})
}

// watchEvery is the redraw interval of status --watch.
const watchEvery = time.Second

func runStatus(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	proc := fs.Bool("proc", false, "print DRBD 8.4's /proc/drbd")
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "redraw every second until interrupted")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	if *proc && *asJSON {
		return usagef("status: --proc and --json exclude each other")
	}
	ctx, cancel := signalContext()
	defer cancel()
	render := func() (string, error) {
		vols, err := statusVolumes(env, pos)
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		switch {
		case *proc:
			err = status.WriteProc(&b, vols)
		case *asJSON:
			err = status.WriteJSON(&b, vols)
		default:
			err = status.WriteDRBD9(&b, vols)
		}
		return b.String(), err
	}
	if !*watch {
		out, err := render()
		fmt.Fprint(env.Stdout, out)
		return err
	}
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		out, err := render()
		if err != nil {
			return err
		}
		// Home the cursor and clear the screen, then draw.
		fmt.Fprintf(env.Stdout, "\033[H\033[2J%s", out)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// statusVolumes collects the volumes to show: all the daemon holds for
// no argument or "all", else the named resources, each of which must be
// up ("r0: No such resource", exit 10, as drbdsetup-84 status).
func statusVolumes(env *cliEnv, pos []string) ([]status.Volume, error) {
	ctx, cancel := signalContext()
	defer cancel()
	if len(pos) == 0 || (len(pos) == 1 && pos[0] == "all") {
		resp, err := call(ctx, env, &control.Request{Op: control.OpStatus})
		if err == control.ErrNoDaemon {
			return nil, nil
		}
		if err != nil {
			return nil, withExit(20, err)
		}
		if err := resp.Err(); err != nil {
			return nil, withExit(20, err)
		}
		return resp.Volumes, nil
	}
	_, targets, err := loadTargets(env, pos)
	if err != nil {
		return nil, err
	}
	var out []status.Volume
	for _, t := range targets {
		vols, err := volumesOf(ctx, env, t)
		if err != nil {
			return nil, withExit(20, err)
		}
		if len(vols) == 0 {
			fmt.Fprintf(env.Stderr, "%s: No such resource\n", t.Res.Name)
			return nil, silent(exitFailure)
		}
		out = append(out, vols...)
	}
	return out, nil
}
