package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/nbd"
	"github.com/gdrbd/gdrbd/replication"
)

// A fresh pair: full initial sync, writes through the NBD backend of the
// Primary land byte-identical on the Secondary, then the roles swap.
func TestPairSyncReplicateSwitchover(t *testing.T) {
	t.Parallel()
	// Both disk I/O paths: native AIO (where the temp dir takes
	// O_DIRECT) and the thread pool.
	for _, syncIO := range []bool{false, true} {
		t.Run(map[bool]string{false: "native-aio", true: "thread-pool"}[syncIO], func(t *testing.T) {
			t.Parallel()
			testPairSyncReplicateSwitchover(t, syncIO)
		})
	}
}

func testPairSyncReplicateSwitchover(t *testing.T, syncIO bool) {
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{syncIO: syncIO})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	st := a.res.Status()
	if !syncIO && directIOWorks(t) {
		require.True(t, st.AsyncIO, "native AIO not used on an O_DIRECT disk")
		require.True(t, b.res.Status().AsyncIO)
	} else {
		require.False(t, st.AsyncIO)
	}
	require.Equal(t, replication.RolePrimary, st.State.Role)
	require.Equal(t, replication.RoleSecondary, st.State.Peer)
	require.True(t, st.Attached)
	require.NotZero(t, st.UUIDs[0])
	require.Zero(t, st.Stats.OOS)
	require.NotEmpty(t, st.NBD.Socket)
	require.Equal(t, replication.MDFConsistent|replication.MDFWasUpToDate, st.Flags&(replication.MDFConsistent|replication.MDFWasUpToDate))
	size := st.SizeBytes
	require.Equal(t, size, a.res.Size())

	// Writes of several sizes, one larger than a core request (split),
	// one at the very end of the device.
	writes := []struct {
		off int64
		n   int
	}{{0, 4096}, {8192, 512}, {1 << 20, 3<<20 + 4096}, {size - 8192, 8192}, {5 << 20, 64 << 10}}
	for i, w := range writes {
		p := pattern(uint64(i+1), w.n)
		require.NoError(t, a.res.WriteAt(ctx, p, w.off, i <= 1)) // FUA
		got := make([]byte, w.n)
		require.NoError(t, a.res.ReadAt(ctx, got, w.off))
		require.True(t, bytes.Equal(p, got), "read back write %d", i)
	}
	require.NoError(t, a.res.Flush(ctx))
	if !syncIO && directIOWorks(t) {
		// The NBD flush on the Primary and the Secondary's epoch flushes
		// went through native AIO, not the pool, and so did the aligned
		// FUA write on both nodes.
		for _, n := range []*testNode{a, b} {
			var flushes, fua int64
			require.NoError(t, n.res.call(ctx, func() { flushes, fua = n.res.disk.aioFlushes.Load(), n.res.disk.aioFUA.Load() }))
			require.Positive(t, flushes, "%s: no flush through native AIO", n.name)
			require.Positive(t, fua, "%s: no FUA write through native AIO", n.name)
		}
	}
	// One write at a time: packets and completions ran on the goroutine
	// that received them (no hand-off to the loop), on both nodes.
	for _, n := range []*testNode{a, b} {
		require.Positive(t, n.res.inlineRuns.Load(), "%s: no input ran inline", n.name)
	}
	// Protocol C: every acknowledged write is on the peer's disk already.
	requireSameData(t, nodes, size)

	require.NoError(t, a.res.WriteZeroes(ctx, 1<<20, 64<<10, nbdZero(false)))
	require.NoError(t, a.res.Trim(ctx, 2<<20, 1<<20, true))
	zero := make([]byte, 64<<10)
	got := make([]byte, 64<<10)
	require.NoError(t, a.res.ReadAt(ctx, got, 1<<20))
	require.Equal(t, zero, got)
	requireSameData(t, nodes, size)

	// The Secondary refuses I/O as read-only (EPERM for NBD clients).
	err := b.res.WriteAt(ctx, make([]byte, 4096), 0, false)
	require.ErrorIs(t, err, replication.ErrNotPrimary)

	// Switch over: demote alpha, promote bravo, write there.
	require.NoError(t, a.res.Secondary(ctx))
	require.Empty(t, a.res.Status().NBD.Socket)
	// As with DRBD, the peer learns of the demotion from P_STATE; promoting
	// before that is "Multiple primaries not allowed by config".
	waitState(t, ctx, b, "peer Secondary", func(s Status) bool { return s.State.Peer == replication.RoleSecondary })
	require.NoError(t, b.res.Primary(ctx, false))
	waitState(t, ctx, a, "peer Primary", func(s Status) bool { return s.State.Peer == replication.RolePrimary })
	p := pattern(99, 128<<10)
	require.NoError(t, b.res.WriteAt(ctx, p, 7<<20, true))
	requireSameData(t, nodes, size)
	require.Equal(t, p, a.data(t, size)[7<<20:7<<20+128<<10])

	// Down on both: demote, disconnect, detach clean.
	require.NoError(t, b.res.Down(ctx))
	require.NoError(t, a.res.Down(ctx))
	require.ErrorIs(t, a.res.Attach(ctx), ErrDown)
	st = a.res.Status()
	require.Equal(t, replication.StandAlone, st.State.Conn)
	require.Equal(t, replication.Diskless, st.State.Disk)
}

