package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/gdrbd/gdrbd/config"
)

// drbdadm's exit codes for configuration trouble (user/shared/shared_main.h).
const (
	exitUsage         = 1  // E_USAGE: unknown resource, nothing for this host
	exitConfigInvalid = 10 // E_CONFIG_INVALID: the file does not parse or validate
	exitExecError     = 20 // E_EXEC_ERROR: the file cannot be opened
)

// resourceTarget is one resource, or one volume of it, a verb acts on.
type resourceTarget struct {
	Res *config.Resource
	Vol *config.Volume // nil: the whole resource
}

// nodeName is the node host sections are selected for: --node /
// $GDRBD_NODE, else drbdadm's own override $__DRBD_NODE__, else uname -n.
func nodeName(env *cliEnv) string {
	if v := os.Getenv("__DRBD_NODE__"); v != "" && env.Node == hostname() {
		return v
	}
	return env.Node
}

// loadConfig reads env.ConfigPath for this node and prints the
// configuration's warnings. Errors carry drbdadm's exit codes.
func loadConfig(env *cliEnv) (*config.Config, error) {
	cfg, err := config.Load(env.ConfigPath, config.Options{Node: nodeName(env)})
	if err != nil {
		if errors.Is(err, config.ErrIO) && !config.IsInvalid(err) {
			return nil, withExit(exitExecError, err)
		}
		return nil, withExit(exitConfigInvalid, err)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(env.Stderr, "%s: %s\n", progName(env), w)
	}
	return cfg, nil
}

// selectTargets resolves resource arguments the way drbdadm-84 does:
// "all" means every resource this node has a host section in (an error if
// there is none); otherwise each argument is a resource name, RES/VOL, or
// minor-N, and must be configured on this node.
func selectTargets(env *cliEnv, cfg *config.Config, args []string) ([]resourceTarget, error) {
	if len(args) == 0 {
		return nil, usagef("no resource names specified")
	}
	if len(args) == 1 && args[0] == "all" {
		local := cfg.Local()
		if len(local) == 0 {
			msg := fmt.Sprintf("WARN: no normal resources defined for this host (%s)!?", cfg.Node)
			if len(cfg.Resources) > 0 {
				msg += "\nMisspelled name of the local machine with the 'on' keyword ?"
			}
			return nil, withExit(exitUsage, errors.New(msg))
		}
		out := make([]resourceTarget, len(local))
		for i, r := range local {
			out[i] = resourceTarget{Res: r}
		}
		return out, nil
	}
	var out []resourceTarget
	for _, a := range args {
		r, v, err := cfg.Select(a)
		if err != nil {
			return nil, withExit(exitUsage, notDefinedError(a, err))
		}
		out = append(out, resourceTarget{Res: r, Vol: v})
	}
	return out, nil
}

// notDefinedError is drbdadm's message for an argument that names nothing
// on this node, followed by gdrbd's explanation (which resources exist, or
// which hosts the resource names).
func notDefinedError(arg string, err error) error {
	return fmt.Errorf("'%s' not defined in your config (for this host).\n%w", arg, err)
}

// loadTargets loads the configuration and resolves the arguments.
func loadTargets(env *cliEnv, args []string) (*config.Config, []resourceTarget, error) {
	cfg, err := loadConfig(env)
	if err != nil {
		return nil, nil, err
	}
	t, err := selectTargets(env, cfg, args)
	if err != nil {
		return nil, nil, err
	}
	return cfg, t, nil
}
