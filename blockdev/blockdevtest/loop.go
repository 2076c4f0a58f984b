package blockdevtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gdrbd/gdrbd/internal/tooltest"
)

// TempFile creates a sparse file of size bytes in t.TempDir.
func TempFile(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatalf("create %s: %v", p, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatalf("truncate %s: %v", p, err)
	}
	return p
}

// Loop attaches file to a free loop device (losetup -f --show) and
// detaches it when the test ends. It skips (fails under CI=true) without
// root or losetup.
func Loop(t testing.TB, file string) string {
	t.Helper()
	tooltest.RequireRoot(t)
	losetup := tooltest.Require(t, "losetup")
	out, err := exec.Command(losetup, "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -f --show %s: %v: %s", file, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
