package blockdev_test

import (
	"bytes"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
)

func openFile(t *testing.T, path string, o blockdev.Options) *blockdev.File {
	t.Helper()
	d, err := blockdev.Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestFileContract(t *testing.T) {
	t.Parallel()
	blockdevtest.Run(t, blockdevtest.Config{
		Open: func(t *testing.T, size int64) blockdev.Device {
			d, err := blockdev.Open(blockdevtest.TempFile(t, size), blockdev.Options{})
			require.NoError(t, err)
			require.False(t, d.IsBlockDevice())
			return d
		},
	})
}

func TestFileDirectContract(t *testing.T) {
	t.Parallel()
	probe := openFile(t, blockdevtest.TempFile(t, 4096), blockdev.Options{Direct: true})
	if !probe.Direct() {
		t.Skip("temp dir file system has no O_DIRECT")
	}
	blockdevtest.Run(t, blockdevtest.Config{
		Align: probe.Alignment(),
		Open: func(t *testing.T, size int64) blockdev.Device {
			d, err := blockdev.Open(blockdevtest.TempFile(t, size), blockdev.Options{Direct: true})
			require.NoError(t, err)
			require.True(t, d.Direct())
			return d
		},
	})
}

func TestLoopContract(t *testing.T) {
	t.Parallel()
	for _, direct := range []bool{false, true} {
		blockdevtest.Run(t, blockdevtest.Config{
			Align: map[bool]int64{false: 0, true: 512}[direct],
			Open: func(t *testing.T, size int64) blockdev.Device {
				dev := blockdevtest.Loop(t, blockdevtest.TempFile(t, size))
				d, err := blockdev.Open(dev, blockdev.Options{Direct: direct, Exclusive: true})
				require.NoError(t, err)
				require.True(t, d.IsBlockDevice())
				require.Equal(t, direct, d.Direct())
				return d
			},
		})
	}
}

func TestLoopSizeAndExclusive(t *testing.T) {
	t.Parallel()
	file := blockdevtest.TempFile(t, 3<<20+4096)
	dev := blockdevtest.Loop(t, file)
	d := openFile(t, dev, blockdev.Options{Exclusive: true})
	require.Equal(t, int64(3<<20+4096), d.Size()) // BLKGETSIZE64
	require.Equal(t, int64(512), d.Alignment())
	_, err := blockdev.Open(dev, blockdev.Options{Exclusive: true})
	require.ErrorIs(t, err, blockdev.ErrBusy)
	// A shared open still works (drbdmeta's reads, for example).
	openFile(t, dev, blockdev.Options{ReadOnly: true})
	require.NoError(t, d.Close())
	openFile(t, dev, blockdev.Options{Exclusive: true})
}

func TestLoopDiscardReadsZero(t *testing.T) {
	t.Parallel()
	file := blockdevtest.TempFile(t, 4<<20)
	d := openFile(t, blockdevtest.Loop(t, file), blockdev.Options{Direct: true})
	w := blockdev.AlignedBuffer(1 << 20)
	for i := range w {
		w[i] = byte(i%251 + 1)
	}
	_, err := d.WriteAt(w, 0)
	require.NoError(t, err)
	require.NoError(t, d.Flush())
	require.NoError(t, d.Discard(4096, 64<<10))
	require.NoError(t, d.WriteZeroes(128<<10, 4096))
	_, err = d.WriteAt(w[:512], 700) // direct: unaligned offset refused
	require.ErrorIs(t, err, blockdev.ErrUnaligned)
	require.ErrorIs(t, d.Discard(100, 512), blockdev.ErrUnaligned)
	r := blockdev.AlignedBuffer(1 << 20)
	_, err = d.ReadAt(r, 0)
	require.NoError(t, err)
	copy(w[4096:], make([]byte, 64<<10))
	copy(w[128<<10:], make([]byte, 4096))
	require.True(t, bytes.Equal(w, r))
}

func TestFileExclusiveLock(t *testing.T) {
	t.Parallel()
	p := blockdevtest.TempFile(t, 1<<20)
	openFile(t, p, blockdev.Options{Exclusive: true})
	_, err := blockdev.Open(p, blockdev.Options{Exclusive: true})
	require.ErrorIs(t, err, blockdev.ErrBusy)
}

func TestFileDiscardPunchesHole(t *testing.T) {
	t.Parallel()
	p := blockdevtest.TempFile(t, 4<<20)
	d := openFile(t, p, blockdev.Options{})
	_, err := d.WriteAt(bytes.Repeat([]byte{1}, 4<<20), 0)
	require.NoError(t, err)
	require.NoError(t, d.Flush())
	before := allocated(t, p)
	require.NoError(t, d.Discard(0, 2<<20))
	require.Less(t, allocated(t, p), before)
	require.Equal(t, int64(4<<20), fileSize(t, p), "KEEP_SIZE")
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := blockdev.Open("/nonexistent/disk", blockdev.Options{})
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = blockdev.Open(t.TempDir(), blockdev.Options{})
	require.ErrorContains(t, err, "neither a regular file nor a block device")
	d := openFile(t, blockdevtest.TempFile(t, 8192), blockdev.Options{ReadOnly: true})
	_, err = d.WriteAt(make([]byte, 512), 0)
	require.ErrorIs(t, err, blockdev.ErrReadOnly)
	require.NoError(t, d.Close())
	_, err = d.ReadAt(make([]byte, 512), 0)
	require.ErrorIs(t, err, blockdev.ErrClosed)
}

func allocated(t *testing.T, p string) int64 {
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	require.NoError(t, err)
	return st.Size()
}
