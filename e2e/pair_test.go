package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncPair creates metadata on both nodes, brings them up, makes a the
// initial sync source and waits until both are UpToDate.
func syncPair(t *testing.T, a, b *node) {
	t.Helper()
	a.ok("create-md", "r0", "--force")
	b.ok("create-md", "r0", "--force")
	a.ok("up", "r0")
	b.ok("up", "r0")
	a.ok("primary", "r0", "--force")
	a.ok("wait-sync", "r0", "--timeout", "120")
	b.ok("wait-sync", "r0", "--timeout", "120")
	require.Equal(t, "Primary/Secondary\n", a.ok("role", "r0"))
	require.Equal(t, "Secondary/Primary\n", b.ok("role", "r0"))
	require.Equal(t, "Connected\n", a.ok("cstate", "r0"))
	require.Equal(t, "UpToDate/UpToDate\n", a.ok("dstate", "r0"))
	require.Equal(t, "UpToDate/UpToDate\n", b.ok("dstate", "r0"))
}

// TestPairLoopback: two daemons on 127.0.0.1. Initial sync, writes on
// the Primary identical on the Secondary after a switch-over, and a
// disconnect/reconnect that resyncs only what changed.
func TestPairLoopback(t *testing.T) {
	t.Parallel()
	needTools(t, "nbdcopy", "qemu-io", "cmp")
	a, b := loopbackPair(t, 64<<20)
	syncPair(t, a, b)
	require.Equal(t, "r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    replication:Established peer-disk:UpToDate\n\n", a.ok("status"))
	require.Contains(t, b.ok("status", "--proc"), " 0: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----\n")

	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	run(t, "dd", "if=/dev/urandom", "of="+in, "bs=1M", "count=32", "status=none")
	run(t, "nbdcopy", in, a.uri(), "--flush")
	a.ok("secondary", "r0")
	b.ok("primary", "r0")
	out := filepath.Join(dir, "out.bin")
	run(t, "nbdcopy", b.uri(), out)
	run(t, "cmp", "-n", fmt.Sprint(32<<20), in, out)

	// a leaves; b goes on writing: only those 4 MiB are out of sync.
	a.ok("disconnect", "r0")
	require.Equal(t, "StandAlone\n", a.ok("cstate", "r0"))
	require.Equal(t, "r0 role:Secondary\n  disk:UpToDate\n\n", a.ok("status"))
	waitFor(t, b, "b to notice", 30*time.Second, func() bool { return b.ok("cstate", "r0") == "WFConnection\n" })
	qemuIO(t, b.uri(), "write -P 0x77 40M 4M", "flush")
	js := b.statusJSON()
	require.Equal(t, uint64(4096), js.Connections[0].PeerDevices[0].OutOfSync, "%+v", js)
	require.Contains(t, b.ok("status", "--proc"), " oos:4096\n")

	a.ok("connect", "r0")
	a.ok("wait-connect", "r0", "--timeout", "30")
	b.ok("wait-sync", "r0", "--timeout", "60")
	a.ok("wait-sync", "r0", "--timeout", "60")
	require.Equal(t, "UpToDate/UpToDate\n", a.ok("dstate", "r0"))
	require.Equal(t, uint64(0), b.statusJSON().Connections[0].PeerDevices[0].OutOfSync)

	b.ok("secondary", "r0")
	a.ok("primary", "r0")
	qemuIO(t, a.uri(), "read -P 0x77 40M 4M")
	out2 := filepath.Join(dir, "out2.bin")
	run(t, "nbdcopy", a.uri(), out2)
	run(t, "cmp", "-n", fmt.Sprint(32<<20), in, out2)

	// Both down: each daemon exits after its last resource.
	pa, pb := a.daemonPid(), b.daemonPid()
	a.ok("down", "r0")
	b.ok("down", "all")
	require.True(t, waitGone(pa, 20*time.Second))
	require.True(t, waitGone(pb, 20*time.Second))
}

// TestUpPrimaryOneStep: `up --primary` on fresh metadata promotes in one
// step; the peer then syncs from it.
func TestUpPrimaryOneStep(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, b := loopbackPair(t, 16<<20)
	a.ok("create-md", "r0", "--force")
	b.ok("create-md", "r0", "--force")
	a.ok("up", "r0", "--primary")
	require.Equal(t, "Primary/Unknown\n", a.ok("role", "r0"))
	b.ok("up", "r0")
	b.ok("wait-sync", "r0", "--timeout", "60")
	require.Equal(t, "UpToDate/UpToDate\n", b.ok("dstate", "r0"))
	// up of a resource that is up is DRBD's "exists already".
	r := a.gdrbd("up", "r0")
	require.Equal(t, 10, r.code, r)
	require.True(t, strings.Contains(r.stderr, "(161) Minor or volume exists already"), r)
	// adjust leaves it alone.
	a.ok("adjust", "all")
	a.ok("down", "r0")
	b.ok("down", "r0")
}
