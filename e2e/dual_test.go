package e2e

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTwoPrimariesOverlappingWrites: allow-two-primaries, both nodes
// Primary, and both write the same 64 blocks at once through their NBD
// sockets (8 writers in all, writes of 1-3 blocks). Writes cross on the
// wire; the conflict resolution (P_SUPERSEDED / P_RETRY_WRITE) must leave
// both disks identical, UpToDate with nothing out of sync. Before it,
// each node applied its own write and then the peer's.
func TestTwoPrimariesOverlappingWrites(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, b := loopbackPair(t, 16<<20)
	conf, err := os.ReadFile(a.cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(a.cfg, []byte(strings.Replace(string(conf), "  net {\n", "  net {\n    allow-two-primaries yes;\n", 1)), 0o600))
	syncPair(t, a, b)
	b.ok("primary", "r0")
	require.Equal(t, "Primary/Primary\n", a.ok("role", "r0"))
	require.Equal(t, "Primary/Primary\n", b.ok("role", "r0"))

	const hot = 64 // blocks
	const writers, writes = 4, 500
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for ni, nd := range []*node{a, b} {
		for w := 0; w < writers; w++ {
			cl, err := dialNBD(filepath.Join(nd.runDir, "r0.nbd"), "r0")
			require.NoError(t, err)
			wg.Add(1)
			go func(seed int64) {
				defer wg.Done()
				defer cl.Close()
				rng := rand.New(rand.NewSource(seed))
				for i := 0; i < writes; i++ {
					n := 1 + rng.Intn(3)
					off := uint64(rng.Intn(hot-n+1)) * 4096
					buf := bytes.Repeat([]byte{byte(seed), byte(i), byte(i >> 8), 0x5a}, n*1024)
					if err := cl.send(nbdCmdWrite, 0, uint64(i+1), off, uint32(len(buf)), buf); err != nil {
						errs <- err
						return
					}
					if _, errno, err := cl.recv(); err != nil || errno != 0 {
						errs <- fmt.Errorf("write %d at %d: errno %d, %v", i, off, errno, err)
						return
					}
				}
			}(int64(ni*writers + w + 1))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	read := func(nd *node) []byte {
		cl, err := dialNBD(filepath.Join(nd.runDir, "r0.nbd"), "r0")
		require.NoError(t, err)
		defer cl.Close()
		got, err := cl.read(0, hot*4096)
		require.NoError(t, err)
		return got
	}
	x, y := read(a), read(b)
	for blk := 0; blk < hot; blk++ {
		require.True(t, bytes.Equal(x[blk*4096:(blk+1)*4096], y[blk*4096:(blk+1)*4096]),
			"block %d differs: a has %x..., b has %x...", blk, x[blk*4096:blk*4096+8], y[blk*4096:blk*4096+8])
	}
	// Writes did cross: the nodes logged partial overlaps (equal ranges
	// are resolved without a log line).
	crossed := 0
	for _, nd := range []*node{a, b} {
		log, err := os.ReadFile(filepath.Join(nd.runDir, "gdrbd.log"))
		require.NoError(t, err)
		crossed += strings.Count(string(log), "Concurrent writes detected")
	}
	t.Logf("%d partial overlaps logged", crossed)
	require.NotZero(t, crossed, "no writes crossed: the test tested nothing")
	for _, nd := range []*node{a, b} {
		require.Equal(t, "UpToDate/UpToDate\n", nd.ok("dstate", "r0"))
		require.Equal(t, uint64(0), nd.statusJSON().Connections[0].PeerDevices[0].OutOfSync)
	}
	a.ok("down", "r0")
	b.ok("down", "r0")
}
