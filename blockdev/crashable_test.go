package blockdev_test

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
)

func TestCrashableContract(t *testing.T) {
	t.Parallel()
	blockdevtest.Run(t, blockdevtest.Config{
		Open: func(t *testing.T, size int64) blockdev.Device {
			c, err := blockdev.NewCrashable(blockdev.NewMem(size), blockdev.CrashPer4K)
			require.NoError(t, err)
			return c
		},
	})
}

func readAll(t *testing.T, d blockdev.Device) []byte {
	t.Helper()
	p := make([]byte, d.Size())
	_, err := d.ReadAt(p, 0)
	require.NoError(t, err)
	return p
}

func TestCrashKeepsFlushedAndInitial(t *testing.T) {
	t.Parallel()
	base := blockdev.NewMem(64 << 10)
	_, err := base.WriteAt(bytes.Repeat([]byte{9}, 4096), 0) // before wrapping: durable
	require.NoError(t, err)
	c, err := blockdev.NewCrashable(base, blockdev.CrashPer512)
	require.NoError(t, err)
	_, err = c.WriteAt(bytes.Repeat([]byte{1}, 8192), 4096)
	require.NoError(t, err)
	require.NoError(t, c.Flush())
	require.Equal(t, 0, c.Unflushed())
	_, err = c.WriteAt(bytes.Repeat([]byte{2}, 8192), 4096)
	require.NoError(t, err)
	require.Equal(t, 1, c.Unflushed())
	sawOld, sawNew := false, false
	for seed := range uint64(64) {
		got := readAll(t, c.Crash(rand.New(rand.NewPCG(seed, 0))))
		require.Equal(t, bytes.Repeat([]byte{9}, 4096), got[:4096])
		for s := 4096; s < 12288; s += 512 {
			switch got[s] {
			case 1:
				sawOld = true
			case 2:
				sawNew = true
			default:
				t.Fatalf("seed %d: sector at %d holds %d", seed, s, got[s])
			}
			require.Equal(t, bytes.Repeat(got[s:s+1], 512), got[s:s+512], "512-byte sectors are atomic")
		}
	}
	require.True(t, sawOld && sawNew)
	// Durable is exactly the flushed state.
	d := readAll(t, c.Durable())
	require.Equal(t, bytes.Repeat([]byte{1}, 8192), d[4096:12288])
}

func TestCrashPerWriteIsAtomic(t *testing.T) {
	t.Parallel()
	c, err := blockdev.NewCrashable(blockdev.NewMem(1<<20), blockdev.CrashPerWrite)
	require.NoError(t, err)
	for i := range 10 {
		_, err := c.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 64<<10), int64(i)*64<<10)
		require.NoError(t, err)
	}
	kinds := map[int]bool{}
	for seed := range uint64(50) {
		got := readAll(t, c.Crash(rand.New(rand.NewPCG(seed, 7))))
		n := 0
		for i := range 10 {
			w := got[i*64<<10 : (i+1)*64<<10]
			if w[0] == 0 {
				require.Equal(t, make([]byte, 64<<10), w)
				continue
			}
			n++
			require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, 64<<10), w)
		}
		kinds[n] = true
	}
	require.Greater(t, len(kinds), 2, "different seeds keep different subsets")
}

func TestCrashPer4KTearsAtBlocks(t *testing.T) {
	t.Parallel()
	c, err := blockdev.NewCrashable(blockdev.NewMem(1<<20), blockdev.CrashPer4K)
	require.NoError(t, err)
	_, err = c.WriteAt(bytes.Repeat([]byte{7}, 64<<10), 2048) // unaligned: pieces cut at 4 KiB
	require.NoError(t, err)
	torn := false
	for seed := range uint64(20) {
		got := readAll(t, c.Crash(rand.New(rand.NewPCG(seed, 1))))
		// first piece [2048,4096), then whole blocks
		require.Equal(t, bytes.Repeat(got[2048:2049], 2048), got[2048:4096])
		for b := 4096; b < 64<<10; b += 4096 {
			require.Equal(t, bytes.Repeat(got[b:b+1], 4096), got[b:b+4096])
			if got[b] != got[4096] {
				torn = true
			}
		}
	}
	require.True(t, torn)
}

func TestCrashLaterWriteWins(t *testing.T) {
	t.Parallel()
	c, err := blockdev.NewCrashable(blockdev.NewMem(1<<20), blockdev.CrashPerWrite)
	require.NoError(t, err)
	_, err = c.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	require.NoError(t, err)
	_, err = c.WriteAt(bytes.Repeat([]byte{2}, 4096), 0)
	require.NoError(t, err)
	require.NoError(t, blockdev.Discard(c, 4096, 4096))
	seen := map[byte]bool{}
	for seed := range uint64(40) {
		got := readAll(t, c.Crash(rand.New(rand.NewPCG(seed, 3))))
		seen[got[0]] = true
	}
	// 0 (neither), 1 (only the first), 2 (the second, alone or over the first).
	require.Equal(t, map[byte]bool{0: true, 1: true, 2: true}, seen)
}

func TestCrashDeterministic(t *testing.T) {
	t.Parallel()
	c, err := blockdev.NewCrashable(blockdev.NewMem(1<<20), blockdev.CrashPer4K)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		p := bytes.Repeat([]byte{byte(r.IntN(255) + 1)}, 4096*(1+r.IntN(4)))
		_, err := c.WriteAt(p, int64(r.IntN(200))*4096)
		require.NoError(t, err)
	}
	a := readAll(t, c.Crash(rand.New(rand.NewPCG(5, 5))))
	b := readAll(t, c.Crash(rand.New(rand.NewPCG(5, 5))))
	require.Equal(t, a, b)
}

// Flushes racing with writes: a write that completed before a Flush began
// is durable when that Flush returns.
func TestCrashableConcurrentFlush(t *testing.T) {
	t.Parallel()
	c, err := blockdev.NewCrashable(blockdev.NewMem(4<<20), blockdev.CrashPer4K)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				off := int64(g*50+i) * 4096
				_, err := c.WriteAt(bytes.Repeat([]byte{byte(g + 1)}, 4096), off)
				if err != nil {
					panic(err)
				}
				if err := c.Flush(); err != nil {
					panic(err)
				}
				d := c.Durable()
				q := make([]byte, 4096)
				if _, err := d.ReadAt(q, off); err != nil {
					panic(err)
				}
				if q[0] != byte(g+1) {
					panic("flushed write not durable")
				}
			}
		})
	}
	wg.Wait()
}
