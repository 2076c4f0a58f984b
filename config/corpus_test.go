package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/stretchr/testify/require"
)

// Corpus files in testdata/corpus carry their expectations in comments
// (or, for the seed file that must stay unchanged, in FILE.test):
//
//	# test: node NAME                  the node to load the file for
//	# test: error LINE:COL: MESSAGE    an expected error (all of them, in order)
//	# test: drbdadm-accepts REASON     drbdadm-84's parser accepts the file;
//	                                   gdrbd rejects it because the rest of
//	                                   DRBD 8.4 (drbdsetup, the kernel) would
//	# test: resource NAME error MSG    Config.Resource(NAME) fails so
//	# test: dump-deviates REASON       gdrbd's dump differs from drbdadm's
//
// In messages, FILE stands for the path given to Load and ABSFILE for
// Config.File.
type directives struct {
	node           string
	errors         []string
	drbdadmAccepts string
	dumpDeviates   string
	resourceErrors map[string]string
}

var directiveRE = regexp.MustCompile(`^# test: (\S+) ?(.*?)\r?$`)

func readDirectives(t testing.TB, file string) directives {
	t.Helper()
	src := file
	if _, err := os.Stat(file + ".test"); err == nil {
		src = file + ".test"
	}
	f, err := os.Open(src)
	require.NoError(t, err)
	defer f.Close()
	d := directives{resourceErrors: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := directiveRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[1] {
		case "node":
			d.node = strings.Trim(m[2], `"`)
		case "error":
			d.errors = append(d.errors, m[2])
		case "drbdadm-accepts":
			d.drbdadmAccepts = m[2]
		case "dump-deviates":
			d.dumpDeviates = m[2]
		case "resource":
			name, msg, ok := strings.Cut(m[2], " error ")
			require.True(t, ok, "%s: bad directive %q", file, sc.Text())
			d.resourceErrors[name] = msg
		default:
			t.Fatalf("%s: unknown directive %q", file, sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, d.node, "%s: no '# test: node' directive", file)
	return d
}

func corpusFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*.conf")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 25)
	return files
}

// effectiveJSON is the JSON dump without the places things were written,
// which is what "the same effective configuration" compares.
func effectiveJSON(t testing.TB, c *Config) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, c.WriteJSON(&b, nil))
	var v map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &v))
	delete(v, "file")
	delete(v, "warnings")
	for _, r := range v["resources"].([]any) {
		delete(r.(map[string]any), "defined_at")
	}
	out, err := json.MarshalIndent(v, "", " ")
	require.NoError(t, err)
	return string(out)
}

func expandFile(msg, file string, c *Config) string {
	abs := file
	if c != nil {
		abs = c.File
	} else if a, err := filepath.Abs(file); err == nil {
		abs = a
	}
	msg = strings.ReplaceAll(msg, "ABSFILE", abs)
	return strings.ReplaceAll(msg, "FILE", file)
}

// TestCorpus loads every corpus file: bad files must fail with exactly the
// expected messages; good files must dump to text that parses back to the
// same effective configuration.
func TestCorpus(t *testing.T) {
	t.Parallel()
	for _, file := range corpusFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			d := readDirectives(t, file)
			c, err := Load(file, Options{Node: d.node})
			if len(d.errors) > 0 {
				require.Error(t, err)
				var want []string
				for _, e := range d.errors {
					want = append(want, file+":"+expandFile(e, file, nil))
				}
				require.Equal(t, strings.Join(want, "\n"), err.Error())
				require.True(t, IsInvalid(err) || errors.Is(err, ErrIO))
				if d.drbdadmAccepts != "" {
					require.True(t, onlyBeyondParser(err), "errors drbdadm's parser makes too: %v", err)
				}
				return
			}
			require.NoError(t, err)
			require.Empty(t, d.drbdadmAccepts, "drbdadm-accepts only makes sense for a file gdrbd rejects")
			for name, msg := range d.resourceErrors {
				_, err := c.Resource(name)
				require.Error(t, err)
				require.Equal(t, expandFile(msg, file, c), err.Error())
			}

			var dump bytes.Buffer
			require.NoError(t, c.WriteDump(&dump, nil))
			c2, err := Parse(filepath.Join(filepath.Dir(file), "dumped.conf"), dump.Bytes(), Options{Node: d.node})
			require.NoError(t, err, "the dump does not parse:\n%s", dump.String())
			requireSameText(t, effectiveJSON(t, c), effectiveJSON(t, c2), "effective configuration after dump and parse; dump:\n%s", dump.String())
		})
	}
}

