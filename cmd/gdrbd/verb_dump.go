package main

import (
	"flag"

	"github.com/gdrbd/gdrbd/config"
)

func init() {
	register(&verb{
		Name:    "dump",
		Args:    "[RES|all ...] [--json]",
		Summary: "print the normalized configuration (as drbdadm -d dump; --json: every effective value)",
		Run:     runDump,
	})
}

// runDump prints the configuration like `drbdadm-84 -d dump`: without
// arguments or with "all", the file name, global, common and every
// resource (also those this node has no section in, marked "ignored");
// with resource names, only those resources, which must be configured on
// this node.
func runDump(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print every effective value as JSON")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	var sel []*config.Resource // nil: everything, with the header
	if len(pos) > 0 && !(len(pos) == 1 && pos[0] == "all") {
		targets, err := selectTargets(env, cfg, pos)
		if err != nil {
			return err
		}
		for _, t := range targets {
			sel = append(sel, t.Res)
		}
	}
	if *asJSON {
		return cfg.WriteJSON(env.Stdout, sel)
	}
	return cfg.WriteDump(env.Stdout, sel)
}