// After a disconnect the Primary marks what it writes out of sync; the
// reconnect resyncs exactly those blocks and nothing else.
func TestReconnectResyncsOnlyChanges(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	require.NoError(t, b.res.Disconnect(ctx))
	waitState(t, ctx, a, "WFConnection", func(s Status) bool { return s.State.Conn == replication.WFConnection })
	require.ErrorIs(t, b.res.Disconnect(ctx), replication.ErrAlreadyStandAlone)

	blocks := []int64{3, 17, 18, 1000, 4095, 5000}
	for i, blk := range blocks {
		require.NoError(t, a.res.WriteAt(ctx, pattern(uint64(100+i), 4096), blk*4096, false))
	}
	require.NoError(t, a.res.WriteAt(ctx, pattern(7, 64<<10), 3<<20, true))
	oos := uint64(len(blocks))*4 + 64
	st := a.res.Status()
	require.Equal(t, oos, st.Stats.OOS)
	require.Equal(t, replication.DUnknown, st.State.PDsk)
	require.NotZero(t, st.UUIDs[1], "a Primary that lost its peer starts a new data generation")
	nsBefore := st.Stats.NS
	nrBefore := b.res.Status().Stats.NR

	require.NoError(t, b.res.Connect(ctx, false))
	for _, n := range nodes {
		waitState(t, ctx, n, "UpToDate/UpToDate", func(s Status) bool { return upToDateBoth(s) && s.Stats.OOS == 0 })
	}
	require.Equal(t, oos, a.res.Status().Stats.NS-nsBefore, "bytes sent by the sync source (KiB)")
	require.Equal(t, oos, b.res.Status().Stats.NR-nrBefore, "bytes received by the sync target (KiB)")
	require.Equal(t, "sync source", a.res.Status().Progress.Decision)
	requireSameData(t, nodes, a.res.Size())
}

// A peer that does not know the shared secret is refused, logged, and
// retried: the pair never gets past the handshake.
func TestWrongSharedSecretRefused(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{net: [2]string{
		`cram-hmac-alg sha1; shared-secret "right";`,
		`cram-hmac-alg sha1; shared-secret "wrong";`,
	}})
	up(t, ctx, nodes)
	for _, n := range nodes {
		waitState(t, ctx, n, "authentication failure", func(s Status) bool {
			return strings.Contains(s.LastError, "Authentication of peer failed")
		})
	}
	for _, n := range nodes {
		require.True(t, n.logged("Authentication of peer failed"), n.name)
		for _, e := range n.logs.FilterMessage("state change").All() {
			require.NotEqual(t, "Connected", e.ContextMap()["new_cs"], "%s got connected", n.name)
		}
	}
	// A wrong secret is not a network error: no point in trying again.
	// As DRBD ("Discarding network configuration."), both go StandAlone.
	for _, n := range nodes {
		waitState(t, ctx, n, "StandAlone", func(s Status) bool { return s.State.Conn == replication.StandAlone })
		require.True(t, n.logged("Discarding network configuration."), n.name)
	}
}

