// Command gdrbd is the userspace DRBD: drbdadm's verbs, the node daemon,
// and (invoked as "drbdadm") a drop-in for cluster scripts.
//
// main only parses the command line, dispatches to a verb and maps the
// verb's error to an exit code. Each verb lives in its own verb_*.go file
// and registers itself in init.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// verb is one subcommand. Run gets the arguments after the verb with the
// global options removed.
type verb struct {
	Name    string
	Args    string // usage after the verb name, e.g. "RES|all"
	Summary string
	Run     func(env *cliEnv, args []string) error
	// Hidden verbs are not listed in --help (internal helpers).
	Hidden bool
}

var verbs = map[string]*verb{}

func register(v *verb) {
	if _, dup := verbs[v.Name]; dup {
		panic("gdrbd: verb registered twice: " + v.Name)
	}
	verbs[v.Name] = v
}

// cliEnv carries the global options and the output streams to verbs.
type cliEnv struct {
	ConfigPath string // --config / -c, default /etc/drbd.conf
	Node       string // --node, default uname -n
	RunDir     string // --run-dir, default /run/gdrbd
	AsDrbdadm  bool   // invoked as drbdadm (argv[0])
	Stdout     io.Writer
	Stderr     io.Writer
	Stdin      io.Reader
}

// exitError carries a specific process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit wraps err so main exits with code.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks a command-line mistake (exit code 20, as drbdadm uses
// for usage errors).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

func main() {
	env := &cliEnv{
		ConfigPath: "/etc/drbd.conf",
		RunDir:     "/run/gdrbd",
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Stdin:      os.Stdin,
	}
	if v := os.Getenv("GDRBD_CONFIG"); v != "" {
		env.ConfigPath = v
	}
	if v := os.Getenv("GDRBD_RUN_DIR"); v != "" {
		env.RunDir = v
	}
	if v := os.Getenv("GDRBD_NODE"); v != "" {
		env.Node = v
	}
	env.AsDrbdadm = filepath.Base(os.Args[0]) == "drbdadm"
	os.Exit(run(env, os.Args[1:]))
}

// run executes one command line and returns the exit code.
func run(env *cliEnv, argv []string) int {
	args, err := parseGlobal(env, argv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", progName(env), err)
		return 20
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		printHelp(env)
		if len(args) == 0 {
			return 20
		}
		return 0
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "%s: unknown command '%s'\n", progName(env), args[0])
		if near := nearestVerb(args[0]); near != "" {
			fmt.Fprintf(env.Stderr, "did you mean '%s'?\n", near)
		}
		return 20
	}
	if env.Node == "" {
		env.Node = hostname()
	}
	err = v.Run(env, args[1:])
	return exitCode(env, err)
}

func exitCode(env *cliEnv, err error) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "%s: %v\n", progName(env), err)
		return 20
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(env.Stderr, "%s: %v\n", progName(env), ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", progName(env), err)
	return 10
}

func progName(env *cliEnv) string {
	if env.AsDrbdadm {
		return "drbdadm"
	}
	return "gdrbd"
}

// parseGlobal removes the global options from argv, wherever they appear
// (drbdadm permutes its options the same way).
func parseGlobal(env *cliEnv, argv []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			rest = append(rest, argv[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(a, "=")
		var dst *string
		switch name {
		case "--config", "-c", "--config-file":
			dst = &env.ConfigPath
		case "--node":
			dst = &env.Node
		case "--run-dir":
			dst = &env.RunDir
		default:
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("option %s needs a value", name)
			}
			i++
			val = argv[i]
		}
		*dst = val
	}
	return rest, nil
}

func hostname() string {
	// uname -n is the kernel's nodename; os.Hostname reads the same.
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

func printHelp(env *cliEnv) {
	fmt.Fprintf(env.Stdout, "usage: %s [--config FILE] [--node NAME] [--run-dir DIR] COMMAND [ARGS]\n\ncommands:\n", progName(env))
	names := make([]string, 0, len(verbs))
	for n, v := range verbs {
		if !v.Hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		v := verbs[n]
		fmt.Fprintf(env.Stdout, "  %-28s %s\n", strings.TrimSpace(n+" "+v.Args), v.Summary)
	}
}

// nearestVerb suggests a registered verb within edit distance 2.
func nearestVerb(s string) string {
	best, bestD := "", 3
	for n := range verbs {
		if d := editDistance(s, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
