package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/status"
)

// The administrative verbs ask the daemon over the control socket and
// answer as drbdadm 8.4 does: drbdadm runs drbdsetup-84, whose messages
// name the minor (or the resource) and whose exit codes scripts such as
// heartbeat's drbddisk rely on (user/v84/drbdsetup.c print_config_error).

// drbdsetup's exit codes.
const (
	exitFailure     = 10 // a "Failure: (NNN)" from the kernel
	exitStateChange = 11 // a refused state change
	exitTimeout     = 5  // wait-connect / wait-sync timed out
	exitNoUpToDate  = 17 // SS_NO_UP_TO_DATE_DISK
	exitLowerThanOD = 5  // SS_LOWER_THAN_OUTDATED
	exitNoLocalDisk = 16 // SS_NO_LOCAL_DISK
)

// DRBD's ERR_MINOR_INVALID: the kernel has no such minor.
const errMinorInvalid = 127

// stateExit maps DRBD's SS_* code to drbdsetup's exit code.
func stateExit(code int32) int {
	switch code {
	case -2:
		return exitNoUpToDate
	case -16:
		return exitLowerThanOD
	case -4:
		return exitNoLocalDisk
	}
	return exitStateChange
}

// signalContext is cancelled by SIGINT/SIGTERM, so a waiting verb ends
// (and its request in the daemon with it) on Ctrl-C.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// call sends one request to the daemon of env's run dir.
func call(ctx context.Context, env *cliEnv, req *control.Request) (*control.Response, error) {
	return control.Do(ctx, socketPath(env.RunDir), req)
}

// callStarting sends a request that may create a resource: a daemon
// caught exiting (after its last down) turns it away, so wait until it is
// gone, start a new one and ask again.
func callStarting(ctx context.Context, env *cliEnv, req *control.Request) (*control.Response, error) {
	for range 3 {
		resp, err := call(ctx, env, req)
		if err != nil || resp.Kind != control.KindStopping {
			return resp, err
		}
		for i := 0; i < 100 && control.Alive(socketPath(env.RunDir), time.Second); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if err := ensureDaemon(env); err != nil {
			return nil, err
		}
	}
	return call(ctx, env, req)
}

// newRequest fills in what every request about t carries.
func newRequest(env *cliEnv, op control.Op, t resourceTarget) *control.Request {
	p, err := filepath.Abs(env.ConfigPath)
	if err != nil {
		p = env.ConfigPath
	}
	return &control.Request{Op: op, Resource: t.Res.Name, ConfigPath: p, Node: nodeName(env)}
}

// setupCmd is the drbdsetup-84 command line drbdadm would have run for
// the verb, for drbdadm's "Command '...' terminated" line. Minor
// commands name the minor, resource commands the resource.
func setupCmd(verb string, t resourceTarget) string {
	switch verb {
	case "up", "adjust", "connect", "down", "status":
		if verb == "up" || verb == "adjust" {
			verb = "attach"
			return "drbdsetup-84 " + verb + " " + minorName(t)
		}
		return "drbdsetup-84 " + verb + " " + t.Res.Name
	case "disconnect":
		if t.Res.Local != nil && t.Res.Peer != nil {
			return fmt.Sprintf("drbdsetup-84 disconnect %s:%s %s:%s", t.Res.Local.Address.Family,
				hostPort(t.Res.Local.Address), t.Res.Peer.Address.Family, hostPort(t.Res.Peer.Address))
		}
		return "drbdsetup-84 disconnect " + t.Res.Name
	}
	return "drbdsetup-84 " + verb + " " + minorName(t)
}

func hostPort(a config.Address) string {
	if a.Family == "ipv6" {
		return "[" + a.Host + "]:" + strconv.Itoa(a.Port)
	}
	return a.Host + ":" + strconv.Itoa(a.Port)
}

// minorName is the object drbdsetup names in its messages: the minor of
// the (first) volume.
func minorName(t resourceTarget) string {
	if t.Vol != nil {
		return strconv.Itoa(t.Vol.Minor)
	}
	if len(t.Res.Volumes) > 0 {
		return strconv.Itoa(t.Res.Volumes[0].Minor)
	}
	return t.Res.Name
}