// With the same secret the pair authenticates and connects.
func TestSharedSecretAccepted(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	secret := `cram-hmac-alg sha256; shared-secret "s3cret";`
	nodes := newPair(t, pairOpts{net: [2]string{secret, secret}})
	up(t, ctx, nodes)
	for _, n := range nodes {
		waitState(t, ctx, n, "Connected", connected)
		require.True(t, n.logged("Peer authenticated"), n.name)
	}
}

// Different replication protocols: both sides give up (StandAlone) with
// a clear error.
func TestProtocolMismatchStandAlone(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{protocol: [2]string{"C", "A"}})
	up(t, ctx, nodes)
	for _, n := range nodes {
		st := waitState(t, ctx, n, "StandAlone", func(s Status) bool {
			return s.State.Conn == replication.StandAlone && s.LastError != ""
		})
		require.Contains(t, st.LastError, "incompatible protocol settings", n.name)
	}
}

// Real NBD clients against the Primary's socket: nbdinfo sees the
// export, qemu-io writes and reads a pattern, and the Secondary's disk
// has it.
func TestRealNBDClients(t *testing.T) {
	t.Parallel()
	nbdinfo := tooltest.Require(t, "nbdinfo")
	qemuIO := tooltest.Require(t, "qemu-io")
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a := nodes[alpha]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	sock := a.res.Status().NBD.Socket
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	uri := "nbd+unix:///r0?socket=" + sock

	out, err := exec.CommandContext(ctx, nbdinfo, "--json", uri).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var info struct {
		Exports []struct {
			Size     int64 `json:"export-size"`
			CanFlush bool  `json:"can_flush"`
			CanFUA   bool  `json:"can_fua"`
		} `json:"exports"`
	}
	require.NoError(t, json.Unmarshal(out, &info), "%s", out)
	require.Len(t, info.Exports, 1)
	require.Equal(t, a.res.Size(), info.Exports[0].Size)
	require.True(t, info.Exports[0].CanFlush && info.Exports[0].CanFUA)

	out, err = exec.CommandContext(ctx, qemuIO, "-f", "raw",
		"-c", "write -P 0xab 1m 192k", "-c", "write -P 0xcd -f 4m 8k", "-c", "flush",
		"-c", "read -P 0xab 1m 192k", "-c", "read -P 0xcd 4m 8k", uri).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "Pattern verification failed", "%s", out)
	require.Contains(t, string(out), "read 196608/196608", "%s", out)

	size := a.res.Size()
	requireSameData(t, nodes, size)
	onB := nodes[bravo].data(t, size)
	require.Equal(t, bytes.Repeat([]byte{0xab}, 192<<10), onB[1<<20:1<<20+192<<10])
	require.Equal(t, bytes.Repeat([]byte{0xcd}, 8<<10), onB[4<<20:4<<20+8<<10])
	st := a.res.Status().NBD
	require.NotZero(t, st.Writes)
	require.NotZero(t, st.Flushes)
	require.NotZero(t, st.FUA)

	// A client that just exited does not hold the device: secondary
	// right after it succeeds, as after close() of /dev/drbdN.
	out, err = exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "read 0 4k", uri).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, a.res.Secondary(ctx))
}

// Secondary is refused while an NBD client is connected, as DRBD refuses
// while /dev/drbdN is open, and succeeds once it left.
func TestSecondaryRefusedWhileClientConnected(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a := nodes[alpha]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	c, err := net.Dial("unix", a.res.Status().NBD.Socket)
	require.NoError(t, err)
	waitState(t, ctx, a, "one NBD client", func(s Status) bool { return s.NBD.Clients == 1 })
	err = a.res.Secondary(ctx)
	require.ErrorIs(t, err, replication.ErrDeviceInUse)
	var se replication.StateErr
	require.True(t, errors.As(err, &se))
	require.Equal(t, int32(-12), se.Code())
	require.Equal(t, "Device is held open by someone", err.Error())
	require.ErrorIs(t, a.res.Down(ctx), replication.ErrDeviceInUse)
	require.Equal(t, replication.RolePrimary, a.res.Status().State.Role)

	require.NoError(t, c.Close())
	waitState(t, ctx, a, "no NBD client", func(s Status) bool { return s.NBD.Clients == 0 })
	require.NoError(t, a.res.Secondary(ctx))
	_, err = os.Stat(filepath.Join(a.dir, "r0.nbd"))
	require.ErrorIs(t, err, os.ErrNotExist, "the socket is removed on demotion")
}

