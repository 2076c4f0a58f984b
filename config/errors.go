package config

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error Load, Parse and Config.Resource return wraps
// exactly one of them, so callers branch with errors.Is and never on text.
var (
	// ErrSyntax: the file does not follow the drbd.conf grammar (drbdadm-84
	// stops at the first such error).
	ErrSyntax = errors.New("config: syntax error")
	// ErrInvalid: the file parses but is not a usable configuration
	// (conflicting minors or addresses, missing keywords, values out of
	// range, unknown enum values, ...).
	ErrInvalid = errors.New("config: invalid configuration")
	// ErrNotDefined: a resource name that no resource section defines.
	ErrNotDefined = errors.New("config: resource not defined")
	// ErrNotOnThisHost: the resource exists but has no host section for
	// this node, so there is nothing to run here.
	ErrNotOnThisHost = errors.New("config: resource not defined for this host")
	// ErrIO: reading the file or one of its includes failed.
	ErrIO = errors.New("config: cannot read")
)

// Position is a place in a configuration file. Line and Col are 1-based;
// Col counts bytes, as the Go tools do.
//
// A Position is a value; it is safe for concurrent use.
type Position struct {
	File string
	Line int
	Col  int
}

func (p Position) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return "-"
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in a configuration, with the place it was found and,
// for conflicts, the place of the earlier definition it conflicts with.
//
// An Error is immutable after Load returns; it is safe for concurrent use.
type Error struct {
	Pos Position
	Msg string
	// First is where the conflicting earlier use is (zero if none).
	First Position
	kind  error // ErrSyntax, ErrInvalid or ErrIO
	// beyondParser marks checks drbdadm-84's parser does not make but the
	// rest of DRBD 8.4 does (drbdsetup's option parsing, drbd_limits.h
	// ranges, the kernel's minor and volume limits, address resolution):
	// drbdadm dump accepts such a file, drbdadm up fails on it.
	beyondParser bool
}

func (e *Error) Error() string {
	if e.First.Line != 0 {
		return fmt.Sprintf("%s: %s (first used at %s)", e.Pos, e.Msg, e.First)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// Unwrap returns the sentinel that classifies the error.
func (e *Error) Unwrap() error { return e.kind }

// ErrorList is every problem found in one configuration. drbdadm-84 reports
// all semantic problems of a file before giving up, and so does gdrbd;
// syntax errors stop parsing, so a list holds at most one of those.
//
// An ErrorList is immutable after Load returns; it is safe for concurrent use.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.Is and errors.As see every member.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// NotDefinedError says a requested resource does not exist, and which do.
//
// It is immutable; safe for concurrent use.
type NotDefinedError struct {
	Name    string
	File    string
	Defined []string
}

func (e *NotDefinedError) Error() string {
	return fmt.Sprintf("resource '%s' not defined in %s (defined: %s)", e.Name, e.File, strings.Join(e.Defined, ", "))
}

// Unwrap returns ErrNotDefined.
func (e *NotDefinedError) Unwrap() error { return ErrNotDefined }

// NotOnThisHostError says a resource has no host section selected for this
// node, and lists the host names its sections do name, so a misspelled
// `on` name or a wrong --node is obvious.
//
// It is immutable; safe for concurrent use.
type NotOnThisHostError struct {
	Resource string
	Node     string
	Hosts    []string
	Pos      Position // the resource section
}

func (e *NotOnThisHostError) Error() string {
	return fmt.Sprintf("%s: resource '%s' has no 'on %s' section for this node (its hosts: %s)",
		e.Pos, e.Resource, e.Node, strings.Join(e.Hosts, ", "))
}

// Unwrap returns ErrNotOnThisHost.
func (e *NotOnThisHostError) Unwrap() error { return ErrNotOnThisHost }

// errorf builds a positioned error of the given kind.
func errorf(kind error, pos Position, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...), kind: kind}
}
