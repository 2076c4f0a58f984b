package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/replication/driver"
)

// fakeDriver is a small stand-in for replication/driver: enough state
// rules to exercise the daemon and the verbs' answers.
type fakeDriver struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	st      driver.Status
	open    int // NBD clients
	downs   int
}

func newFakeDriver(opts driver.Options) *fakeDriver {
	f := &fakeDriver{changed: make(chan struct{})}
	f.st.Name = opts.Config.Name
	f.st.Minor = opts.Config.Volumes[0].Minor
	f.st.Device = opts.Config.Volumes[0].Device
	f.st.State = replication.State{Role: replication.RoleSecondary, Peer: replication.RoleUnknown,
		Conn: replication.StandAlone, Disk: replication.Diskless, PDsk: replication.DUnknown}
	f.st.Protocol = replication.ProtocolC
	f.st.UUIDs = [4]uint64{4, 0, 0, 0}
	f.st.SizeBytes = 64 << 20
	return f
}

func (f *fakeDriver) update(fn func(s *driver.Status) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := fn(&f.st); err != nil {
		return err
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

func (f *fakeDriver) Attach(context.Context) error {
	return f.update(func(s *driver.Status) error {
		s.Attached, s.State.Disk = true, replication.Inconsistent
		return nil
	})
}

func (f *fakeDriver) Detach(context.Context) error {
	return f.update(func(s *driver.Status) error {
		if !s.Attached {
			return replication.ErrIsDiskless
		}
		s.Attached, s.State.Disk = false, replication.Diskless
		return nil
	})
}

func (f *fakeDriver) Connect(context.Context, bool) error {
	return f.update(func(s *driver.Status) error { s.State.Conn = replication.WFConnection; return nil })
}

func (f *fakeDriver) Disconnect(context.Context) error {
	return f.update(func(s *driver.Status) error {
		if s.State.Conn == replication.StandAlone {
			return replication.ErrAlreadyStandAlone
		}
		s.State.Conn, s.State.Peer, s.State.PDsk = replication.StandAlone, replication.RoleUnknown, replication.DUnknown
		return nil
	})
}

func (f *fakeDriver) Primary(_ context.Context, force bool) error {
	return f.update(func(s *driver.Status) error {
		if s.State.Disk != replication.UpToDate && !force {
			return replication.ErrNoUpToDateDisk
		}
		s.State.Role, s.State.Disk = replication.RolePrimary, replication.UpToDate
		s.UUIDs[0] = 0xABCDEF00 | 1
		s.NBD.Socket = "/nonexistent/" + s.Name + ".nbd"
		return nil
	})
}

func (f *fakeDriver) Secondary(context.Context) error {
	return f.update(func(s *driver.Status) error {
		if f.open > 0 {
			return fmt.Errorf("driver: demote: %w", replication.ErrDeviceInUse)
		}
		s.State.Role = replication.RoleSecondary
		s.NBD.Socket = ""
		return nil
	})
}

func (f *fakeDriver) NewCurrentUUID(context.Context, bool) error { return nil }
func (f *fakeDriver) Invalidate(context.Context) error           { return nil }
func (f *fakeDriver) InvalidateRemote(context.Context) error {
	return f.update(func(s *driver.Status) error {
		if s.State.Conn < replication.Connected {
			return replication.ErrNoRemoteDisk
		}
		return nil
	})
}
func (f *fakeDriver) Verify(context.Context) error     { return replication.ErrNoVerifyAlg }
func (f *fakeDriver) PauseSync(context.Context) error  { return nil }
func (f *fakeDriver) ResumeSync(context.Context) error { return nil }
func (f *fakeDriver) Outdate(context.Context) error    { return nil }

func (f *fakeDriver) Status() driver.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeDriver) Wait(ctx context.Context, cond func(driver.Status) bool) error {
	for {
		f.mu.Lock()
		ok, ch := cond(f.st), f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (f *fakeDriver) Down(context.Context) error {
	return f.update(func(s *driver.Status) error {
		if s.State.Role == replication.RolePrimary && f.open > 0 {
			return replication.ErrDeviceInUse
		}
		f.downs++
		return nil
	})
}

// testNode is an in-process daemon with fake drivers on a temp run dir,
// and a config with two resources on nodes a and b.
type testNode struct {
	t       *testing.T
	d       *daemon
	runDir  string
	cfgPath string
	mu      sync.Mutex
	drivers map[string]*fakeDriver
}

const testConfig = `resource r0 {
  protocol C;
  startup { wfc-timeout 0; degr-wfc-timeout 120; }
  on a { device /dev/drbd0; disk %[1]s/a0.img; address 127.0.0.1:7788; meta-disk internal; }
  on b { device /dev/drbd0; disk %[1]s/b0.img; address 127.0.0.1:7789; meta-disk internal; }
}
resource r1 {
  on a { device /dev/drbd3; disk %[1]s/a1.img; address 127.0.0.1:7790; meta-disk internal; }
  on b { device /dev/drbd3; disk %[1]s/b1.img; address 127.0.0.1:7791; meta-disk internal; }
}
`

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	dir, err := os.MkdirTemp("", "gdd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &testNode{t: t, runDir: filepath.Join(dir, "run"), cfgPath: filepath.Join(dir, "drbd.conf"), drivers: map[string]*fakeDriver{}}
	require.NoError(t, os.WriteFile(n.cfgPath, []byte(fmt.Sprintf(testConfig, dir)), 0o600))
	n.d = newDaemon(n.runDir, "a", zap.NewNop())
	n.d.newDriver = func(opts driver.Options) (resourceDriver, error) {
		f := newFakeDriver(opts)
		n.mu.Lock()
		n.drivers[opts.Config.Name] = f
		n.mu.Unlock()
		return f, nil
	}
	l, err := control.Listen(socketPath(n.runDir))
	require.NoError(t, err)
	srv := control.NewServer(n.d, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, <-done)
	})
	return n
}

func (n *testNode) driver(name string) *fakeDriver {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.drivers[name]
}

// run runs one command line against the node, as gdrbd or as drbdadm.
func (n *testNode) run(asDrbdadm bool, args ...string) (code int, stdout, stderr string) {
	var o bytes.Buffer
	code, stderr = n.runTo(&o, asDrbdadm, args...)
	return code, o.String(), stderr
}

func (n *testNode) runTo(stdout io.Writer, asDrbdadm bool, args ...string) (code int, stderr string) {
	var e bytes.Buffer
	env := &cliEnv{ConfigPath: n.cfgPath, RunDir: n.runDir, Node: "a", AsDrbdadm: asDrbdadm,
		Stdout: stdout, Stderr: &e, Stdin: strings.NewReader("")}
	code = run(env, args)
	return code, e.String()
}

// firstWrite is a buffer that tells when something was first written.
type firstWrite struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() == 0 {
		close(w.written)
	}
	return w.b.Write(p)
}

