package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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

// FuzzParse parses arbitrary input: it must never panic, and whatever it
// accepts must dump to text that parses back to the same effective
// configuration (the JSON with every value).
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/corpus/*.conf")
	require.NoError(f, err)
	for _, file := range files {
		src, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(src, "alpha")
	}
	f.Add([]byte("resource r0 { on a { device minor 1; disk x; address 1.2.3.4:5; meta-disk internal; } }"), "a")
	f.Fuzz(func(t *testing.T, src []byte, node string) {
		c, err := Parse("fuzz.conf", src, fuzzOptions(node))
		if err != nil {
			var l ErrorList
			var e *Error
			require.True(t, errors.As(err, &l) || errors.As(err, &e), "untyped error %T: %v", err, err)
			require.True(t, IsInvalid(err) || errors.Is(err, ErrIO), "unclassified error: %v", err)
			return
		}
		var dump, js bytes.Buffer
		require.NoError(t, c.WriteDump(&dump, nil))
		require.NoError(t, c.WriteJSON(&js, nil))
		c2, err := Parse("fuzz.conf", dump.Bytes(), fuzzOptions(node))
		require.NoError(t, err, "input:\n%q\ndump:\n%s", src, dump.String())
		requireSameText(t, effectiveJSON(t, c), effectiveJSON(t, c2), "input:\n%q\ndump:\n%s", src, dump.String())
	})
}
