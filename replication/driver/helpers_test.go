package driver

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/nbd"
	"github.com/gdrbd/gdrbd/replication"
)

// testNode is one side of a two-node pair running in this process.
type testNode struct {
	name string
	disk string // backing file or loop device
	dir  string // run directory
	rc   *config.Resource
	res  *Resource
	logs *observer.ObservedLogs
	log  *zap.Logger
	// syncIO: no native AIO (Options.SyncIO)
	syncIO bool
}

// pairOpts vary the configuration of a pair; per-node fields are
// [alpha, bravo].
type pairOpts struct {
	size      int64     // backing size (default 24 MiB)
	protocol  [2]string // default C
	net       [2]string // extra net {} options
	disk      string    // extra disk {} options
	handlers  [2]string // handlers {} bodies
	disks     [2]string // backing devices to use instead of files
	kernelNBD bool
	syncIO    bool // no native AIO (Options.SyncIO)
}

const alpha, bravo = 0, 1

var nodeNames = [2]string{"alpha", "bravo"}

// freePort picks a port outside the ephemeral range that both loopback
// addresses can listen on right now, so that the two nodes' listeners and
// the outgoing connections of parallel tests do not collide.
func freePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		ok := true
		for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// tempDisk is a sparse backing file with fresh internal metadata
// (create-md).
func tempDisk(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	createMD(t, p)
	return p
}

// preallocate allocates a backing file's blocks, as a real disk has them
// (writes into holes of a sparse file cost a block allocation each).
func preallocate(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size))
}

func createMD(t testing.TB, path string) {
	t.Helper()
	dev, err := blockdev.Open(path, blockdev.Options{})
	require.NoError(t, err)
	_, err = metadata.Create(dev, metadata.Internal(), metadata.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, dev.Close())
}

// configText is the drbd.conf of a pair; each node parses its own copy
// (they may differ in the per-node options).
func configText(o pairOpts, self int, disks [2]string, port int) string {
	proto := o.protocol[self]
	if proto == "" {
		proto = "C"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "resource r0 {\n")
	fmt.Fprintf(&b, "\tnet { protocol %s; connect-int 1; ping-int 1; ping-timeout 10; socket-check-timeout 1; %s }\n", proto, o.net[self])
	fmt.Fprintf(&b, "\tdisk { resync-rate 400M; c-plan-ahead 0; al-extents 67; %s }\n", o.disk)
	if o.handlers[self] != "" {
		fmt.Fprintf(&b, "\thandlers { %s }\n", o.handlers[self])
	}
	for i, n := range nodeNames {
		fmt.Fprintf(&b, "\ton %s { device /dev/drbd7; disk \"%s\"; address 127.0.0.%d:%d; meta-disk internal; }\n", n, disks[i], i+1, port)
	}
	b.WriteString("}\n")
	return b.String()
}

// newPair creates the disks, configurations and Resources of a pair
// (nothing attached yet). Everything is released when the test ends.
func newPair(t testing.TB, o pairOpts) [2]*testNode {
	t.Helper()
	if o.size == 0 {
		o.size = 24 << 20
	}
	disks := o.disks
	for i := range disks {
		if disks[i] == "" {
			disks[i] = tempDisk(t, o.size)
		}
	}
	port := freePort(t)
	var nodes [2]*testNode
	for i := range nodes {
		src := configText(o, i, disks, port)
		cfg, err := config.Parse("drbd.conf", []byte(src), config.Options{Node: nodeNames[i]})
		require.NoError(t, err, src)
		rc, err := cfg.Resource("r0")
		require.NoError(t, err)
		core, logs := observer.New(zapcore.DebugLevel)
		log := zap.New(core).Named(nodeNames[i])
		n := &testNode{name: nodeNames[i], disk: disks[i], dir: t.TempDir(), rc: rc, logs: logs, log: log, syncIO: o.syncIO}
		n.res = n.newResource(t, o.kernelNBD)
		nodes[i] = n
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			for _, n := range nodes {
				for _, e := range n.logs.All() {
					t.Logf("%s %s %s %v", n.name, e.Level, e.Message, e.ContextMap())
				}
			}
		}
	})
	return nodes
}

