package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const drbddisk = "/etc/ha.d/resource.d/drbddisk"

// drbddiskRun runs heartbeat's unchanged drbddisk script with gdrbd in
// the place of /sbin/drbdadm: in a private mount namespace the gdrbd
// binary is bind-mounted over /sbin/drbdadm, so the script's drbdadm is
// gdrbd invoked by the name drbdadm (and the host's drbdadm stays as it
// is). The node's run dir, name and config reach gdrbd through
// GDRBD_RUN_DIR, GDRBD_NODE and GDRBD_CONFIG.
func drbddiskRun(n *node, args ...string) result {
	n.t.Helper()
	script := "mount --bind " + gdrbdBin + " /sbin/drbdadm && exec " + drbddisk
	for _, a := range args {
		script += " " + a
	}
	return n.exec(nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
}

// TestDrbddisk drives gdrbd with heartbeat's drbddisk resource script
// (drbd-utils), as the seed's haresources line does: start promotes,
// stop demotes, status answers in LSB codes.
func TestDrbddisk(t *testing.T) {
	t.Parallel()
	needTools(t, "unshare", "mount", "qemu-io", drbddisk)
	a, _ := loopbackPair(t, 16<<20)
	a.ok("create-md", "r0", "--force")

	// Down: drbdadm role fails as for an unallocated minor, and the
	// script falls back to /proc/drbd (absent: Unconfigured).
	r := drbddiskRun(a, "r0", "status")
	require.Equal(t, 3, r.code, r)
	require.Equal(t, "stopped (Unconfigured)\n", r.stdout)

	a.ok("up", "r0")
	a.ok("primary", "r0", "--force") // the initial sync source...
	a.ok("secondary", "r0")          // ...handed to heartbeat
	r = drbddiskRun(a, "r0", "status")
	require.Equal(t, 3, r.code, r)
	require.Equal(t, "stopped (Secondary)\n", r.stdout)

	r = drbddiskRun(a, "r0", "start")
	require.Equal(t, 0, r.code, r)
	require.Equal(t, "Primary/Unknown\n", a.ok("role", "r0"))
	r = drbddiskRun(a, "r0", "status")
	require.Equal(t, 0, r.code, r)
	require.Equal(t, "running (Primary)\n", r.stdout)
	// start again: already Primary is success.
	r = drbddiskRun(a, "r0", "start")
	require.Equal(t, 0, r.code, r)

	// stop while the device is in use: drbdadm secondary fails with
	// exit 11 three times, and so does the script (exit 1).
	release := holdClient(t, a, a.uri())
	r = drbddiskRun(a, "r0", "stop")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "0: State change failed: (-12) Device is held open by someone\n"+
		"Command 'drbdsetup-84 secondary 0' terminated with exit code 11\n")
	release()
	waitFor(t, a, "the NBD client to leave", 20e9, func() bool { return a.statusJSON().Devices[0].NBD.Clients == 0 })
	r = drbddiskRun(a, "r0", "stop")
	require.Equal(t, 0, r.code, r)
	r = drbddiskRun(a, "r0", "status")
	require.Equal(t, 3, r.code, r)
	require.Equal(t, "stopped (Secondary)\n", r.stdout)

	// Without a resource name the script means all, and status refuses.
	r = drbddiskRun(a, "status")
	require.Equal(t, 10, r.code, r)
	a.ok("down", "r0")
}
