package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// netnsPair creates the namespaces gd-a-N and gd-b-N (N: this test
// process, so that two runs on one machine do not meet) joined by a veth
// pair (10.99.1.1/24 and 10.99.1.2/24), and removes them when the test
// ends.
func netnsPair(t *testing.T) (nsA, nsB string) {
	t.Helper()
	nsA, nsB = fmt.Sprintf("gd-a-%d", os.Getpid()), fmt.Sprintf("gd-b-%d", os.Getpid())
	t.Cleanup(func() {
		for _, ns := range []string{nsA, nsB} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	// The veth ends are created inside the namespaces, so their names
	// never meet another run's in the host namespace.
	for _, args := range [][]string{
		{"netns", "add", nsA},
		{"netns", "add", nsB},
		{"link", "add", "gdv-a", "netns", nsA, "type", "veth", "peer", "name", "gdv-b", "netns", nsB},
		{"-n", nsA, "addr", "add", "10.99.1.1/24", "dev", "gdv-a"},
		{"-n", nsB, "addr", "add", "10.99.1.2/24", "dev", "gdv-b"},
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "lo", "up"},
		{"-n", nsA, "link", "set", "gdv-a", "up"},
		{"-n", nsB, "link", "set", "gdv-b", "up"},
	} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	return nsA, nsB
}

// TestNetns: the seed's configuration with the namespaces' addresses,
// port 7788 on both sides, each daemon in its own namespace (started by
// `ip netns exec ... gdrbd up`). The NBD socket is a file, reachable from
// the host.
func TestNetns(t *testing.T) {
	t.Parallel()
	needTools(t, "ip", "qemu-io")
	nsA, nsB := netnsPair(t)
	a, b := newPair(t, shortDir(t, "gdns"), 32<<20, "10.99.1.1:7788", "10.99.1.2:7788", nsA, nsB)
	syncPair(t, a, b)
	qemuIO(t, a.uri(), "write -P 0x3c 1M 2M", "flush")
	a.ok("secondary", "r0")
	b.ok("primary", "r0")
	qemuIO(t, b.uri(), "read -P 0x3c 1M 2M")
	// The replication really crosses the veth: cut it and b waits.
	out, err := exec.Command("ip", "-n", nsB, "link", "set", "gdv-b", "down").CombinedOutput()
	require.NoError(t, err, "%s", out)
	a.ok("disconnect", "r0")
	qemuIO(t, b.uri(), "write -P 0x4d 8M 1M", "flush")
	out, err = exec.Command("ip", "-n", nsB, "link", "set", "gdv-b", "up").CombinedOutput()
	require.NoError(t, err, "%s", out)
	a.ok("connect", "r0")
	a.ok("wait-sync", "r0", "--timeout", "60")
	b.ok("secondary", "r0")
	a.ok("primary", "r0")
	qemuIO(t, a.uri(), "read -P 0x4d 8M 1M", "read -P 0x3c 1M 2M")
	a.ok("down", "r0")
	b.ok("down", "r0")
}