// The Primary dies without any shutdown (its files are closed as a
// killed process's would be). Attach finds the metadata unclean, applies
// the activity log (the extents that had writes in flight), and the
// reconnect resyncs exactly those extents from the crashed Primary.
func TestCrashedPrimaryAppliesActivityLog(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	// Three 4 MiB extents get hot.
	for i, off := range []int64{0, 8 << 20, 16<<20 + 4096} {
		require.NoError(t, a.res.WriteAt(ctx, pattern(uint64(i+50), 64<<10), off, false))
	}
	require.GreaterOrEqual(t, a.res.Status().Stats.AL, uint64(1))
	a.res.stop() // kill -9

	waitState(t, ctx, b, "peer lost", func(s Status) bool { return s.State.Conn == replication.WFConnection })
	dev, err := os.Open(a.disk)
	require.NoError(t, err)
	dev.Close()
	sb := superblockOf(t, a.disk)
	require.False(t, sb.Clean(), "the crashed node's metadata is unclean")

	a.res = a.newResource(t, false)
	require.NoError(t, a.res.Attach(ctx))
	entries := a.logs.FilterMessage("applied activity log of an unclean shutdown").All()
	require.Len(t, entries, 1)
	const marked = 3 * 4096
	require.EqualValues(t, marked, entries[0].ContextMap()["marked_kib"])
	st := a.res.Status()
	require.Equal(t, uint64(marked), st.Stats.OOS)
	require.NotZero(t, st.Flags&replication.MDFCrashedPrimary, "flags %#x", st.Flags)

	require.NoError(t, a.res.Connect(ctx, false))
	for _, n := range nodes {
		waitState(t, ctx, n, "UpToDate/UpToDate", func(s Status) bool { return upToDateBoth(s) && s.Stats.OOS == 0 })
	}
	require.Equal(t, uint64(marked), a.res.Status().Stats.NS, "the crashed Primary resynced the applied extents")
	requireSameData(t, nodes, a.res.Size())

	// A clean down leaves clean metadata.
	require.NoError(t, a.res.Down(ctx))
	sb = superblockOf(t, a.disk)
	require.True(t, sb.Clean())
}

func superblockOf(t testing.TB, path string) metadata.Superblock {
	t.Helper()
	dev, err := blockdevOpen(path)
	require.NoError(t, err)
	defer dev.Close()
	md, err := metadata.Open(dev, metadata.Internal())
	require.NoError(t, err)
	return md.SB
}

// new-current-uuid --clear-bitmap on a fresh connected pair skips the
// initial sync.
func TestSkipInitialSync(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	up(t, ctx, nodes)
	waitState(t, ctx, nodes[alpha], "Connected", connected)
	require.NoError(t, nodes[alpha].res.NewCurrentUUID(ctx, true))
	for _, n := range nodes {
		st := waitState(t, ctx, n, "UpToDate/UpToDate", upToDateBoth)
		require.Zero(t, st.Stats.OOS)
		require.Zero(t, st.Stats.NS)
	}
	require.NoError(t, nodes[bravo].res.Primary(ctx, false))
	require.NoError(t, nodes[bravo].res.WriteAt(ctx, pattern(3, 8192), 0, true))
	require.Equal(t, pattern(3, 8192), nodes[alpha].data(t, 8192))
}

// Handlers run with the environment drbdadm 8.4 gives them.
func TestHandlerEnvironment(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	out := filepath.Join(t.TempDir(), "env.txt")
	nodes := newPair(t, pairOpts{handlers: [2]string{"", `before-resync-target "env > ` + out + `.tmp && mv ` + out + `.tmp ` + out + `";`}})
	b := nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	require.Eventually(t, func() bool { return len(b.logs.FilterMessage("handler finished").All()) > 0 }, 30*time.Second, 20*time.Millisecond)
	env, err := os.ReadFile(out)
	require.NoError(t, err)
	for _, want := range []string{
		"DRBD_RESOURCE=r0", "DRBD_MINOR=7", "DRBD_VOLUME=0", "DRBD_PEER_ADDRESS=127.0.0.1", "DRBD_PEER_AF=ipv4",
		"DRBD_PEER=alpha", "DRBD_LL_DISK=" + b.disk, "DRBD_BACKING_DEV=" + b.disk, "DRBD_CONF=drbd.conf", "HOME=/",
	} {
		require.Contains(t, strings.Split(string(env), "\n"), want)
	}
	require.EqualValues(t, 0, b.logs.FilterMessage("handler finished").All()[0].ContextMap()["exit_code"])
}

