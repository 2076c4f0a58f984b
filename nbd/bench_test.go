package nbd

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

const benchSize = 256 << 20

// benchThroughServer runs b.N 4 KiB random requests through a server on
// a unix socket, `depth` of them in flight (as the kernel or fio keep
// them), and measures request-to-reply throughput.
func benchThroughServer(b *testing.B, typ uint16, depth int) {
	dev := newFileDev(b, benchSize)
	_, path := startServer(b, Config{Backend: DeviceBackend{Dev: dev}})
	c := dial(b, path)
	c.goExport(false)
	page := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	window := make(chan struct{}, depth)
	done := make(chan struct{})
	readLen := func(uint64) int { return 4096 }
	if typ == cmdWrite {
		readLen = nil
	}
	go func() {
		defer close(done)
		for range b.N {
			rp := c.readReply(readLen)
			if rp.errno != 0 {
				b.Errorf("errno %d", rp.errno)
			}
			<-window
		}
	}()
	b.SetBytes(4096)
	b.ResetTimer()
	for i := range b.N {
		window <- struct{}{}
		off := uint64(r.IntN(benchSize/4096)) * 4096
		if typ == cmdWrite {
			c.request(cmdWrite, 0, uint64(i), off, 4096, page)
		} else {
			c.request(cmdRead, 0, uint64(i), off, 4096, nil)
		}
	}
	<-done
}

// benchDirect is the same I/O pattern straight at the backend, with the
// same number of goroutines in flight: the server's overhead is the
// difference.
func benchDirect(b *testing.B, write bool, depth int) {
	dev := newFileDev(b, benchSize)
	be := DeviceBackend{Dev: dev}
	b.SetBytes(4096)
	b.SetParallelism(depth)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 2))
		page := make([]byte, 4096)
		for pb.Next() {
			off := int64(r.IntN(benchSize/4096)) * 4096
			var err error
			if write {
				err = be.WriteAt(context.Background(), page, off, false)
			} else {
				err = be.ReadAt(context.Background(), page, off)
			}
			require.NoError(b, err)
		}
	})
}

func BenchmarkRandWrite4kServerQD32(b *testing.B) { benchThroughServer(b, cmdWrite, 32) }
func BenchmarkRandRead4kServerQD32(b *testing.B)  { benchThroughServer(b, cmdRead, 32) }
func BenchmarkRandWrite4kServerQD1(b *testing.B)  { benchThroughServer(b, cmdWrite, 1) }
func BenchmarkRandRead4kServerQD1(b *testing.B)   { benchThroughServer(b, cmdRead, 1) }
func BenchmarkRandWrite4kDirect(b *testing.B)     { benchDirect(b, true, 32) }
func BenchmarkRandRead4kDirect(b *testing.B)      { benchDirect(b, false, 32) }
