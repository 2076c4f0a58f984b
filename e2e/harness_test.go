package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/gdrbd/gdrbd/status"
)

// gdrbdBin is the binary TestMain builds once for every test.
var gdrbdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gdrbd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	gdrbdBin = filepath.Join(dir, "gdrbd")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = "/usr/local/go/bin/go"
	}
	build := exec.Command(goCmd, "build", "-o", gdrbdBin, "../cmd/gdrbd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building gdrbd:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seedConfig is the seed's r0 (heartbeat-drbd-nfs.txt) with the hosts,
// disks and addresses of a test.
const seedConfig = `resource r0 {
  protocol C;
  startup { wfc-timeout 0; degr-wfc-timeout 120; }
  disk { on-io-error detach; }
  net {
    timeout 60;
    connect-int %[7]d;
    ping-int 10;
    max-buffers 2048;
    max-epoch-size 2048;
  }
  syncer { rate 200M; }
  on %[1]s {
    device /dev/drbd0;
    disk %[2]s;
    address %[3]s;
    meta-disk internal;
  }
  on %[4]s {
    device /dev/drbd0;
    disk %[5]s;
    address %[6]s;
    meta-disk internal;
  }
}
`

// node is one gdrbd node of a test: its own run dir, node name and
// (optionally) network namespace, sharing the config file with its peer.
type node struct {
	t      *testing.T
	name   string
	runDir string
	cfg    string
	disk   string
	netns  string // "" = the host's

	mu   sync.Mutex
	pids map[int]bool // daemons this test started, killed in cleanup
}

// result is one finished command.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// shortDir makes a directory with a short path: unix socket paths are
// limited to 108 bytes and t.TempDir's names are long.
func shortDir(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// loopDisk makes a sparse file of size bytes on a loop device.
func loopDisk(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return blockdevtest.Loop(t, p)
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// needTools skips (fails under CI) unless root and the programs exist.
func needTools(t *testing.T, progs ...string) {
	t.Helper()
	tooltest.RequireRoot(t)
	for _, p := range append([]string{"losetup"}, progs...) {
		tooltest.Require(t, p)
	}
}

// pairConfig writes the seed config for nodes a and b and returns them.
func newPair(t *testing.T, dir string, size int64, addrA, addrB, nsA, nsB string) (*node, *node) {
	t.Helper()
	da := loopDisk(t, dir, "a.img", size)
	db := loopDisk(t, dir, "b.img", size)
	cfg := filepath.Join(dir, "drbd.conf")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(seedConfig, "a", da, addrA, "b", db, addrB, 1)), 0o600))
	a := &node{t: t, name: "a", runDir: filepath.Join(dir, "run-a"), cfg: cfg, disk: da, netns: nsA, pids: map[int]bool{}}
	b := &node{t: t, name: "b", runDir: filepath.Join(dir, "run-b"), cfg: cfg, disk: db, netns: nsB, pids: map[int]bool{}}
	// Registered after the loop devices: runs before they are freed.
	t.Cleanup(a.cleanup)
	t.Cleanup(b.cleanup)
	return a, b
}

// loopbackPair is two nodes on 127.0.0.1 with free ports.
func loopbackPair(t *testing.T, size int64) (*node, *node) {
	dir := shortDir(t, "gde2e")
	return newPair(t, dir, size, fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t)), "", "")
}

// gdrbd runs the CLI on this node (in its namespace) and returns what it
// printed. The timeout only guards against a hung test.
func (n *node) gdrbd(args ...string) result {
	n.t.Helper()
	return n.exec(nil, gdrbdBin, append([]string{"--node", n.name, "--run-dir", n.runDir, "-c", n.cfg}, args...)...)
}

// exec runs any program as this node: in its namespace, with the gdrbd
// environment (for drbdadm-named invocations).
func (n *node) exec(env []string, prog string, args ...string) result {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append([]string{prog}, args...)
	if n.netns != "" {
		argv = append([]string{"ip", "netns", "exec", n.netns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "GDRBD_KERNEL_NBD=0", "GDRBD_NODE="+n.name,
		"GDRBD_RUN_DIR="+n.runDir, "GDRBD_CONFIG="+n.cfg), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(n.t, ok, "%v: %v", argv, err)
		r.code = ee.ExitCode()
	}
	n.notePid()
	return r
}

// ok runs the CLI and requires success.
func (n *node) ok(args ...string) string {
	n.t.Helper()
	r := n.gdrbd(args...)
	require.Equal(n.t, 0, r.code, "node %s: gdrbd %s: %s", n.name, strings.Join(args, " "), r)
	return r.stdout
}

// notePid remembers the daemon now running for this node, if any.
func (n *node) notePid() {
	b, err := os.ReadFile(filepath.Join(n.runDir, "gdrbd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	n.mu.Lock()
	n.pids[pid] = true
	n.mu.Unlock()
}

// daemonPid is the running daemon's pid (the test fails without one).
func (n *node) daemonPid() int {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.runDir, "gdrbd.pid"))
	require.NoError(n.t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(n.t, err)
	n.mu.Lock()
	n.pids[pid] = true
	n.mu.Unlock()
	return pid
}

// kill9 kills the node's daemon with SIGKILL and waits until it is gone.
func (n *node) kill9() {
	n.t.Helper()
	pid := n.daemonPid()
	require.NoError(n.t, syscall.Kill(pid, syscall.SIGKILL))
	require.True(n.t, waitGone(pid, 10*time.Second), "daemon %d survived SIGKILL", pid)
}

// waitGone polls until pid no longer exists (it is not our child, so it
// cannot be waited for).
func waitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true
		}
		// A zombie still answers kill 0; its state in /proc says Z.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// cleanup kills every daemon this node started (by pid, never by name).
func (n *node) cleanup() {
	n.notePid()
	n.mu.Lock()
	defer n.mu.Unlock()
	for pid := range n.pids {
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 10*time.Second)
		}
	}
}

// uri is the NBD URI of the node's Primary.
func (n *node) uri() string {
	return "nbd+unix:///r0?socket=" + filepath.Join(n.runDir, "r0.nbd")
}

// statusJSON returns the node's r0 as JSON status.
func (n *node) statusJSON() status.JSONResource {
	n.t.Helper()
	var rs []status.JSONResource
	out := n.ok("status", "r0", "--json")
	require.NoError(n.t, json.Unmarshal([]byte(out), &rs), out)
	require.Len(n.t, rs, 1)
	return rs[0]
}

// run runs a program on the host and requires success.
func run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", prog, strings.Join(args, " "), out)
	return string(out)
}
