package blockdev_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
)

func TestMemContract(t *testing.T) {
	t.Parallel()
	blockdevtest.Run(t, blockdevtest.Config{
		Open: func(t *testing.T, size int64) blockdev.Device { return blockdev.NewMem(size) },
	})
}

func TestMemSparseGiB(t *testing.T) {
	t.Parallel()
	m := blockdev.NewMem(1 << 40) // 1 TiB
	p := bytes.Repeat([]byte{0xab}, 4096)
	for _, off := range []int64{0, 1 << 30, 1<<40 - 4096} {
		_, err := m.WriteAt(p, off)
		require.NoError(t, err)
	}
	require.LessOrEqual(t, m.Allocated(), int64(3*64<<10))
	q := make([]byte, 4096)
	_, err := m.ReadAt(q, 1<<30)
	require.NoError(t, err)
	require.Equal(t, p, q)
	_, err = m.ReadAt(q, 1<<35)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 4096), q)
	// Discarding a whole chunk frees it.
	require.NoError(t, m.Discard(0, 64<<10))
	require.LessOrEqual(t, m.Allocated(), int64(2*64<<10))
}

func TestMemCloneIndependent(t *testing.T) {
	t.Parallel()
	m := blockdev.NewMem(1 << 20)
	_, err := m.WriteAt([]byte("hello"), 100)
	require.NoError(t, err)
	c := m.Clone()
	_, err = m.WriteAt([]byte("world"), 100)
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = c.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	require.NoError(t, m.Close())
	_, err = m.ReadAt(got, 0)
	require.ErrorIs(t, err, blockdev.ErrClosed)
}

func TestBufferPool(t *testing.T) {
	t.Parallel()
	var p blockdev.BufferPool
	for _, n := range []int{1, 512, 4096, 4097, 65536, 1 << 20, 4 << 20, 5 << 20} {
		b := p.Get(n)
		require.Len(t, b, n)
		require.True(t, blockdev.IsAligned(b), "size %d", n)
		p.Put(b)
		b2 := p.Get(n)
		require.True(t, blockdev.IsAligned(b2))
		require.Len(t, b2, n)
	}
	// Foreign buffers are refused, so they never come back out unaligned.
	raw := make([]byte, 4097)
	p.Put(raw[1:])
	require.True(t, blockdev.IsAligned(p.Get(4096)))
	require.True(t, blockdev.IsAligned(blockdev.AlignedBuffer(12345)))
}