// failure prints what drbdsetup (and drbdadm after it) print for a failed
// request, and returns the exit code to use.
func failure(env *cliEnv, verb string, t resourceTarget, err error) error {
	obj := minorName(t)
	switch verb {
	case "connect", "disconnect", "down":
		obj = t.Res.Name
	}
	var text string
	code := exitFailure
	var ce *control.Error
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		text = fmt.Sprintf("%s: Failure: (%d) Device minor not allocated\nadditional info from kernel:\nunknown minor\n", obj, errMinorInvalid)
	case errors.As(err, &ce):
		switch ce.Kind {
		case control.KindStateChange:
			code = stateExit(ce.StateCode)
			text = fmt.Sprintf("%s: State change failed: (%d) %s\n", obj, ce.StateCode, ce.Msg)
		case control.KindNoResource:
			text = fmt.Sprintf("%s: Failure: (%d) Device minor not allocated\nadditional info from kernel:\nunknown minor\n", obj, errMinorInvalid)
		case control.KindTimeout:
			code = exitTimeout
			text = ce.Msg + "\n"
		default:
			if ce.StateCode > 0 {
				text = fmt.Sprintf("%s: Failure: (%d) %s\n", obj, ce.StateCode, ce.Msg)
			} else {
				text = fmt.Sprintf("%s: Failure: %s\n", obj, ce.Msg)
			}
		}
	default:
		text = fmt.Sprintf("%s: %v\n", obj, err)
		code = 20
	}
	fmt.Fprint(env.Stderr, text)
	if env.AsDrbdadm && code >= 10 {
		fmt.Fprintf(env.Stderr, "Command '%s' terminated with exit code %d\n", setupCmd(verb, t), code)
	}
	return silent(code)
}

// forTargets runs fn for every target and returns the highest exit code
// (drbdadm goes on with the next resource after a failure below 20).
func forTargets(env *cliEnv, pos []string, fn func(t resourceTarget) error) error {
	_, targets, err := loadTargets(env, pos)
	if err != nil {
		return err
	}
	var worst error
	worstCode := 0
	for _, t := range targets {
		err := fn(t)
		if err == nil {
			continue
		}
		code := exitCodeOf(err)
		if code >= 20 {
			return err
		}
		if code > worstCode {
			worst, worstCode = err, code
		}
	}
	return worst
}

func exitCodeOf(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return 20
	}
	return 10
}

// simpleVerb registers a verb that sends op for each RES|all argument.
func simpleVerb(name, summary string, op control.Op) {
	register(&verb{Name: name, Args: "RES|all", Summary: summary, Run: func(env *cliEnv, args []string) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		pos, err := parseVerbFlags(fs, args)
		if err != nil {
			return err
		}
		return adminOp(env, name, pos, op, nil)
	}})
}

// adminOp sends op for each target, with set filling in options, and
// reports failures as drbdadm does.
func adminOp(env *cliEnv, name string, pos []string, op control.Op, set func(*control.Request)) error {
	ctx, cancel := signalContext()
	defer cancel()
	return forTargets(env, pos, func(t resourceTarget) error {
		req := newRequest(env, op, t)
		if set != nil {
			set(req)
		}
		send := call
		if op == control.OpUp || op == control.OpAttach || op == control.OpConnect {
			send = callStarting
		}
		resp, err := send(ctx, env, req)
		if err == nil {
			err = resp.Err()
		}
		if err != nil {
			return failure(env, name, t, err)
		}
		for _, n := range resp.Notes {
			fmt.Fprintln(env.Stdout, n)
		}
		return nil
	})
}

// volumesOf asks the daemon for t's volumes: nil when it does not hold
// the resource (or no daemon runs).
func volumesOf(ctx context.Context, env *cliEnv, t resourceTarget) ([]status.Volume, error) {
	resp, err := call(ctx, env, newRequest(env, control.OpStatus, t))
	if errors.Is(err, control.ErrNoDaemon) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ce *control.Error
	if err := resp.Err(); err != nil {
		if errors.As(err, &ce) && ce.Kind == control.KindNoResource {
			return nil, nil
		}
		return nil, err
	}
	if t.Vol == nil {
		return resp.Volumes, nil
	}
	var out []status.Volume
	for _, v := range resp.Volumes {
		if v.Volume == t.Vol.Number {
			out = append(out, v)
		}
	}
	return out, nil
}

// daemonHolds reports whether the daemon of env's run dir holds res:
// the metadata verbs must then keep their hands off its disks.
func daemonHolds(env *cliEnv, res string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	resp, err := call(ctx, env, &control.Request{Op: control.OpStatus, Resource: res})
	return err == nil && resp.Kind == 0
}

// inUseError is the refusal of an offline verb on a resource that is up.
func inUseError(env *cliEnv, res string) error {
	return withExit(20, &deviceInUse{prog: progName(env), res: res})
}

// deviceInUse says which command frees the device. Its text starts with a
// capital, as DRBD's messages do.
type deviceInUse struct{ prog, res string }

func (e *deviceInUse) Error() string {
	return fmt.Sprintf("Device is in use by the gdrbd daemon; run '%s down %s' first", e.prog, e.res)
}
