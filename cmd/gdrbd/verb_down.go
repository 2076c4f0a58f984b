package main

import (
	"errors"
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "down",
		Args:    "RES|all",
		Summary: "demote, disconnect, detach (metadata clean) and forget the resource; the daemon exits after the last one",
		Run:     runDown,
	})
}

// runDown takes resources down. A resource that is not up (or no daemon
// at all) is already down: success, as drbdsetup down.
func runDown(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	return forTargets(env, pos, func(t resourceTarget) error {
		resp, err := call(ctx, env, newRequest(env, control.OpDown, t))
		if errors.Is(err, control.ErrNoDaemon) {
			return nil
		}
		if err == nil {
			err = resp.Err()
		}
		if err != nil {
			return failure(env, "down", t, err)
		}
		return nil
	})
}