// normalizeDump removes what gdrbd prints on purpose differently from
// drbdadm-84 dump: drbdadm prints the cmd-timeouts wrongly (a bug in its
// default initialisation) and never udev-always-use-vnr; gdrbd keeps both,
// its `# gdrbd:` directives, and the disk options of resource-level volume
// sections, which drbdadm loses.
func normalizeDump(s string) string {
	var out []string
	skipping := false
	for _, line := range strings.Split(s, "\n") {
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trim, "cmd-timeout-"), trim == "udev-always-use-vnr;", strings.HasPrefix(trim, "# gdrbd:"):
			continue
		case strings.HasPrefix(line, "    volume "):
			skipping = true
			continue
		case skipping:
			skipping = line != "    }"
			continue
		}
		out = append(out, line)
	}
	return strings.ReplaceAll(strings.Join(out, "\n"), "global {\n}\n\n", "")
}

// TestCorpusAgainstDrbdadm runs drbdadm-84 on every corpus file. gdrbd must
// accept exactly the files drbdadm-84 accepts (bad files marked
// drbdadm-accepts excepted, with their reason), print the same dump, and
// have the same effective value for every option drbdadm passes to
// drbdsetup-84 in `drbdadm -d up all` and `-d wait-connect all`, in
// drbdsetup's units; options drbdadm does not pass must be at
// drbdsetup's default.
func TestCorpusAgainstDrbdadm(t *testing.T) {
	t.Parallel()
	adm := tooltest.Require(t, "drbdadm-84")
	for _, file := range corpusFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			d := readDirectives(t, file)
			admOK, ran, admErr := drbdadmAccepts(t, adm, file, d.node)
			require.True(t, ran, "drbdadm-84 crashed: %s", admErr)
			c, err := Load(file, Options{Node: d.node})
			if err != nil {
				if d.drbdadmAccepts != "" {
					require.True(t, admOK, "marked drbdadm-accepts, but drbdadm-84 rejects:\n%s", admErr)
					return
				}
				require.False(t, admOK, "gdrbd rejects what drbdadm-84 accepts:\n%v", err)
				return
			}
			require.True(t, admOK, "gdrbd accepts what drbdadm-84 rejects:\n%s", admErr)

			if d.dumpDeviates == "" {
				// Plain dump, as gdrbd's: drbdadm's -d dump merges common
				// into a layout its own parser cannot read back. Without
				// -d drbdadm checks that the local address exists, which
				// the corpus turns off with disable-ip-verification.
				out := runDrbdadm(t, adm, d.node, "-c", file, "dump", "all")
				var dump bytes.Buffer
				require.NoError(t, c.WriteDump(&dump, nil))
				requireSameText(t, normalizeDump(out), normalizeDump(dump.String()), "drbdadm-84 dump vs gdrbd dump")
			}

			if len(c.Local()) == 0 {
				return
			}
			up := runDrbdadm(t, adm, d.node, "-c", file, "-d", "up", "all")
			checkUp(t, c, up)
			wc := runDrbdadm(t, adm, d.node, "-c", file, "-d", "wait-connect", "all")
			checkWaitConnect(t, c, wc)
		})
	}
}