func (w *firstWrite) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (n *testNode) ok(args ...string) string {
	n.t.Helper()
	code, out, errOut := n.run(false, args...)
	require.Equal(n.t, 0, code, "gdrbd %v: %s", args, errOut)
	return out
}

func TestDaemonUserStory(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "r0")
	require.Equal(t, "Secondary/Unknown\n", n.ok("role", "r0"))
	require.Equal(t, "WFConnection\n", n.ok("cstate", "r0"))
	require.Equal(t, "Inconsistent/DUnknown\n", n.ok("dstate", "r0"))
	require.Equal(t, "r0 role:Secondary\n  disk:Inconsistent\n  peer connection:Connecting\n\n", n.ok("status"))

	code, _, errOut := n.run(false, "primary", "r0")
	require.Equal(t, 17, code)
	require.Equal(t, "0: State change failed: (-2) Need access to UpToDate data\n", errOut)

	n.ok("primary", "r0", "--force")
	require.Equal(t, "Primary/Unknown\n", n.ok("role", "r0"))
	require.Equal(t, "UpToDate/DUnknown\n", n.ok("dstate", "r0"))

	// An NBD client holds the device: demotion and down are refused with
	// DRBD's text and exit code.
	f := n.driver("r0")
	f.mu.Lock()
	f.open = 1
	f.mu.Unlock()
	code, _, errOut = n.run(false, "secondary", "r0")
	require.Equal(t, 11, code)
	require.Equal(t, "0: State change failed: (-12) Device is held open by someone\n", errOut)
	code, _, errOut = n.run(true, "secondary", "r0")
	require.Equal(t, 11, code)
	require.Equal(t, "0: State change failed: (-12) Device is held open by someone\n"+
		"Command 'drbdsetup-84 secondary 0' terminated with exit code 11\n", errOut)
	code, _, _ = n.run(false, "down", "r0")
	require.Equal(t, 11, code)
	f.mu.Lock()
	f.open = 0
	f.mu.Unlock()

	n.ok("secondary", "r0")
	require.Equal(t, "Secondary/Unknown\n", n.ok("role", "r0"))
	n.ok("down", "r0")
	require.Equal(t, 1, f.downs)
	require.True(t, n.d.isEmpty())
	select {
	case <-n.d.empty:
	default:
		t.Fatal("the last down did not tell the daemon it is empty")
	}
	// Down again: already down is success, as drbdsetup down.
	n.ok("down", "r0")
}