// With KernelNBD, a host without the nbd module says why there is no
// /dev/nbdX and never shows a path; with the module the device, its
// DRBD-style links and their removal on demotion are checked.
func TestKernelNBDStatus(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{kernelNBD: true})
	a := nodes[alpha]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	st := a.res.Status().NBD
	require.NotEmpty(t, st.Socket)
	link := filepath.Join(a.dir, "dev", "drbd7")
	if st.Device == "" {
		require.True(t, strings.HasPrefix(st.KernelUnavailable, "kernel NBD"), st.KernelUnavailable)
		_, err := os.Lstat(link)
		require.ErrorIs(t, err, os.ErrNotExist)
	} else {
		require.Empty(t, st.KernelUnavailable)
		require.True(t, strings.HasPrefix(st.Device, "/dev/nbd"), st.Device)
		dst, err := os.Readlink(link)
		require.NoError(t, err)
		require.Equal(t, st.Device, dst)
		require.Zero(t, st.Clients, "the kernel's own sockets are not clients")
	}
	require.NoError(t, a.res.Secondary(ctx))
	_, err := os.Lstat(link)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// Loop devices as backing disks: block devices, O_DIRECT, exclusive open.
func TestLoopDevices(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	var disks [2]string
	for i := range disks {
		disks[i] = blockdevtest.Loop(t, tempDisk(t, 24<<20))
	}
	nodes := newPair(t, pairOpts{disks: disks})
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	a := nodes[alpha]
	require.NoError(t, a.res.WriteAt(ctx, pattern(5, 1<<20), 2<<20, true))
	requireSameData(t, nodes, a.res.Size())
	// The backing device is held exclusively while attached.
	_, err := blockdevOpenExclusive(disks[alpha])
	require.Error(t, err)
	for _, n := range nodes {
		require.NoError(t, n.res.Down(ctx))
	}
	f, err := blockdevOpenExclusive(disks[alpha])
	require.NoError(t, err)
	f.Close()
}

var _ = context.Background

// Protocols A and B: completions come after the hand-off to the socket
// (A) or the peer's P_RECV_ACK (B); a flush waits for the barrier acks,
// after which the peer's disk has everything.
func TestProtocolsAB(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"A", "B"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			nodes := newPair(t, pairOpts{protocol: [2]string{proto, proto}})
			a := nodes[alpha]
			up(t, ctx, nodes)
			initialSync(t, ctx, nodes)
			require.Equal(t, proto, a.res.Status().Protocol.String())
			size := a.res.Size()
			for i := range 64 {
				require.NoError(t, a.res.WriteAt(ctx, pattern(uint64(i), 16<<10), int64(i)*(300<<10)%(size-(16<<10)), false))
			}
			require.NoError(t, a.res.Flush(ctx))
			requireSameData(t, nodes, size)
			require.Zero(t, a.res.Status().Stats.PE)
		})
	}
}

// Online verify finds a block changed behind DRBD's back and marks it
// out of sync; the next connect resyncs it (with csums-alg, only the
// changed block's data moves).
func TestVerifyFindsDifference(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	algs := `verify-alg sha1; csums-alg md5;`
	nodes := newPair(t, pairOpts{net: [2]string{algs, algs}})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	// Corrupt one block on bravo's disk directly.
	f, err := os.OpenFile(b.disk, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), 5<<20)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())

	require.NoError(t, a.res.Verify(ctx))
	st := waitState(t, ctx, a, "verify done", func(s Status) bool { return s.State.Conn == replication.Connected })
	require.True(t, a.logged("Online verify found 1 4k block out of sync!"))
	require.Equal(t, uint64(4), st.Stats.OOS)

	require.NoError(t, b.res.Disconnect(ctx))
	require.NoError(t, b.res.Connect(ctx, false))
	for _, n := range nodes {
		waitState(t, ctx, n, "in sync", func(s Status) bool { return upToDateBoth(s) && s.Stats.OOS == 0 })
	}
	requireSameData(t, nodes, a.res.Size())
}