// requireSameText fails with the first differing lines rather than both
// texts in full.
func requireSameText(t *testing.T, want, got string, msg string, args ...any) {
	t.Helper()
	if want == got {
		return
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	ctx := func(l []string) string {
		return strings.Join(l[max(0, i-3):min(len(l), i+4)], "\n")
	}
	t.Fatalf("%s: texts differ at line %d\n--- want:\n%s\n--- got:\n%s", fmt.Sprintf(msg, args...), i+1, ctx(w), ctx(g))
}

func runDrbdadm(t *testing.T, adm, node string, args ...string) string {
	t.Helper()
	cmd := exec.Command(adm, args...)
	cmd.Env = append(os.Environ(), "__DRBD_NODE__="+node)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "drbdadm-84 %s:\n%s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// shellWords splits a line drbdadm -d printed (shell escaped).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in := false
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'' && c != '\'':
			cur.WriteByte(c)
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '\'' || c == '"'):
			quote, in = c, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			in = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// setupCmd is one drbdsetup command line: positional arguments and
// --name=value options (the last of a name wins, as in drbdsetup).
type setupCmd struct {
	verb string
	args []string
	opts map[string]string
}

func parseSetupLines(t *testing.T, out string) []setupCmd {
	var cmds []setupCmd
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		w := shellWords(line)
		if len(w) < 2 || !strings.HasSuffix(w[0], "drbdsetup-84") {
			continue
		}
		c := setupCmd{verb: w[1], opts: map[string]string{}}
		for _, a := range w[2:] {
			if name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok && strings.HasPrefix(a, "--") {
				c.opts[name] = val
			} else {
				c.args = append(c.args, a)
			}
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// drbdsetupValue is a typed option's value in drbdsetup's terms.
func drbdsetupValue(t *testing.T, d *optDef, opts any) string {
	f := reflect.ValueOf(opts).Elem().FieldByName(d.field)
	require.True(t, f.IsValid(), d.field)
	switch d.kind {
	case kindString:
		return f.String()
	case kindBool:
		if f.Bool() {
			return "yes"
		}
		return "no"
	case kindEnum:
		return d.values[f.Int()-1]
	}
	n := f.Int()
	switch d.unit {
	case unitTenths:
		n = int64(time.Duration(n) / (100 * time.Millisecond))
	case unitSeconds:
		n = int64(time.Duration(n) / time.Second)
	case unitKiBps:
		n /= 1024
	}
	return strconv.FormatInt(n, 10)
}

// expectedValue is what an option passed (or not) on drbdsetup's command
// line sets, in drbdsetup's terms.
func expectedValue(t *testing.T, d *optDef, passed string, ok bool) string {
	if !ok {
		switch d.kind {
		case kindString:
			return ""
		case kindBool:
			if d.def != 0 {
				return "yes"
			}
			return "no"
		case kindEnum:
			return d.values[d.def]
		}
		return strconv.FormatInt(d.def, 10)
	}
	switch d.kind {
	case kindNumeric:
		n, e := parseNumber(passed, d.scale)
		require.Equal(t, numOK, e, "%s=%s", d.name, passed)
		if d.clamp { // the kernel clamps al-extents (drbd_nl.c sanitize_disk_conf)
			n = uint64(min(max(int64(n), d.min), d.max))
		}
		return strconv.FormatUint(n, 10)
	case kindEnum:
		if d.nocase {
			return strings.ToUpper(passed)
		}
	}
	return passed
}

func compareOptions(t *testing.T, what string, sec section, cmd setupCmd, typed any, skip ...string) {
	t.Helper()
	for _, d := range optDefs {
		if d.sec != sec || containsName(skip, d.name) {
			continue
		}
		passed, ok := cmd.opts[d.name]
		require.Equal(t, expectedValue(t, d, passed, ok), drbdsetupValue(t, d, typed), "%s: %s (drbdadm passed %q)", what, d.name, passed)
	}
}

func addressArg(a Address) string {
	if a.Family == "ipv6" {
		return fmt.Sprintf("ipv6:[%s]:%d", a.Host, a.Port)
	}
	return fmt.Sprintf("%s:%s:%d", a.Family, a.Host, a.Port)
}

func checkUp(t *testing.T, c *Config, out string) {
	t.Helper()
	cmds := parseSetupLines(t, out)
	seen := map[string]bool{}
	for _, cmd := range cmds {
		switch cmd.verb {
		case "new-resource":
			r, err := c.Resource(cmd.args[0])
			require.NoError(t, err)
			compareOptions(t, r.Name+" new-resource", secOptions, cmd, &r.Options)
			seen[r.Name] = true
		case "new-minor":
			r, err := c.Resource(cmd.args[0])
			require.NoError(t, err)
			minor, _ := strconv.Atoi(cmd.args[1])
			vnr, _ := strconv.Atoi(cmd.args[2])
			v, ok := r.Volume(vnr)
			require.True(t, ok, "%s has no volume %d", r.Name, vnr)
			require.Equal(t, minor, v.Minor)
		case "attach":
			minor, _ := strconv.Atoi(cmd.args[0])
			r, v, ok := c.ByMinor(minor)
			require.True(t, ok, "no volume with minor %d", minor)
			require.Equal(t, []string{cmd.args[0], v.Disk, v.MetaDevice(), v.MetaIndexArg()}, cmd.args)
			compareOptions(t, fmt.Sprintf("%s/%d attach", r.Name, v.Number), secDisk, cmd, &v.DiskOptions, "resync-after")
			want := -1
			if m, ok := cmd.opts["resync-after"]; ok {
				want, _ = strconv.Atoi(m)
			}
			require.Equal(t, want, v.DiskOptions.ResyncAfterMinor, "%s/%d resync-after", r.Name, v.Number)
		case "connect":
			r, err := c.Resource(cmd.args[0])
			require.NoError(t, err)
			require.Equal(t, addressArg(r.Local.Address), cmd.args[1])
			if r.Local.Proxy != nil { // 8.4 connects to its proxy
				require.Equal(t, addressArg(r.Local.Proxy.Inside), cmd.args[2])
			} else if r.Peer != nil {
				require.Equal(t, addressArg(r.Peer.Address), cmd.args[2])
			} else {
				require.Equal(t, "N/A", cmd.args[2])
			}
			compareOptions(t, r.Name+" connect", secNet, cmd, &r.Net)
			require.Equal(t, r.Net.Protocol, r.Protocol)
		}
	}
	for _, r := range c.Local() {
		if !r.Stacked {
			require.True(t, seen[r.Name], "drbdadm did not bring up %s", r.Name)
		}
	}
}

func checkWaitConnect(t *testing.T, c *Config, out string) {
	t.Helper()
	for _, cmd := range parseSetupLines(t, out) {
		require.Equal(t, "wait-connect", cmd.verb)
		minor, _ := strconv.Atoi(cmd.args[0])
		r, _, ok := c.ByMinor(minor)
		require.True(t, ok)
		compareOptions(t, r.Name+" wait-connect", secStartup, cmd, &r.Startup)
	}
}
