package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "adjust",
		Args:    "RES|all",
		Summary: "bring up what is configured but not up (resources that are up keep their settings)",
		Run:     runAdjust,
	})
}

// runAdjust is a minimal drbdadm adjust: it ups every selected resource
// the daemon does not hold. Changing the settings of a running resource
// is not supported; `down` and `up` apply a changed configuration.
func runAdjust(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("adjust", flag.ContinueOnError)
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	daemonUp := false
	return forTargets(env, pos, func(t resourceTarget) error {
		vols, err := volumesOf(ctx, env, t)
		if err != nil {
			return failure(env, "adjust", t, err)
		}
		if len(vols) > 0 {
			return nil
		}
		if !daemonUp {
			if err := ensureDaemon(env); err != nil {
				return withExit(20, err)
			}
			daemonUp = true
		}
		resp, err := callStarting(ctx, env, newRequest(env, control.OpUp, t))
		if err == nil {
			err = resp.Err()
		}
		if err != nil {
			return failure(env, "adjust", t, err)
		}
		return nil
	})
}