// The admin commands that only change state: outdate, pause/resume-sync,
// invalidate on a StandAlone node, and their refusals.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)

	require.ErrorIs(t, a.res.Verify(ctx), replication.ErrNoVerifyAlg)
	require.ErrorIs(t, a.res.Attach(ctx), replication.ErrAlreadyAttached)
	require.Error(t, a.res.Connect(ctx, false))

	require.NoError(t, b.res.PauseSync(ctx))
	waitState(t, ctx, b, "user pause", func(s Status) bool { return s.State.UserISP })
	require.Error(t, b.res.PauseSync(ctx))
	require.NoError(t, b.res.ResumeSync(ctx))
	require.False(t, b.res.Status().State.UserISP)

	// invalidate on a StandAlone Secondary: everything out of sync, and
	// the next connect resyncs all of it from alpha. (invalidate while
	// Connected hangs in the core: see the package report.)
	require.NoError(t, b.res.Disconnect(ctx))
	require.NoError(t, b.res.Invalidate(ctx))
	st := b.res.Status()
	require.Equal(t, replication.Inconsistent, st.State.Disk)
	require.Equal(t, uint64(b.res.Status().SizeBytes/1024), st.Stats.OOS)
	nsBefore := a.res.Status().Stats.NS
	require.NoError(t, b.res.Connect(ctx, false))
	for _, n := range nodes {
		waitState(t, ctx, n, "resynced", func(s Status) bool { return upToDateBoth(s) && s.Stats.OOS == 0 })
	}
	require.Equal(t, uint64(b.res.Status().SizeBytes/1024), a.res.Status().Stats.NS-nsBefore)

	require.NoError(t, b.res.Disconnect(ctx))
	require.NoError(t, b.res.Outdate(ctx))
	require.Equal(t, replication.Outdated, b.res.Status().State.Disk)
	require.NoError(t, b.res.Detach(ctx))
	require.Equal(t, replication.Diskless, b.res.Status().State.Disk)
	require.False(t, b.res.Status().Attached)
	require.ErrorIs(t, b.res.Detach(ctx), replication.ErrIsDiskless)
	// Re-attach: the Outdated flag was persisted.
	require.NoError(t, b.res.Attach(ctx))
	require.Equal(t, replication.Outdated, b.res.Status().State.Disk)
}