func TestUnconfigured(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	for _, v := range []string{"role", "cstate", "secondary", "primary"} {
		code, out, errOut := n.run(false, v, "r1")
		require.Equal(t, 10, code, v)
		require.Empty(t, out)
		require.Equal(t, "3: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\n", errOut, v)
		code, _, errOut = n.run(true, v, "r1")
		require.Equal(t, 10, code, v)
		require.Contains(t, errOut, "Command 'drbdsetup-84 "+v+" 3' terminated with exit code 10\n")
	}
	code, _, errOut := n.run(false, "status", "r1")
	require.Equal(t, 10, code)
	require.Equal(t, "r1: No such resource\n", errOut)
	require.Equal(t, "", n.ok("status"))
	require.Equal(t, "version: 8.4.11 (api:1/proto:86-101)\nbuilt-in\n", n.ok("status", "--proc"))
	require.Equal(t, "[]\n", n.ok("status", "--json"))
	// Unknown names are drbdadm's config error.
	code, _, errOut = n.run(false, "role", "nope")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "'nope' not defined in your config")
}

func TestUpTwiceAndUpPrimary(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	// Fresh metadata (UUID 4, no history): --primary forces.
	n.ok("up", "r1", "--primary")
	require.Equal(t, "Primary/Unknown\n", n.ok("role", "r1"))
	code, _, errOut := n.run(false, "up", "r1")
	require.Equal(t, 10, code)
	require.Equal(t, "3: Failure: (161) Minor or volume exists already (delete it first)\n", errOut)
	// adjust leaves an up resource alone and ups the rest.
	n.ok("adjust", "all")
	require.Equal(t, "Primary/Unknown\nSecondary/Unknown\n", n.ok("role", "r1")+n.ok("role", "r0"))
	require.Equal(t, "r0 role:Secondary\n  disk:Inconsistent\n  peer connection:Connecting\n\n"+
		"r1 role:Primary\n  disk:UpToDate\n  peer connection:Connecting\n\n", n.ok("status", "all"))
	proc := n.ok("status", "--proc")
	require.Contains(t, proc, " 0: cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r-----\n")
	require.Contains(t, proc, "\n 3: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r-----\n")
	n.ok("disconnect", "r1")
	code, _, errOut = n.run(false, "disconnect", "r1")
	require.Equal(t, 11, code)
	require.Equal(t, "r1: State change failed: (-9) Can not disconnect a StandAlone device\n", errOut)
	code, _, _ = n.run(false, "invalidate-remote", "r1")
	require.Equal(t, 11, code)
	code, _, _ = n.run(false, "verify", "r1")
	require.Equal(t, 11, code)
	n.ok("down", "all")
	require.True(t, n.d.isEmpty())
}

func TestOfflineVerbsRefuseWhileUp(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "r0")
	for _, v := range [][]string{{"create-md", "r0", "--force"}, {"dump-md", "r0"}, {"apply-al", "r0"}, {"wipe-md", "r0", "--force"}, {"get-gi", "r0"}} {
		code, _, errOut := n.run(false, v...)
		require.Equal(t, 20, code, v)
		require.Equal(t, "gdrbd: Device is in use by the gdrbd daemon; run 'gdrbd down r0' first\n", errOut, v)
	}
	// new-current-uuid goes to the daemon instead.
	n.ok("new-current-uuid", "r0")
}

func TestWait(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "r0")
	// wfc-timeout 0 waits forever: run it in the background and connect.
	done := make(chan int, 1)
	go func() {
		c, _, _ := n.run(false, "wait-connect", "r0")
		done <- c
	}()
	_ = n.driver("r0").update(func(s *driver.Status) error {
		s.State.Conn, s.State.Peer, s.State.PDsk = replication.Connected, replication.RoleSecondary, replication.Inconsistent
		return nil
	})
	require.Equal(t, 0, <-done)
	require.Equal(t, "r0 role:Secondary\n  disk:Inconsistent\n  peer role:Secondary\n    replication:Established peer-disk:Inconsistent\n\n", n.ok("status", "r0"))

	// wait-sync draws the progress until the resync ends.
	_ = n.driver("r0").update(func(s *driver.Status) error {
		s.State.Conn = replication.SyncTarget
		s.Progress = replication.SyncProgress{Running: true, TotalKiB: 65536, LeftKiB: 32768, ElapsedMs: 2000}
		return nil
	})
	out := &firstWrite{written: make(chan struct{})}
	done2 := make(chan int, 1)
	go func() {
		c, _ := n.runTo(out, false, "wait-sync", "r0")
		done2 <- c
	}()
	<-out.written
	require.Contains(t, out.String(), "r0/0 SyncTarget Inconsistent/Inconsistent [")
	require.Contains(t, out.String(), "sync'ed: 53.0% (32768/65536)K finish: 0:00:01 speed: 16,384 K/sec")
	_ = n.driver("r0").update(func(s *driver.Status) error {
		s.State.Conn, s.State.Disk, s.State.PDsk = replication.Connected, replication.UpToDate, replication.UpToDate
		s.Progress = replication.SyncProgress{}
		return nil
	})
	require.Equal(t, 0, <-done2)
	require.True(t, strings.HasSuffix(out.String(), "r0/0 Connected UpToDate/UpToDate \n"), "%q", out.String())
}

