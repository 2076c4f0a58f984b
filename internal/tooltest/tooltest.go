// Package tooltest lets tests depend on real external programs (drbdmeta,
// nbdinfo, qemu-io, fio, ...). A missing program skips the test on a
// developer machine and fails it under CI=true, where scripts/install-deps.sh
// must have installed it.
package tooltest

import (
	"os"
	"os/exec"
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