// With max-buffers at its minimum and more writes in flight than that
// while the Secondary's disk is stuck, its data reader stops reading
// until the backlog drains; then every write arrives.
func TestMaxBuffersBackpressure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{net: [2]string{"max-buffers 32;", "max-buffers 32;"}})
	a, b := nodes[alpha], nodes[bravo]
	var armed atomic.Bool
	release, open := gate(t)
	b.res.diskHook = func(op replication.DiskOp) {
		if armed.Load() && op.Op == replication.OpWrite {
			<-release
		}
	}
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	armed.Store(true)
	size := a.res.Size()
	const depth, each = 64, 4
	errs := make(chan error, depth)
	for g := range depth {
		go func() {
			var err error
			for i := range each {
				off := int64(g*each+i) * (64 << 10)
				if err = a.res.WriteAt(ctx, pattern(uint64(g*each+i), 64<<10), off%size, false); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	waitState(t, ctx, b, "a full receive backlog", func(Status) bool { return b.res.pauses.Load() > 0 })
	require.GreaterOrEqual(t, b.res.backlog.Load(), int64(32), "max-buffers' worth of pages held")
	require.Positive(t, b.res.Status().Stats.UA, "writes waiting for their ack")
	open()
	for range depth {
		require.NoError(t, <-errs)
	}
	require.NoError(t, a.res.Flush(ctx))
	requireSameData(t, nodes, size)
}

// Concurrent writes to the same blocks land in the same order on both
// disks (DRBD's complete_conflicting_writes): the later one waits for the
// earlier one's completion.
func TestOverlappingWritesStayIdentical(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a := nodes[alpha]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	const writers, each = 24, 6
	errs := make(chan error, writers)
	for g := range writers {
		go func() {
			var err error
			for i := range each {
				// Ranges that overlap in shifting ways, some above one
				// core request (split into pieces).
				off := int64(1<<20) + int64((g+i)%4)*(32<<10)
				n := 64<<10 + (g%3)*(512<<10)
				if err = a.res.WriteAt(ctx, pattern(uint64(g*100+i), n), off, false); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range writers {
		require.NoError(t, <-errs)
	}
	require.NoError(t, a.res.Flush(ctx))
	requireSameData(t, nodes, a.res.Size())
}

// The driver holds back a write that overlaps one in flight until that
// one completed; writes elsewhere pass.
func TestOverlappingWriteWaits(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a := nodes[alpha]
	release, open := gate(t) // registered after the stop: runs first
	seen := make(chan byte, 16)
	a.res.diskHook = func(op replication.DiskOp) {
		if op.Op == replication.OpWrite && op.Offset >= 1<<20 && op.Offset < 2<<20 {
			seen <- op.Data[0]
			if op.Data[0] == 1 {
				<-release
			}
		}
	}
	require.NoError(t, a.res.Attach(ctx))
	require.NoError(t, a.res.Primary(ctx, true))
	fill := func(v byte, n int) []byte { return bytes.Repeat([]byte{v}, n) }
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { done1 <- a.res.WriteAt(ctx, fill(1, 64<<10), 1<<20, false) }()
	require.Equal(t, byte(1), <-seen)
	go func() { done2 <- a.res.WriteAt(ctx, fill(2, 8<<10), 1<<20+32<<10, false) }()
	// A write elsewhere is not held back.
	require.NoError(t, a.res.WriteAt(ctx, fill(3, 4096), 8<<20, false))
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, a.res.call(ctx, func() { n = len(a.res.deferred) }))
		return n == 1
	}, 10*time.Second, time.Millisecond)
	open()
	require.NoError(t, <-done1)
	require.Equal(t, byte(2), <-seen)
	require.NoError(t, <-done2)
	got := make([]byte, 64<<10)
	require.NoError(t, a.res.ReadAt(ctx, got, 1<<20))
	want := fill(1, 64<<10)
	copy(want[32<<10:], fill(2, 8<<10))
	require.Equal(t, want, got)
}

// The Secondary dies while writes are in flight: every write on the
// Primary still completes, what the peer may lack is marked out of sync,
// and the restarted Secondary is resynced to identical data.
func TestSecondaryCrashUnderWrites(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	size := a.res.Size()

	var stopWriters atomic.Bool
	var written atomic.Int64
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := 0; !stopWriters.Load() && err == nil; i++ {
				off := (int64(g)*(3<<20) + int64(i)*(36<<10)) % (size - 32<<10)
				err = a.res.WriteAt(ctx, pattern(uint64(g<<32|i), 32<<10), off&^4095, i%5 == 0)
				written.Add(1)
			}
			errs <- err
		}()
	}
	waitState(t, ctx, a, "writes replicated", func(s Status) bool { return written.Load() > 100 })
	b.res.stop() // kill -9
	waitState(t, ctx, a, "peer lost", func(s Status) bool { return s.State.Conn == replication.WFConnection })
	before := written.Load()
	waitState(t, ctx, a, "writes while alone", func(s Status) bool { return written.Load() > before+50 })
	stopWriters.Store(true)
	for range 8 {
		require.NoError(t, <-errs)
	}
	require.NotZero(t, a.res.Status().Stats.OOS)

	b.res = b.newResource(t, false)
	require.NoError(t, b.res.Attach(ctx))
	require.NoError(t, b.res.Connect(ctx, false))
	for _, n := range nodes {
		waitState(t, ctx, n, "in sync", func(s Status) bool { return upToDateBoth(s) && s.Stats.OOS == 0 })
	}
	requireSameData(t, nodes, size)
}