// newResource makes a Resource for the node; it is stopped (without any
// clean shutdown) when the test ends, if still running.
func (n *testNode) newResource(t testing.TB, kernelNBD bool) *Resource {
	t.Helper()
	r, err := New(Options{Config: n.rc, Logger: n.log, RunDir: n.dir, KernelNBD: kernelNBD, SyncIO: n.syncIO})
	require.NoError(t, err)
	r.devDir = filepath.Join(n.dir, "dev")
	t.Cleanup(r.stop)
	return r
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// up attaches and connects both nodes.
func up(t testing.TB, ctx context.Context, nodes [2]*testNode) {
	t.Helper()
	for _, n := range nodes {
		require.NoError(t, n.res.Attach(ctx), n.name)
	}
	for _, n := range nodes {
		require.NoError(t, n.res.Connect(ctx, false), n.name)
	}
}

func waitState(t testing.TB, ctx context.Context, n *testNode, what string, cond func(Status) bool) Status {
	t.Helper()
	err := n.res.Wait(ctx, cond)
	st := n.res.Status()
	require.NoError(t, err, "%s: waiting for %s; now %v", n.name, what, st.State)
	return st
}

func connected(s Status) bool { return s.State.Conn == replication.Connected }

func upToDateBoth(s Status) bool {
	return s.State.Conn == replication.Connected && s.State.Disk == replication.UpToDate && s.State.PDsk == replication.UpToDate
}

// initialSync makes alpha Primary with --force and waits for the full
// sync to end.
func initialSync(t testing.TB, ctx context.Context, nodes [2]*testNode) {
	t.Helper()
	waitState(t, ctx, nodes[alpha], "Connected", connected)
	require.NoError(t, nodes[alpha].res.Primary(ctx, true))
	for _, n := range nodes {
		waitState(t, ctx, n, "UpToDate/UpToDate", upToDateBoth)
	}
}

// data reads the replicated area [0, size) of a node's backing device.
func (n *testNode) data(t testing.TB, size int64) []byte {
	t.Helper()
	f, err := os.Open(n.disk)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, size)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

// requireSameData compares both nodes' replicated areas.
func requireSameData(t testing.TB, nodes [2]*testNode, size int64) {
	t.Helper()
	a, b := nodes[alpha].data(t, size), nodes[bravo].data(t, size)
	if !bytes.Equal(a, b) {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("disks differ first at byte %d (4 KiB block %d)", i, i/4096)
			}
		}
	}
}

// pattern is n bytes derived from seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// logged reports whether a node logged an entry containing snippet in
// its message or its "event" field.
func (n *testNode) logged(snippet string) bool {
	for _, e := range n.logs.All() {
		if strings.Contains(e.Message, snippet) {
			return true
		}
		if ev, ok := e.ContextMap()["event"].(string); ok && strings.Contains(ev, snippet) {
			return true
		}
	}
	return false
}

func nbdZero(fua bool) nbd.ZeroOptions { return nbd.ZeroOptions{NoHole: true, FUA: fua} }

func blockdevOpen(path string) (*blockdev.File, error) {
	return blockdev.Open(path, blockdev.Options{})
}

func blockdevOpenExclusive(path string) (*blockdev.File, error) {
	return blockdev.Open(path, blockdev.Options{Exclusive: true})
}

// directIOWorks reports whether backing files in the temp dir get
// O_DIRECT from openDevice (tmpfs does not), so native AIO applies.
func directIOWorks(t testing.TB) bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe.img")
	require.NoError(t, os.WriteFile(p, make([]byte, 4096), 0o600))
	f, err := openDevice(p, false)
	require.NoError(t, err)
	defer f.Close()
	return f.Direct()
}
