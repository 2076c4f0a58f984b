package config

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzOptions keeps fuzzing off the file system: includes find nothing and
// no address is local.
func fuzzOptions(node string) Options {
	return Options{
		Node:     node,
		ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist },
		Glob:     func(string) ([]string, error) { return nil, nil },
		HaveIP:   func(string, string) bool { return false },
	}
}

// fuzzSrcMax bounds the configuration FuzzParse parses: bytes past it are
// ignored. It is room for a resource with two hosts and a few options, or
// for the longest token (a double quoted string of 255 units and what
// follows it). The seeds are the corpus files and, without their comments
// and indentation, the smaller ones fit whole (TestCorpus covers the rest).
//
// The bound is for Go's fuzzer, which minimizes every input that reaches
// new coverage, keeping a shorter candidate only if it reaches all of that
// coverage, and that takes up to len²/2 runs of the fuzz function. With a
// corpus-sized input (up to 1.4 KB, 0.2-0.5 ms a run) that kept a worker
// minimizing for up to the 60s -fuzzminimizetime, fuzzing nothing. No
// shorter input kept the coverage often enough because much of it is in
// how often loops ran (per byte of comment or white space, per token in
// the regexps, per call of fmt, per keyword in the suggestions: the 8-bit
// edge counters wrap), and a count is new at its first value in a bucket,
// which then no shorter input reaches. With the bound, the minimizer cuts
// an ignored tail off in a few runs, and what is left costs a few seconds
// at worst.
const fuzzSrcMax = 320

// fuzzNodeMax bounds the node name likewise: no name in a configuration
// (a quoted string of at most 255 bytes) can be longer.
const fuzzNodeMax = 255

// FuzzParse parses arbitrary input: it must never panic, and whatever it
// accepts must dump to text that parses back to the same effective
// configuration (WriteJSON's values, which must all be ones JSON encodes).
//
// The configurations are compared as values (see sameEffective), not as
// JSON text: encoding every option of every section and decoding it again
// cost up to ~15 ms per accepted input, and encoding/json's sorting of map
// keys met them in map order, so each run took a different path through
// the sort. go test -fuzz instruments encoding/json and sort too: the
// fuzzer kept finding "new coverage" there that no run reproduced, and so
// could never minimize such an input. (The parser sorted keyword lists in
// map order too, for suggestions and in syncer {}, and Settings the gdrbd
// directives; they no longer do. The file name is absolute, which spares
// Parse a getcwd per run.)
func FuzzParse(f *testing.F) {
	for _, file := range corpusFiles(f) {
		src, err := os.ReadFile(file)
		require.NoError(f, err)
		node := readDirectives(f, file).node
		f.Add(src, node)
		if c := condense(src); !bytes.Equal(c, src) {
			f.Add(c, node)
		}
	}
	f.Add([]byte("resource r0 { on a { device minor 1; disk x; address 1.2.3.4:5; meta-disk internal; } }"), "a")
	f.Fuzz(func(t *testing.T, src []byte, node string) {
		src = src[:min(len(src), fuzzSrcMax)]
		node = node[:min(len(node), fuzzNodeMax)]
		c, err := Parse(fuzzFile, src, fuzzOptions(node))
		if err != nil {
			var l ErrorList
			var e *Error
			require.True(t, errors.As(err, &l) || errors.As(err, &e), "untyped error %T: %v", err, err)
			require.True(t, IsInvalid(err) || errors.Is(err, ErrIO), "unclassified error: %v", err)
			return
		}
		var dump bytes.Buffer
		require.NoError(t, c.WriteDump(&dump, nil))
		c2, err := Parse(fuzzFile, dump.Bytes(), fuzzOptions(node))
		require.NoError(t, err, "input:\n%q\ndump:\n%s", src, dump.String())
		sameEffective(t, c, c2, "input:\n%q\ndump:\n%s", src, dump.String())
	})
}

const fuzzFile = "/fuzz/fuzz.conf"

// condense drops a configuration's comments (but # gdrbd: directives) and
// indentation, and squeezes other runs of blanks outside double quoted
// strings (which do not span lines) into one space.
func condense(src []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(src, []byte("\n")) {
		var l []byte
		quoted, blank := false, false
		for i := 0; i < len(line); i++ {
			c := line[i]
			switch {
			case quoted:
				if c == '\\' && i+1 < len(line) {
					l = append(l, c)
					i++
					c = line[i]
				} else if c == '"' {
					quoted = false
				}
			case c == '#':
				if bytes.Contains(line[i:], []byte(directivePrefix)) {
					l = append(l, line[i:]...)
				}
				i = len(line)
				continue
			case c == ' ' || c == '\t' || c == '\r':
				blank = true
				continue
			case c == '"':
				quoted = true
			}
			if blank && len(l) > 0 {
				l = append(l, ' ')
			}
			blank = false
			l = append(l, c)
		}
		if len(l) > 0 {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

// sameEffective requires that a and b have the same effective
// configuration: what WriteJSON prints but the file name, the warnings and
// where resources are defined. It compares the values WriteJSON encodes
// (without encoding them: see FuzzParse), after checking that JSON can
// encode every one of them, which is all WriteJSON adds. Equal values
// print equal JSON; values that differ only where JSON does not show it
// (an int64 for an int, nil for an empty map that is omitted) are
// compared as JSON, as they always were.
func sameEffective(t *testing.T, a, b *Config, msg string, args ...any) {
	t.Helper()
	va, vb := effectiveView(t, a), effectiveView(t, b)
	if !reflect.DeepEqual(va, vb) {
		requireSameText(t, effectiveJSON(t, a), effectiveJSON(t, b), msg, args...)
	}
}

// effectiveView is c's jsonView without the fields effectiveJSON drops.
func effectiveView(t *testing.T, c *Config) jsonConfig {
	t.Helper()
	v := c.jsonView(nil)
	requireEncodable(t, v)
	v.File, v.Warnings = "", nil
	for i := range v.Resources {
		v.Resources[i].DefinedAt = ""
	}
	return v
}

// requireEncodable checks what WriteJSON's encoding could fail on: the
// option values are the only interfaces in a jsonConfig, and everything
// else is a type encoding/json always encodes (strings, ints, bools,
// slices, pointers to such structs, maps with string keys).
func requireEncodable(t *testing.T, v jsonConfig) {
	t.Helper()
	check := func(where string, opts map[string]jsonOpt) {
		for name, o := range opts {
			switch o.Value.(type) {
			case string, bool, int, int64, []string:
			default:
				t.Fatalf("%s option %s: value %#v (%T) is not one WriteJSON is known to encode", where, name, o.Value, o.Value)
			}
		}
	}
	for _, r := range v.Resources {
		check(r.Name+" net", r.Net)
		check(r.Name+" disk", r.Disk)
		check(r.Name+" startup", r.Startup)
		check(r.Name+" options", r.Options)
		for _, h := range r.Hosts {
			for _, vol := range h.Volumes {
				check(r.Name+" volume disk", vol.DiskOptions)
			}
		}
	}
}
