package main

func init() {
	register(&verb{
		Name:    "drbdadm",
		Args:    "VERB [ARGS]",
		Summary: "answer as drbdadm 8.4 does (what a drbdadm symlink to gdrbd does)",
		Hidden:  true,
		Run:     runAsDrbdadm,
	})
}

// runAsDrbdadm runs the rest of the command line as if gdrbd had been
// invoked as drbdadm: drbdadm's program name in messages and drbdsetup's
// "Command '...' terminated with exit code N" lines.
func runAsDrbdadm(env *cliEnv, args []string) error {
	env.AsDrbdadm = true
	if code := run(env, args); code != 0 {
		return silent(code)
	}
	return nil
}
