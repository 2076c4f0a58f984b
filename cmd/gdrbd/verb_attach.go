package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "attach",
		Args:    "RES|all",
		Summary: "attach the backing disk (starts the daemon and creates the resource if needed)",
		Run:     runAttach,
	})
}

func runAttach(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
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
	return adminOp(env, "attach", pos, control.OpAttach, nil)
}
