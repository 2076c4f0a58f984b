package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "connect",
		Args:    "RES|all [--discard-my-data]",
		Summary: "connect to the peer (starts the daemon and creates the resource if needed)",
		Run:     runConnect,
	})
}

func runConnect(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	discard := fs.Bool("discard-my-data", false, "resolve a split brain by giving up this node's changes")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	if _, _, err := loadTargets(env, pos); err != nil {
		return err
	}
	if err := ensureDaemon(env); err != nil {
		return withExit(20, err)
	}
	return adminOp(env, "connect", pos, control.OpConnect, func(r *control.Request) { r.DiscardMyData = *discard })
}
