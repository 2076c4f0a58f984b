package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "up",
		Args:    "RES|all [--primary] [--force] [--discard-my-data]",
		Summary: "start the daemon if needed, attach the disk and connect to the peer (--primary: and promote)",
		Run:     runUp,
	})
}

// runUp is drbdadm up (attach + connect). --primary promotes as well; on
// metadata fresh from create-md that promotion is forced, as the first
// `primary --force` of a new pair is.
func runUp(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	primary := fs.Bool("primary", false, "promote after connecting")
	force := fs.Bool("force", false, "with --primary: force the promotion (the local data becomes the truth)")
	discard := fs.Bool("discard-my-data", false, "connect as split-brain victim")
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
	return adminOp(env, "up", pos, control.OpUp, func(r *control.Request) {
		r.Primary, r.Force, r.DiscardMyData = *primary, *force, *discard
	})
}
