package metadata_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/metadata"
)

func TestLayoutInternal600MiB(t *testing.T) {
	t.Parallel()
	// The reference numbers from drbdmeta dump-md of a fresh 600 MiB device.
	l, err := metadata.ComputeLayout(metadata.Internal(), 600<<20, 1, 8)
	require.NoError(t, err)
	require.Equal(t, uint32(112), l.MDSizeSect)
	require.Equal(t, int64(629141504), l.MDOffset)
	require.Equal(t, int64(629108736), l.ALByteOffset())
	require.Equal(t, int64(629088256), l.BMByteOffset())
	require.Equal(t, int32(-64), l.ALOffset)
	require.Equal(t, int32(-104), l.BMOffset)
	require.Equal(t, uint64(629088256/512), l.MaxUsableSectors())
	require.Equal(t, int64(20480), l.BitmapAreaBytes())
	require.Equal(t, int64(32768), l.ALBytes())
}

func TestLayoutInternalUnaligned(t *testing.T) {
	t.Parallel()
	// The superblock is the last 4 KiB-aligned 4 KiB block; up to 7
	// sectors of padding follow it.
	l, err := metadata.ComputeLayout(metadata.Internal(), 100<<20+7*512, 1, 8)
	require.NoError(t, err)
	require.Equal(t, int64(100<<20-4096), l.MDOffset)
}

func TestLayoutExternal(t *testing.T) {
	t.Parallel()
	l, err := metadata.ComputeLayout(metadata.Indexed(2), 512<<20, 1, 8)
	require.NoError(t, err)
	require.Equal(t, int64(2*128<<20), l.MDOffset)
	require.Equal(t, uint32(262144), l.MDSizeSect)
	require.Equal(t, int32(8), l.ALOffset)
	require.Equal(t, int32(72), l.BMOffset)
	require.Equal(t, int64(2*128<<20+4096), l.ALByteOffset())
	require.Equal(t, int64(2*128<<20+4096+32768), l.BMByteOffset())
	// (262144 - 72) sectors of bitmap at 4 KiB per bit.
	require.Equal(t, uint64(262144-72)*512*8*8, l.MaxUsableSectors())
	require.Equal(t, "2", l.Location.DrbdmetaArg())

	_, err = metadata.ComputeLayout(metadata.Indexed(4), 512<<20, 1, 8)
	require.ErrorIs(t, err, metadata.ErrTooSmall)

	f, err := metadata.ComputeLayout(metadata.FlexExternal(), 64<<20, 2, 8)
	require.NoError(t, err)
	require.Equal(t, int64(0), f.MDOffset)
	require.Equal(t, uint32(64<<11), f.MDSizeSect)
	require.Equal(t, int32(8+128), f.BMOffset)
	require.Equal(t, "flex-external", f.Location.DrbdmetaArg())
	// Two stripes: transaction t lives in stripe t%2, block t/2 of it.
	require.Equal(t, f.ALByteOffset(), f.ALTransactionOffset(0))
	require.Equal(t, f.ALByteOffset()+8*4096, f.ALTransactionOffset(1))
	require.Equal(t, f.ALByteOffset()+4096, f.ALTransactionOffset(2))
	require.Equal(t, f.ALByteOffset(), f.ALTransactionOffset(16), "the ring wraps")
}

func TestLayoutErrors(t *testing.T) {
	t.Parallel()
	_, err := metadata.ComputeLayout(metadata.Internal(), 60<<10, 1, 8)
	require.ErrorIs(t, err, metadata.ErrTooSmall)
	_, err = metadata.ComputeLayout(metadata.Internal(), 1<<30, 1, 4)
	require.ErrorContains(t, err, "striping")
	_, err = metadata.ComputeLayout(metadata.Indexed(300), 1<<30, 1, 8)
	require.ErrorContains(t, err, "index 300")
	_, err = metadata.ComputeLayout(metadata.Location{}, 1<<30, 1, 8)
	require.Error(t, err)
	// A 32 MiB activity log does not fit a 16 MiB device's internal
	// meta-data (the area would start before the device).
	_, err = metadata.ComputeLayout(metadata.Internal(), 16<<20, 1, 8192)
	require.ErrorIs(t, err, metadata.ErrTooSmall)
	l, err := metadata.ComputeLayout(metadata.Internal(), 64<<20, 1, 8192)
	require.NoError(t, err, "it fits 64 MiB")
	require.Positive(t, l.BMByteOffset())
	// Index 1 needs 256 MiB of meta-data device, as the kernel says.
	_, err = metadata.ComputeLayout(metadata.Indexed(1), 200<<20, 1, 8)
	require.ErrorIs(t, err, metadata.ErrTooSmall)
	_, err = metadata.ComputeLayout(metadata.Indexed(1), 256<<20, 1, 8)
	require.NoError(t, err)
	require.Equal(t, "Kind(0)", metadata.Kind(0).String())
}

func TestBitmapBytes(t *testing.T) {
	t.Parallel()
	require.Equal(t, uint64(0), metadata.BitmapBytes(0))
	require.Equal(t, uint64(4096), metadata.BitmapBytes(1))
	require.Equal(t, uint64(65536), metadata.BitmapBytes(4194104))
	require.Equal(t, uint64(32<<20), metadata.BitmapBytes(1<<31), "1 TiB: 32 MiB")
}
