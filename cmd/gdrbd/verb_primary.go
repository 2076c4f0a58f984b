package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "primary",
		Args:    "RES|all [--force]",
		Summary: "promote: the volume is served over NBD (--force: even without UpToDate data)",
		Run:     runPrimary,
	})
}

func runPrimary(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("primary", flag.ContinueOnError)
	force := fs.Bool("force", false, "promote even without UpToDate data (initial sync source)")
	overwrite := fs.Bool("overwrite-data-of-peer", false, "old name of --force")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	return adminOp(env, "primary", pos, control.OpPrimary, func(r *control.Request) { r.Force = *force || *overwrite })
}
