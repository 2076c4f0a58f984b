package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateGolden = flag.Bool("dump.update", false, "rewrite testdata/dump/*.golden from the current output")

// dumpCLI runs one gdrbd command line in-process for node.
func dumpCLI(t *testing.T, conf, node string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	env := &cliEnv{ConfigPath: conf, Node: node, RunDir: t.TempDir(), Stdout: &o, Stderr: &e, Stdin: strings.NewReader("")}
	code = run(env, args)
	return o.String(), e.String(), code
}

// golden compares out with testdata/dump/NAME, with the test data
// directory's absolute path written as TESTDATA.
func golden(t *testing.T, name, out string) {
	t.Helper()
	dir, err := filepath.Abs("testdata/dump")
	require.NoError(t, err)
	dir, err = filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	out = strings.ReplaceAll(out, dir, "TESTDATA")
	path := filepath.Join("testdata/dump", name)
	if *updateGolden {
		require.NoError(t, os.WriteFile(path, []byte(out), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), out)
}

func TestDumpGolden(t *testing.T) {
	t.Parallel()
	conf := "testdata/dump/drbd.conf"
	cases := []struct {
		golden string
		node   string
		args   []string
	}{
		{"all.golden", "Rserver-1", []string{"dump"}},
		{"all.golden", "Rserver-1", []string{"dump", "all"}},
		{"r0.golden", "Rserver-1", []string{"dump", "r0"}},
		{"backup-lserver.golden", "Lserver-1", []string{"dump", "backup", "r0"}},
		{"all.json.golden", "Rserver-1", []string{"dump", "--json"}},
		{"r0.json.golden", "Rserver-1", []string{"dump", "r0", "--json"}},
	}
	for _, c := range cases {
		out, stderr, code := dumpCLI(t, conf, c.node, c.args...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		require.Empty(t, stderr)
		golden(t, c.golden, out)
	}
}

// TestDumpJSONValues checks a few effective values in the JSON: units
// resolved, defaults filled, explicit marked.
func TestDumpJSONValues(t *testing.T) {
	t.Parallel()
	out, _, code := dumpCLI(t, "testdata/dump/drbd.conf", "Rserver-1", "dump", "--json", "r0")
	require.Equal(t, 0, code)
	var v struct {
		Resources []struct {
			Name     string
			Protocol string
			Net      map[string]struct {
				Value    any
				Unit     string
				Explicit bool
			}
			Disk map[string]struct {
				Value    any
				Unit     string
				Explicit bool
			}
			Gdrbd map[string]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.Len(t, v.Resources, 1)
	r := v.Resources[0]
	require.Equal(t, "r0", r.Name)
	require.Equal(t, "C", r.Protocol)
	require.Equal(t, float64(204800), r.Disk["resync-rate"].Value) // rate 200M in KiB/s
	require.Equal(t, "KiB/s", r.Disk["resync-rate"].Unit)
	require.True(t, r.Disk["resync-rate"].Explicit)
	require.Equal(t, float64(60), r.Net["timeout"].Value)
	require.Equal(t, "1/10 s", r.Net["timeout"].Unit)
	require.Equal(t, float64(5), r.Net["ping-timeout"].Value) // default
	require.False(t, r.Net["ping-timeout"].Explicit)
	require.Equal(t, "detach", r.Disk["on-io-error"].Value) // from common
	require.Equal(t, map[string]string{"compression": "lz4", "nbd-socket": "/run/gdrbd/r0.sock"}, r.Gdrbd)
}

// TestDumpErrors: drbdadm's messages and exit codes for a resource that is
// not there, not on this node, or a file that is broken or missing.
func TestDumpErrors(t *testing.T) {
	t.Parallel()
	conf := "testdata/dump/drbd.conf"
	_, stderr, code := dumpCLI(t, conf, "Rserver-1", "dump", "r9")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "gdrbd: 'r9' not defined in your config (for this host).\n")
	require.Contains(t, stderr, "(defined: r0, backup)")

	_, stderr, code = dumpCLI(t, conf, "Rserver-1", "dump", "backup")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "'backup' not defined in your config (for this host).\n")
	require.Contains(t, stderr, "resource 'backup' has no 'on Rserver-1' section for this node (its hosts: Lserver-1, Tserver-1)")

	// dump all prints resources this node is not in too (marked ignored).
	out, _, code := dumpCLI(t, conf, "Xserver", "dump", "all")
	require.Equal(t, 0, code)
	require.Contains(t, out, "# resource backup on Xserver: ignored, not stacked")

	bad := filepath.Join(t.TempDir(), "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("resource r0 {\n disk { rsync-rate 10M; }\n}\n"), 0o600))
	_, stderr, code = dumpCLI(t, bad, "a", "dump")
	require.Equal(t, exitConfigInvalid, code)
	require.Equal(t, "gdrbd: "+bad+":2:9: unknown option 'rsync-rate', did you mean 'resync-rate'?\n", stderr)

	_, stderr, code = dumpCLI(t, filepath.Join(t.TempDir(), "missing.conf"), "a", "dump")
	require.Equal(t, exitExecError, code)
	require.Contains(t, stderr, "cannot read")
}

// TestSelectTargets covers the helper other verbs use for RES arguments.
func TestSelectTargets(t *testing.T) {
	t.Parallel()
	env := &cliEnv{ConfigPath: "testdata/dump/drbd.conf", Node: "Lserver-1", Stderr: &bytes.Buffer{}}
	cfg, targets, err := loadTargets(env, []string{"all"})
	require.NoError(t, err)
	require.Len(t, targets, 2)
	require.Equal(t, "r0", targets[0].Res.Name)
	require.Equal(t, "backup", targets[1].Res.Name)
	require.Nil(t, targets[0].Vol)

	targets, err = selectTargets(env, cfg, []string{"backup/1", "minor-0"})
	require.NoError(t, err)
	require.Equal(t, "backup", targets[0].Res.Name)
	require.Equal(t, 1, targets[0].Vol.Number)
	require.Equal(t, "/dev/drbd2", targets[0].Vol.Device)
	require.Equal(t, "r0", targets[1].Res.Name)
	require.Equal(t, 0, targets[1].Vol.Minor)

	_, err = selectTargets(env, cfg, nil)
	var ue *usageError
	require.ErrorAs(t, err, &ue)

	env.Node = "nobody"
	_, _, err = loadTargets(env, []string{"all"})
	var ee *exitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, exitUsage, ee.code)
	require.EqualError(t, err, "WARN: no normal resources defined for this host (nobody)!?\nMisspelled name of the local machine with the 'on' keyword ?")
}