// A Resource stopped hard (a crash) with NBD requests started through
// nbd.AsyncBackend still in flight answers each of them exactly once, with
// ErrShutdown where the loop never finished it, and only once the disk no
// longer uses their buffers; a request started afterwards fails at once.
func TestStopEndsAsyncRequests(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{})
	a := nodes[alpha]
	release, open := gate(t)
	reached := make(chan struct{}, 16)
	var diskBusy atomic.Int32
	a.res.diskHook = func(op replication.DiskOp) {
		if op.Op == replication.OpWrite && op.Offset >= 1<<20 {
			diskBusy.Add(1)
			reached <- struct{}{}
			<-release
			diskBusy.Add(-1)
		}
	}
	require.NoError(t, a.res.Attach(ctx))
	require.NoError(t, a.res.Primary(ctx, true))
	const n = 4
	var calls [n]atomic.Int32
	results := make(chan error, 2*n)
	for i := range n {
		a.res.StartWrite(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i+1)<<20, false, func(err error) {
			calls[i].Add(1)
			if err != nil && diskBusy.Load() != 0 {
				err = fmt.Errorf("answered while the disk still used the buffer: %w", err)
			}
			results <- err
		})
	}
	for range n {
		<-reached
	}
	stopped := make(chan struct{})
	go func() { a.res.stop(); close(stopped) }()
	<-a.res.done // the loop is gone; the disk still holds the writes
	open()
	<-stopped
	for range n {
		err := <-results
		if err != nil {
			require.ErrorIs(t, err, nbd.ErrShutdown)
			require.NotContains(t, err.Error(), "still used")
		}
	}
	for i := range calls {
		require.Equal(t, int32(1), calls[i].Load(), "request %d answered %d times", i, calls[i].Load())
	}
	late := make(chan error, 1)
	a.res.StartRead(make([]byte, 4096), 0, func(err error) { late <- err })
	require.ErrorIs(t, <-late, nbd.ErrShutdown)
}

// Many writes in flight at once: past inlineAIO the loop hands its
// batches to the submitter goroutine; every write still lands.
func TestManyWritesInFlightThroughSubmitter(t *testing.T) {
	t.Parallel()
	if !directIOWorks(t) {
		t.Skip("no O_DIRECT in the temp dir: no native AIO")
	}
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{size: 64 << 20})
	a := nodes[alpha]
	require.NoError(t, a.res.Attach(ctx))
	require.NoError(t, a.res.Primary(ctx, true))
	require.True(t, a.res.Status().AsyncIO)
	const n = 512
	errs := make(chan error, n)
	for round := range 4 {
		for i := range n {
			p := bytes.Repeat([]byte{byte(round*7 + i)}, 4096)
			a.res.StartWrite(p, int64(i)*4096, false, func(err error) { errs <- err })
		}
		for range n {
			require.NoError(t, <-errs)
		}
	}
	var handed int64
	require.NoError(t, a.res.call(ctx, func() { handed = a.res.disk.handedOff.Load() }))
	require.Positive(t, handed, "no batch went through the submitter")
	got := make([]byte, n*4096)
	require.NoError(t, a.res.ReadAt(ctx, got, 0))
	for i := range n {
		require.Equal(t, byte(3*7+i), got[i*4096], "block %d", i)
	}
}

// A Secondary learns that an epoch's writes are done in its AIO reaper's
// delivery, and the epoch's flush it submits there is run by the reaper
// itself (blockdev: FLUSHES SUBMITTED FROM DONE; the driver's reaperPump)
// instead of going through the kernel's AIO fsync worker: two thread
// wake-ups less per epoch on the path the Secondary's disk waits on.
func TestSecondaryEpochFlushRunByReaper(t *testing.T) {
	t.Parallel()
	if !directIOWorks(t) {
		t.Skip("no O_DIRECT in the temp dir: no native AIO")
	}
	ctx := testCtx(t)
	nodes := newPair(t, pairOpts{size: 16 << 20})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	require.True(t, b.res.Status().AsyncIO)
	flushes := func() (n int64) {
		require.NoError(t, b.res.call(ctx, func() { n = b.res.disk.aio.ReaperFlushes() }))
		return n
	}
	before := flushes()
	const epochs = 16
	for i := range epochs {
		// One write per epoch: the Flush's barrier closes it, and the
		// Secondary flushes once the write is done (early, or at the
		// barrier).
		require.NoError(t, a.res.WriteAt(ctx, pattern(uint64(i), 4096), int64(i)*8192, false))
		require.NoError(t, a.res.Flush(ctx))
	}
	require.Positive(t, flushes()-before, "no epoch flush was run by b's reaper")
	requireSameData(t, nodes, a.res.Size())
}

// gate is a channel a disk hook waits on until open is called; the test's
// end opens it too (registered after the Resource's stop, so it runs
// first and no stop waits for a blocked hook).
func gate(t *testing.T) (release chan struct{}, open func()) {
	release = make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	return release, open
}
