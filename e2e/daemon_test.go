package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestForegroundDaemon: `gdrbd daemon` as systemd runs it. One daemon per
// run dir; `up` uses the running one; SIGTERM takes the resources down
// cleanly (the metadata is clean afterwards) and the daemon exits 0.
func TestForegroundDaemon(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, _ := loopbackPair(t, 16<<20)
	a.ok("create-md", "r0", "--force")

	d := exec.Command(gdrbdBin, "--node", "a", "--run-dir", a.runDir, "-c", a.cfg, "daemon", "--log-format", "console")
	d.Env = append(os.Environ(), "GDRBD_KERNEL_NBD=0")
	var logs bytes.Buffer
	d.Stderr = &logs
	ready, w, err := os.Pipe()
	require.NoError(t, err)
	d.ExtraFiles = []*os.File{w}
	d.Args = append(d.Args, "--ready-fd", "3")
	require.NoError(t, d.Start())
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- d.Wait() }()
	t.Cleanup(func() {
		if d.ProcessState == nil {
			_ = d.Process.Kill()
			<-exited
		}
	})
	line := make([]byte, 3)
	_, err = ready.Read(line)
	require.NoError(t, err)
	require.Equal(t, "ok\n", string(line))

	// A second daemon for the same run dir is refused.
	r := a.gdrbd("daemon")
	require.Equal(t, 10, r.code, r)
	require.Contains(t, r.stderr, "another gdrbd daemon runs for "+a.runDir)

	a.ok("up", "r0", "--primary")
	pid, err := os.ReadFile(filepath.Join(a.runDir, "gdrbd.pid"))
	require.NoError(t, err)
	require.Equal(t, []byte(itoa(d.Process.Pid)+"\n"), pid, "up started a second daemon")
	require.Equal(t, "Primary/Unknown\n", a.ok("role", "r0"))
	r = a.gdrbd("dump-md", "r0")
	require.Equal(t, 20, r.code, "dump-md while up: %s", r)

	require.NoError(t, d.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "daemon log:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not exit on SIGTERM; log:\n%s", logs.String())
	}
	// Taken down cleanly: drbdmeta itself finds clean metadata.
	out := run(t, "drbdmeta", "0", "v08", a.disk, "internal", "dump-md")
	require.Contains(t, out, `version "v08";`)
	require.Contains(t, logs.String(), "daemon stopping")
	_, err = os.Stat(filepath.Join(a.runDir, "gdrbd.pid"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestDrbdadmName: a symlink called drbdadm makes gdrbd answer as
// drbdadm, with drbdsetup's "Command ... terminated" line.
func TestDrbdadmName(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, _ := loopbackPair(t, 16<<20)
	link := filepath.Join(t.TempDir(), "drbdadm")
	require.NoError(t, os.Symlink(gdrbdBin, link))
	r := a.exec(nil, link, "role", "r0")
	require.Equal(t, 10, r.code, r)
	require.Equal(t, "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\n"+
		"Command 'drbdsetup-84 role 0' terminated with exit code 10\n", r.stderr)
	require.Equal(t, "/dev/drbd0\n", a.exec(nil, link, "sh-dev", "r0").stdout)
	require.Equal(t, "0\n", a.exec(nil, link, "sh-minor", "r0").stdout)
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestQuickDownUp: `down; up` in quick succession: the new daemon waits
// for the old one, which is still exiting, to release the run dir.
func TestQuickDownUp(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, _ := loopbackPair(t, 16<<20)
	a.ok("create-md", "r0", "--force")
	a.ok("up", "r0", "--primary")
	for i := 0; i < 3; i++ {
		a.ok("down", "r0")
		a.ok("up", "r0")
		require.Equal(t, "Secondary/Unknown\n", a.ok("role", "r0"))
	}
	a.ok("down", "r0")
}