func TestWaitConnectTimeout(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "r0")
	code, _, errOut := n.run(false, "wait-connect", "r0", "--timeout", "1")
	require.Equal(t, 5, code)
	require.Contains(t, errOut, "timed out")
}

func TestShellVerbs(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	require.Equal(t, "/dev/drbd0\n", n.ok("sh-dev", "r0"))
	require.Equal(t, "3\n", n.ok("sh-minor", "r1"))
	require.Equal(t, "0\n3\n", n.ok("sh-minor", "all"))
	require.Equal(t, "r0 r1\n", n.ok("sh-resources"))
	// The hidden drbdadm verb answers as drbdadm.
	code, _, errOut := n.run(false, "drbdadm", "role", "r0")
	require.Equal(t, 10, code)
	require.Contains(t, errOut, "Command 'drbdsetup-84 role 0' terminated with exit code 10\n")
}

func TestRunLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := runLock(dir)
	require.NoError(t, err)
	require.NoError(t, writePidFile(dir))
	_, err = runLock(dir)
	require.ErrorContains(t, err, "another gdrbd daemon runs for "+dir+" (pid "+fmt.Sprint(os.Getpid())+")")
	require.NoError(t, f.Close())
	f, err = runLock(dir)
	require.NoError(t, err)
	f.Close()
}

func TestSyncMarks(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "r0")
	f := n.driver("r0")
	for i := 0; i < 10; i++ {
		_ = f.update(func(s *driver.Status) error {
			s.State.Conn = replication.SyncTarget
			s.Progress = replication.SyncProgress{Running: true, TotalKiB: 1 << 20, LeftKiB: uint64(1<<20 - i*4096), ElapsedMs: int64(i) * 3000}
			return nil
		})
		n.d.sampleMarks()
	}
	v := n.d.lookup("r0").volume()
	// The oldest of the last six marks: 15 s back.
	require.Equal(t, int64(12000), v.Mark.ElapsedMs)
	// A new run drops the old marks.
	_ = f.update(func(s *driver.Status) error {
		s.Progress = replication.SyncProgress{Running: true, TotalKiB: 1 << 19, LeftKiB: 1 << 19, ElapsedMs: 0}
		return nil
	})
	n.d.sampleMarks()
	require.Equal(t, int64(0), n.d.lookup("r0").volume().Mark.ElapsedMs)
	require.Equal(t, uint64(1<<19), n.d.lookup("r0").volume().Mark.LeftKiB)
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	n.ok("up", "all")
	n.ok("primary", "r1", "--force")
	n.ok("shutdown")
	require.True(t, n.d.isEmpty())
	require.Equal(t, 1, n.driver("r0").downs)
	require.Equal(t, 1, n.driver("r1").downs)
	select {
	case <-n.d.empty:
	default:
		t.Fatal("shutdown did not tell the daemon it is empty")
	}
	require.Equal(t, "", n.ok("status"))
}

// A daemon that decided to stop turns away requests that would add a
// resource, so none is started in a process about to exit.
func TestStoppingDaemonRefusesUp(t *testing.T) {
	t.Parallel()
	n := newTestNode(t)
	require.True(t, n.d.stopIfEmpty())
	resp := n.d.Handle(context.Background(), &control.Request{Op: control.OpUp, Resource: "r0", ConfigPath: n.cfgPath})
	require.Equal(t, control.KindStopping, resp.Kind)
	require.True(t, n.d.isEmpty())
	require.Equal(t, "stopping", control.KindStopping.String())
}

// shutdown reports it when a resource could not be taken down cleanly
// (the daemon forgets it anyway and exits); detach of a disk already
// detached is nothing to do, exit 0, as drbdadm's (SS_NOTHING_TO_DO).
func TestShutdownFailureAndDetachTwice(t *testing.T) {
	n := newTestNode(t)
	n.ok("up", "r0")
	n.ok("detach", "r0")
	n.ok("detach", "r0")
	n.ok("attach", "r0")
	n.ok("primary", "r0", "--force")
	f := n.driver("r0")
	f.mu.Lock()
	f.open = 1
	f.mu.Unlock()
	code, _, errOut := n.run(false, "shutdown")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "down failed for r0")
}
