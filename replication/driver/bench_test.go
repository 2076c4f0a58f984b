package driver

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/replication"
)

// BenchmarkRandomWrite4k measures 4 KiB random writes through the NBD
// backend of a Primary, 16 in flight: replicated to a connected protocol C
// peer on loopback, and StandAlone (local disk and activity log only).
//
//	go test -run '^$' -bench RandomWrite4k ./replication/driver
func BenchmarkRandomWrite4k(b *testing.B) {
	for _, mode := range []string{"protocol-C", "standalone"} {
		b.Run(mode, func(b *testing.B) {
			ctx := testCtx(b)
			const size = 256 << 20
			var disks [2]string
			for i := range disks {
				disks[i] = tempDisk(b, size)
				preallocate(b, disks[i], size)
			}
			nodes := newPair(b, pairOpts{disks: disks})
			a := nodes[alpha]
			if mode == "standalone" {
				require.NoError(b, a.res.Attach(ctx))
				require.NoError(b, a.res.Primary(ctx, true))
			} else {
				up(b, ctx, nodes)
				waitState(b, ctx, a, "Connected", connected)
				require.NoError(b, a.res.NewCurrentUUID(ctx, true))
				for _, n := range nodes {
					waitState(b, ctx, n, "UpToDate/UpToDate", upToDateBoth)
				}
				require.NoError(b, a.res.Primary(ctx, false))
			}
			blocks := a.res.Size() / 4096
			const depth = 16
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(4096)
			b.ResetTimer()
			for g := range depth {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					buf := blockdev.AlignedBuffer(4096)
					for next.Add(1) <= int64(b.N) {
						if err := a.res.WriteAt(ctx, buf, rng.Int64N(blocks)*4096, false); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "iops")
			if mode != "standalone" {
				require.Equal(b, replication.Connected, a.res.Status().State.Conn)
			}
		})
	}
}
