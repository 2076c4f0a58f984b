package main

import (
	"flag"
	"io"
)

// parseVerbFlags parses a verb's own flags, allowing them before, between
// and after positional arguments (as drbdadm does), and returns the
// positionals.
func parseVerbFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
