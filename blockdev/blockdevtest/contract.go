// Package blockdevtest checks that a blockdev.Device honours the Device
// contract. Every implementation in the project runs it; so can wrappers
// written elsewhere (a network-backed device, a test double).
package blockdevtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
)

// Config describes the device under test (a plain value).
type Config struct {
	// Open returns a fresh, zero-filled device of exactly size bytes; the
	// suite closes it.
	Open func(t *testing.T, size int64) blockdev.Device
	// Align is the write alignment the device demands (direct I/O), 0 or 1
	// for none. Unaligned writes are then expected to fail with
	// blockdev.ErrUnaligned.
	Align int64
}

// Run runs the contract suite as subtests.
func Run(t *testing.T, cfg Config) {
	align := max(cfg.Align, 1)
	const size = 4 << 20
	open := func(t *testing.T) blockdev.Device {
		d := cfg.Open(t, size)
		t.Cleanup(func() { d.Close() })
		require.Equal(t, int64(size), d.Size())
		return d
	}
	buf := func(n int, seed uint64) []byte {
		b := blockdev.AlignedBuffer(n)
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}

	t.Run("FreshReadsZero", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		p := blockdev.AlignedBuffer(64 << 10)
		_, err := d.ReadAt(p, size-int64(len(p)))
		require.NoError(t, err)
		require.True(t, bytes.Equal(p, make([]byte, len(p))))
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		for i, c := range []struct{ off, n int64 }{
			{0, 4096}, {8192, 64 << 10}, {size - 4096, 4096}, {1 << 20, 1 << 20},
			{512, 512}, {4096 * 3, 4096 * 5},
		} {
			if c.off%align != 0 || c.n%align != 0 {
				continue
			}
			w := buf(int(c.n), uint64(i))
			n, err := d.WriteAt(w, c.off)
			require.NoError(t, err)
			require.Equal(t, int(c.n), n)
			r := blockdev.AlignedBuffer(int(c.n))
			n, err = d.ReadAt(r, c.off)
			require.NoError(t, err)
			require.Equal(t, int(c.n), n)
			require.True(t, bytes.Equal(w, r), "case %d", i)
		}
		require.NoError(t, d.Flush())
	})

	t.Run("UnalignedReadAndMemory", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		w := buf(16384, 7)
		_, err := d.WriteAt(w, 4096)
		require.NoError(t, err)
		// An odd offset and an odd memory address: always allowed for reads.
		raw := make([]byte, 1001+1)
		p := raw[1:]
		_, err = d.ReadAt(p, 4096+333)
		require.NoError(t, err)
		require.Equal(t, w[333:333+1001], p)
		// Aligned range from unaligned memory: allowed for writes too.
		raw = make([]byte, 4096+1)
		copy(raw[1:], w[:4096])
		_, err = d.WriteAt(raw[1:], 3*4096*max(1, align/4096))
		require.NoError(t, err)
	})

	t.Run("UnalignedWrite", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		w := buf(1000, 3)
		_, err := d.WriteAt(w, 100)
		if align > 1 {
			require.ErrorIs(t, err, blockdev.ErrUnaligned)
			return
		}
		require.NoError(t, err)
		r := make([]byte, 1200)
		_, err = d.ReadAt(r, 0)
		require.NoError(t, err)
		require.Equal(t, make([]byte, 100), r[:100])
		require.Equal(t, w, r[100:1100])
		require.Equal(t, make([]byte, 100), r[1100:])
	})

	t.Run("OutOfRange", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		p := blockdev.AlignedBuffer(8192)
		_, err := d.ReadAt(p, size-4096)
		require.ErrorIs(t, err, blockdev.ErrOutOfRange)
		_, err = d.ReadAt(p, -4096)
		require.ErrorIs(t, err, blockdev.ErrOutOfRange)
		w := buf(8192, 9)
		_, err = d.WriteAt(w, size-4096)
		require.ErrorIs(t, err, blockdev.ErrOutOfRange)
		// Nothing was written.
		_, err = d.ReadAt(p[:4096], size-4096)
		require.NoError(t, err)
		require.Equal(t, make([]byte, 4096), p[:4096])
		require.ErrorIs(t, blockdev.Discard(d, size-4096, 8192), blockdev.ErrOutOfRange)
		require.ErrorIs(t, blockdev.WriteZeroes(d, size, 4096), blockdev.ErrOutOfRange)
		// Zero-length at the very end is fine.
		_, err = d.ReadAt(nil, size)
		require.NoError(t, err)
	})

	t.Run("DiscardAndZeroes", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		w := buf(1<<20, 11)
		_, err := d.WriteAt(w, 0)
		require.NoError(t, err)
		require.NoError(t, blockdev.Discard(d, 64<<10, 128<<10))
		require.NoError(t, blockdev.WriteZeroes(d, 512<<10, 4096*3))
		if align == 1 {
			require.NoError(t, blockdev.Discard(d, 900<<10+100, 1000))
			copy(w[900<<10+100:], make([]byte, 1000))
		}
		copy(w[64<<10:], make([]byte, 128<<10))
		copy(w[512<<10:], make([]byte, 4096*3))
		r := blockdev.AlignedBuffer(1 << 20)
		_, err = d.ReadAt(r, 0)
		require.NoError(t, err)
		require.True(t, bytes.Equal(w, r))
		require.NoError(t, d.Flush())
	})

	t.Run("ConcurrentDisjoint", func(t *testing.T) {
		t.Parallel()
		d := open(t)
		const workers, per = 8, 16
		blk := 4096 * max(1, align/4096)
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for g := range workers {
			wg.Go(func() {
				for i := range per {
					off := int64((g*per + i) * int(blk))
					p := bytes.Repeat([]byte{byte(g*per + i + 1)}, int(blk))
					if _, err := d.WriteAt(p, off); err != nil {
						errs <- err
						return
					}
					q := make([]byte, blk)
					if _, err := d.ReadAt(q, off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(p, q) {
						errs <- fmt.Errorf("block %d read back wrong", g*per+i)
						return
					}
				}
				if err := d.Flush(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		q := make([]byte, blk)
		for b := range workers * per {
			_, err := d.ReadAt(q, int64(b)*blk)
			require.NoError(t, err)
			require.Equal(t, bytes.Repeat([]byte{byte(b + 1)}, int(blk)), q)
		}
	})
}
