// Package tooltest lets tests depend on real external programs (drbdmeta,
// nbdinfo, qemu-io, fio, ...). A missing program skips the test on a
// developer machine and fails it under CI=true, where scripts/install-deps.sh
// must have installed it.
package tooltest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Require returns the path of program name, or skips (fails under CI) the
// test when it is not installed.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/drbd", "/lib/drbd"} {
		if st, err := os.Stat(dir + "/" + name); err == nil && !st.IsDir() {
			return dir + "/" + name
		}
	}
	Missing(t, name+" is not installed (scripts/install-deps.sh installs it)")
	return ""
}

// RequireRoot skips (fails under CI) a test that needs root, such as one
// using loop devices or network namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// Missing fails the test under CI=true and skips it otherwise.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required for this test under CI: %s", why)
	}
	t.Skip(why)
}

// Drbdmeta runs the real `drbdmeta --force - v08 DEV LOC ARGS...` ("-" as
// the minor: no lock file, no drbdsetup query; --force answers its
// questions and lets it work on files) with empty stdin, and returns its
// output and exit code. A drbdmeta that cannot be run fails the test.
func Drbdmeta(t testing.TB, dev, loc string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	prog := Require(t, "drbdmeta")
	cmd := exec.Command(prog, append([]string{"--force", "-", "v08", dev, loc}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &o, &e, strings.NewReader("")
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("drbdmeta %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// DumpBody drops dump-md's header (time, host, command line), which
// differs between any two runs.
func DumpBody(s string) string {
	if i := strings.Index(s, "version \"v08\""); i >= 0 {
		return s[i:]
	}
	return s
}
