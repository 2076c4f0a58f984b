package bench

import (
	"context"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
)

// BenchmarkWritePath drives an in-process pair (both nodes' drivers and
// cores, the NBD server, this package's NBD client) with 4 KiB random
// writes over the NBD socket, `depth` in flight on one connection; "sync"
// is depth 1 with a FLUSH after every write. allocs/op counts both nodes
// and the client (the client: about 3 per request). Profile it:
//
//	go test -run '^$' -bench WritePath -benchmem -cpuprofile cpu.out -memprofile mem.out ./bench
//	go tool pprof -top bench.test cpu.out
func BenchmarkWritePath(b *testing.B) {
	for _, mode := range []struct {
		name string
		o    InProcOptions
	}{
		{"protocol-C", InProcOptions{}},
		{"protocol-A", InProcOptions{Protocol: "A"}},
		// The Secondary's flush per epoch (DRBD's default write ordering)
		// left out: what it costs.
		{"protocol-C-noflush", InProcOptions{Disk: "disk-flushes no;"}},
		{"standalone", InProcOptions{StandAlone: true}},
	} {
		for _, w := range []struct {
			name  string
			depth int
			flush bool
		}{{"qd16", 16, false}, {"qd1", 1, false}, {"sync", 1, true}} {
			b.Run(mode.name+"/"+w.name, func(b *testing.B) {
				benchWrites(b, mode.o, w.depth, w.flush)
			})
		}
	}
}

func benchWrites(b *testing.B, o InProcOptions, depth int, flush bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Not b.TempDir: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "gbw")
	require.NoError(b, err)
	defer os.RemoveAll(dir)
	p, err := StartInProc(ctx, dir, o)
	require.NoError(b, err)
	defer p.Close()
	c, err := DialNBD(p.Socket, "r0")
	require.NoError(b, err)
	defer c.Close()
	blocks := c.Size() / 4096
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	for g := range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			buf := blockdev.AlignedBuffer(4096)
			for next.Add(1) <= int64(b.N) {
				if err := c.Write(buf, rng.Int64N(blocks)*4096); err != nil {
					b.Error(err)
					return
				}
				if flush {
					if err := c.Flush(); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "iops")
}

// The in-process pair and the client work: writes replicate, a flush
// returns, and the pair goes down cleanly.
func TestInProcPair(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, o := range []InProcOptions{{Size: 16 << 20}, {Size: 16 << 20, StandAlone: true}} {
		dir := shortDir(t)
		p, err := StartInProc(ctx, dir, o)
		require.NoError(t, err)
		c, err := DialNBD(p.Socket, "r0")
		require.NoError(t, err)
		require.Greater(t, c.Size(), int64(15<<20))
		buf := blockdev.AlignedBuffer(4096)
		for i := range buf {
			buf[i] = byte(i)
		}
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				require.NoError(t, c.Write(buf, int64(i)*4096))
			}()
		}
		wg.Wait()
		require.NoError(t, c.Flush())
		err = c.Write(buf, c.Size())
		require.ErrorIs(t, err, ErrNBD, "a write past the end fails")
		require.NoError(t, c.Close())
		st := p.A.Status()
		require.Equal(t, uint64(33), st.NBD.Writes)
		if !o.StandAlone {
			require.Equal(t, uint64(32*4), p.B.Status().Stats.DW, "the Secondary wrote 128 KiB")
		}
		require.NoError(t, p.Close())
		require.NoError(t, p.Close())
	}
}
