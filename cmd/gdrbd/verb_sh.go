package main

import (
	"flag"
	"fmt"
	"strings"
)

// The sh-* verbs answer from the configuration alone, for shell scripts
// (drbddisk asks sh-dev and sh-minor).
func init() {
	register(&verb{Name: "sh-dev", Args: "RES|all", Summary: "print the device of each volume", Run: shVerb("sh-dev")})
	register(&verb{Name: "sh-minor", Args: "RES|all", Summary: "print the minor of each volume", Run: shVerb("sh-minor")})
	register(&verb{Name: "sh-resources", Summary: "print the names of this node's resources on one line", Run: runShResources})
}

func shVerb(name string) func(env *cliEnv, args []string) error {
	return func(env *cliEnv, args []string) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		pos, err := parseVerbFlags(fs, args)
		if err != nil {
			return err
		}
		return forTargets(env, pos, func(t resourceTarget) error {
			for _, v := range t.Res.Volumes {
				if t.Vol != nil && v.Number != t.Vol.Number {
					continue
				}
				if name == "sh-dev" {
					fmt.Fprintln(env.Stdout, v.Device)
				} else {
					fmt.Fprintln(env.Stdout, v.Minor)
				}
			}
			return nil
		})
	}
}

// runShResources prints drbdadm's sh-resources: the names of the
// resources this node has a section in, separated by spaces. Resource
// arguments are ignored, as drbdadm says.
func runShResources(env *cliEnv, args []string) error {
	if len(args) > 0 {
		fmt.Fprintln(env.Stderr, "This command will ignore resource names!")
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	var names []string
	for _, r := range cfg.Local() {
		names = append(names, r.Name)
	}
	if len(names) > 0 {
		fmt.Fprintln(env.Stdout, strings.Join(names, " "))
	}
	return nil
}
