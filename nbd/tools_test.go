package nbd

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/internal/tooltest"
)

// fileDev is a blockdev.Device over a regular file for the tests that
// move hundreds of MiB (pread/pwrite, no lock; Flush is fdatasync).
type fileDev struct {
	f    *os.File
	size int64
}

func newFileDev(t testing.TB, size int64) *fileDev {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	t.Cleanup(func() { f.Close() })
	return &fileDev{f: f, size: size}
}

func (d *fileDev) Size() int64                              { return d.size }
func (d *fileDev) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *fileDev) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }
func (d *fileDev) Flush() error                             { return unix.Fdatasync(int(d.f.Fd())) }
func (d *fileDev) Close() error                             { return nil }
func (d *fileDev) Discard(off, n int64) error {
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func (d *fileDev) WriteZeroes(off, n int64) error {
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func uri(path string) string { return "nbd+unix:///disk?socket=" + path }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = t.TempDir() // fio and friends drop state files in their cwd
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

func fileServer(t *testing.T, size int64) (*Server, string, *fileDev) {
	dev := newFileDev(t, size)
	s, path := startServer(t, Config{Backend: DeviceBackend{Dev: dev}, Name: "disk"})
	return s, path, dev
}

func TestToolNbdinfo(t *testing.T) {
	t.Parallel()
	nbdinfo := tooltest.Require(t, "nbdinfo")
	_, path, _ := fileServer(t, 64<<20)
	for _, c := range []string{"flush", "fua", "trim", "zero", "fast-zero", "multi-conn", "cache", "df"} {
		out, err := exec.Command(nbdinfo, "--can", c, uri(path)).CombinedOutput()
		require.NoError(t, err, "nbdinfo --can %s: %s", c, out)
	}
	out, err := exec.Command(nbdinfo, "--is", "read-only", uri(path)).CombinedOutput()
	require.Error(t, err, "not read-only: %s", out)
	require.Equal(t, fmt.Sprint(64<<20), strings.TrimSpace(run(t, nbdinfo, "--size", uri(path))))
	info := run(t, nbdinfo, uri(path))
	require.Contains(t, info, "block_size_minimum: 512")
	require.Contains(t, info, "block_size_preferred: 4096")
	require.Contains(t, info, fmt.Sprintf("block_size_maximum: %d", MaxPayload))
}

func TestToolNbdcopyRoundTrip(t *testing.T) {
	t.Parallel()
	nbdcopy := tooltest.Require(t, "nbdcopy")
	const size = 256 << 20
	s, path, _ := fileServer(t, size)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.bin"), filepath.Join(dir, "out.bin")
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = r.Read(data)
	require.NoError(t, os.WriteFile(in, data, 0o600))
	run(t, nbdcopy, "--flush", in, uri(path))
	run(t, nbdcopy, uri(path), out)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got), "nbdcopy round trip differs")
	st := s.Stats()
	require.Positive(t, st.Flushes, "--flush reached the server")
	require.Equal(t, int64(size), st.BytesRead)
}

func TestToolQemuIo(t *testing.T) {
	t.Parallel()
	qemuIO := tooltest.Require(t, "qemu-io")
	s, path, _ := fileServer(t, 64<<20)
	out := run(t, qemuIO, "-f", "raw",
		"-c", "write -P 0xab 0 64k",
		"-c", "read -P 0xab 0 64k",
		"-c", "write -f -P 0xcd 64k 64k", // FUA
		"-c", "read -P 0xcd 64k 64k",
		"-c", "write -z -n 128k 64k", // fast zero, no hole
		"-c", "read -P 0 128k 64k",
		"-c", "write -z -n -u 0 64k", // fast zero, hole allowed
		"-c", "read -P 0 0 64k",
		"-c", "flush",
		uri(path))
	require.NotContains(t, out, "fail")
	require.NotContains(t, out, "error")
	st := s.Stats()
	require.Positive(t, st.FUA)
	require.Positive(t, st.Zeroes)
	require.Positive(t, st.Flushes)
}

func TestToolQemuImgCompare(t *testing.T) {
	t.Parallel()
	qemuImg := tooltest.Require(t, "qemu-img")
	_, path, _ := fileServer(t, 32<<20)
	src := filepath.Join(t.TempDir(), "src.img")
	data := make([]byte, 32<<20)
	r := rand.NewChaCha8([32]byte{9})
	_, _ = r.Read(data[:16<<20]) // second half stays zero
	require.NoError(t, os.WriteFile(src, data, 0o600))
	run(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, uri(path))
	run(t, qemuImg, "compare", "-f", "raw", "-F", "raw", src, uri(path))
	data[5] ^= 1
	require.NoError(t, os.WriteFile(src, data, 0o600))
	err := exec.Command(qemuImg, "compare", "-q", "-f", "raw", "-F", "raw", src, uri(path)).Run()
	require.Error(t, err, "a difference is seen")
}

func TestToolFioMultiConnVerify(t *testing.T) {
	t.Parallel()
	fio := tooltest.Require(t, "fio")
	const perJob = 8 << 20
	s, path, _ := fileServer(t, 4*perJob)
	run(t, fio, "--name=multiconn", "--ioengine=nbd", "--uri="+uri(path),
		"--rw=randwrite", "--bs=4k", "--iodepth=16", "--numjobs=4",
		fmt.Sprintf("--size=%d", perJob), fmt.Sprintf("--offset_increment=%d", perJob),
		"--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", "--group_reporting")
	st := s.Stats()
	require.GreaterOrEqual(t, st.Writes, int64(4*perJob/4096))
	require.GreaterOrEqual(t, st.Reads, int64(4*perJob/4096), "verify read everything back")
	require.Zero(t, st.Errors)
}
