package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// holdClient opens an NBD connection to uri and keeps it until release
// is called: qemu-io reads its commands from a pipe and stays connected
// until the pipe closes.
func holdClient(t *testing.T, n *node, uri string) (release func()) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", "raw", uri)
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(t, cmd.Start())
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		in.Close()
		_ = cmd.Wait()
	}
	t.Cleanup(release)
	// The daemon counts the client once the handshake is done.
	waitFor(t, n, "an NBD client", 20*time.Second, func() bool {
		return len(n.statusJSON().Devices) > 0 && n.statusJSON().Devices[0].NBD.Clients > 0
	})
	return release
}

// waitFor polls the node's state until cond holds: the daemon's state
// changes asynchronously (peer connects, clients leave), and there is no
// event to wait on from outside the process.
func waitFor(t *testing.T, n *node, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s did not happen within %v; status:\n%s", n.name, what, within, n.gdrbd("status").stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func qemuIO(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := run(t, "qemu-io", append(args, uri)...)
	require.NotContains(t, out, "Pattern verification failed", out)
	require.NotContains(t, out, "failed", out)
}

// TestSingleNode is the user story on one node whose peer never comes:
// up, promotion, the NBD export with every real client, refusals while
// the device is open, down/up and kill -9 keeping the data.
func TestSingleNode(t *testing.T) {
	t.Parallel()
	needTools(t, "nbdinfo", "nbdcopy", "qemu-io", "qemu-img", "fio", "cmp", "drbdmeta")
	a, _ := loopbackPair(t, 400<<20)
	a.ok("create-md", "r0", "--force")
	a.ok("up", "r0")
	require.Equal(t, "Secondary/Unknown\n", a.ok("role", "r0"))
	require.Equal(t, "WFConnection\n", a.ok("cstate", "r0"))
	require.Equal(t, "Inconsistent/DUnknown\n", a.ok("dstate", "r0"))

	r := a.gdrbd("primary", "r0")
	require.Equal(t, 17, r.code, r)
	require.Equal(t, "0: State change failed: (-2) Need access to UpToDate data\n", r.stderr)
	a.ok("primary", "r0", "--force")
	require.Equal(t, "Primary/Unknown\n", a.ok("role", "r0"))
	require.Equal(t, "r0 role:Primary\n  disk:UpToDate\n  peer connection:Connecting\n\n", a.ok("status"))
	proc := a.ok("status", "--proc")
	require.True(t, strings.HasPrefix(proc, "version: 8.4.11 (api:1/proto:86-101)\n"), proc)
	require.Contains(t, proc, " 0: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r-----\n    ns:0 nr:0 ")

	uri := a.uri()
	for _, c := range []string{"flush", "fua", "trim", "zero", "multi-conn"} {
		run(t, "nbdinfo", "--can", c, uri)
	}

	// 256 MiB in and out through nbdcopy (multi-conn), compared.
	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	run(t, "dd", "if=/dev/urandom", "of="+in, "bs=1M", "count=256", "status=none")
	run(t, "nbdcopy", in, uri, "--flush")
	out := filepath.Join(dir, "out.bin")
	run(t, "nbdcopy", uri, out)
	run(t, "cmp", "-n", fmt.Sprint(256<<20), in, out)
	// qemu-img sees the same bytes as the copy.
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", out, uri)

	// A pattern beyond the copied area, written and read back by qemu-io.
	qemuIO(t, uri, "write -P 0xab 260M 1M", "read -P 0xab 260M 1M", "flush")

	// fio: four jobs, each its own connection and region (above the
	// copied data), verified.
	run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+uri, "--rw=randwrite", "--bs=64k",
		"--offset=272M", "--size=16M", "--offset_increment=16M", "--numjobs=4", "--iodepth=8", "--verify=crc32c",
		"--verify_fatal=1", "--group_reporting")

	// While a client holds the export, demotion is refused as DRBD
	// refuses it for an open device.
	release := holdClient(t, a, uri)
	r = a.gdrbd("secondary", "r0")
	require.Equal(t, 11, r.code, r)
	require.Equal(t, "0: State change failed: (-12) Device is held open by someone\n", r.stderr)
	release()
	waitFor(t, a, "the NBD client to leave", 20*time.Second, func() bool {
		return a.statusJSON().Devices[0].NBD.Clients == 0
	})
	a.ok("secondary", "r0")

	// down and up keep the data; the daemon exits after the last down.
	pid := a.daemonPid()
	a.ok("down", "r0")
	require.True(t, waitGone(pid, 20*time.Second), "the daemon did not exit after the last down")
	r = a.gdrbd("role", "r0")
	require.Equal(t, 10, r.code, r)
	require.Equal(t, "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\n", r.stderr)
	// dstate of a down resource comes from the metadata, as drbdmeta's.
	require.Equal(t, run(t, "drbdmeta", "0", "v08", a.disk, "internal", "dstate"), a.ok("dstate", "r0"))
	require.Equal(t, "Consistent\n", a.ok("dstate", "r0"))
	a.ok("up", "r0")
	require.Equal(t, "UpToDate/DUnknown\n", a.ok("dstate", "r0"))
	a.ok("primary", "r0")
	out2 := filepath.Join(dir, "out2.bin")
	run(t, "nbdcopy", uri, out2)
	run(t, "cmp", "-n", fmt.Sprint(256<<20), in, out2)
	qemuIO(t, uri, "read -P 0xab 260M 1M")

	// kill -9 leaves unclean metadata; the next up recovers it.
	qemuIO(t, uri, "write -P 0xcd 0 1M", "flush")
	a.kill9()
	r = a.gdrbd("dump-md", "r0")
	require.NotEqual(t, 0, r.code, r)
	require.Contains(t, r.stderr, "unclean", r)
	a.ok("up", "r0")
	a.ok("primary", "r0")
	qemuIO(t, uri, "read -P 0xcd 0 1M", "read -P 0xab 260M 1M")
	a.ok("down", "r0")
	dump := a.ok("dump-md", "r0")
	require.Contains(t, dump, `version "v08";`)
}

// TestStatusJSON checks the JSON status of a Primary is well-formed and
// names the NBD socket.
func TestStatusJSON(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, b := loopbackPair(t, 16<<20)
	a.ok("create-md", "r0", "--force")
	a.ok("up", "r0", "--primary")
	// b's daemon starts with GDRBD_AIO=0: the thread pool.
	b.ok("create-md", "r0", "--force")
	r := b.exec([]string{"GDRBD_AIO=0"}, gdrbdBin, "up", "r0")
	require.Zero(t, r.code, "%s", r.stderr)
	var rs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.ok("status", "--json")), &rs))
	require.Len(t, rs, 1)
	require.Equal(t, "Primary", rs[0]["role"])
	js := a.statusJSON()
	require.Equal(t, filepath.Join(a.runDir, "r0.nbd"), js.Devices[0].NBD.Socket)
	require.Equal(t, "Connecting", js.Connections[0].ConnectionState)
	// The daemon drives its O_DIRECT loop device through native AIO.
	require.Equal(t, "native-aio", js.Devices[0].DiskIO)
	require.Equal(t, "threads", b.statusJSON().Devices[0].DiskIO)
	a.ok("down", "all")
	b.ok("down", "all")
}
