package main

import (
	"errors"
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "shutdown",
		Summary: "take every resource down (metadata clean) and stop the node's daemon",
		Run:     runShutdown,
	})
}

// runShutdown is what SIGTERM to the daemon does, over the socket. No
// daemon running is success.
func runShutdown(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("shutdown", flag.ContinueOnError)
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("shutdown takes no resource names")
	}
	ctx, cancel := signalContext()
	defer cancel()
	resp, err := call(ctx, env, &control.Request{Op: control.OpShutdown})
	if errors.Is(err, control.ErrNoDaemon) {
		return nil
	}
	if err == nil {
		err = resp.Err()
	}
	if err != nil {
		return withExit(20, err)
	}
	return nil
}
