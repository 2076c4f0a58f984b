package main

import (
	"flag"
	"fmt"

	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/metadata"
)

func init() {
	register(&verb{Name: "role", Args: "RES|all", Summary: "print the roles: Primary/Secondary", Run: stateVerb("role")})
	register(&verb{Name: "cstate", Args: "RES|all", Summary: "print the connection state: Connected", Run: stateVerb("cstate")})
	register(&verb{Name: "dstate", Args: "RES|all", Summary: "print the disk states: UpToDate/UpToDate", Run: stateVerb("dstate")})
}

// stateVerb prints one line per volume as drbdsetup-84 role/cstate/dstate
// do. A resource the daemon does not hold is DRBD's unallocated minor:
// "Failure: (127) Device minor not allocated", exit 10 — except dstate,
// which drbdadm then answers from the metadata (drbdmeta dstate).
func stateVerb(name string) func(env *cliEnv, args []string) error {
	return func(env *cliEnv, args []string) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		pos, err := parseVerbFlags(fs, args)
		if err != nil {
			return err
		}
		ctx, cancel := signalContext()
		defer cancel()
		return forTargets(env, pos, func(t resourceTarget) error {
			vols, err := volumesOf(ctx, env, t)
			if err != nil {
				return failure(env, name, t, err)
			}
			if len(vols) == 0 {
				if name == "dstate" {
					return offlineDState(env, t)
				}
				return failure(env, name, t, &control.Error{Kind: control.KindNoResource})
			}
			for i := range vols {
				v := &vols[i]
				switch name {
				case "role":
					fmt.Fprintln(env.Stdout, v.RoleText())
				case "cstate":
					fmt.Fprintln(env.Stdout, v.CStateText())
				case "dstate":
					fmt.Fprintln(env.Stdout, v.DStateText())
				}
			}
			return nil
		})
	}
}

// offlineDState prints the disk state the metadata records, as drbdmeta
// dstate does: Inconsistent, Outdated, Consistent or UpToDate.
func offlineDState(env *cliEnv, t resourceTarget) error {
	vols, err := mdVolumes(env, []string{targetArg(t)})
	if err != nil {
		return err
	}
	c := newMDCmd(env, false)
	for _, v := range vols {
		md, d, err := c.open(v, false)
		if err != nil {
			return err
		}
		d.Close()
		fmt.Fprintln(env.Stdout, mdDiskState(md.SB.Flags))
	}
	return nil
}

// mdDiskState is drbdmeta's meta_dstate.
func mdDiskState(f metadata.Flags) string {
	switch {
	case f&metadata.FlagConsistent == 0:
		return "Inconsistent"
	case f&metadata.FlagWasUpToDate == 0:
		return "Outdated"
	case f&metadata.FlagPeerOutDated != 0:
		return "UpToDate"
	}
	return "Consistent"
}

// targetArg names t as a command-line argument again.
func targetArg(t resourceTarget) string {
	if t.Vol != nil {
		return fmt.Sprintf("%s/%d", t.Res.Name, t.Vol.Number)
	}
	return t.Res.Name
}
