package blockdev_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
)

func TestFaultyContract(t *testing.T) {
	t.Parallel()
	blockdevtest.Run(t, blockdevtest.Config{
		Open: func(t *testing.T, size int64) blockdev.Device { return blockdev.NewFaulty(blockdev.NewMem(size)) },
	})
}

func TestOpString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "read", blockdev.OpRead.String())
	require.Equal(t, "write-zeroes", blockdev.OpWriteZeroes.String())
	require.Equal(t, "Op(0)", blockdev.Op(0).String())
}

func TestFaultyOnceAfterN(t *testing.T) {
	t.Parallel()
	f := blockdev.NewFaulty(blockdev.NewMem(1 << 20))
	f.Inject(blockdev.Fault{Op: blockdev.OpWrite, After: 2})
	p := []byte{1, 2, 3}
	for i := range 2 {
		_, err := f.WriteAt(p, int64(i))
		require.NoError(t, err)
	}
	_, err := f.WriteAt(p, 100)
	require.ErrorIs(t, err, blockdev.ErrInjected)
	var fe *blockdev.FaultError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, blockdev.OpWrite, fe.Op)
	require.Equal(t, int64(100), fe.Off)
	// The failed write did not happen.
	got := make([]byte, 3)
	_, err = f.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0}, got)
	// Once: the next write goes through.
	_, err = f.WriteAt(p, 100)
	require.NoError(t, err)
}

func TestFaultyStickyRange(t *testing.T) {
	t.Parallel()
	f := blockdev.NewFaulty(blockdev.NewMem(1 << 20))
	myErr := errors.New("medium error")
	remove := f.Inject(blockdev.Fault{Op: blockdev.OpRead, Off: 8192, Len: 4096, Sticky: true, Err: myErr})
	p := make([]byte, 4096)
	_, err := f.ReadAt(p, 0)
	require.NoError(t, err)
	_, err = f.ReadAt(p, 4096)
	require.NoError(t, err) // [4096, 8192) does not overlap
	for range 3 {
		_, err = f.ReadAt(p, 8192)
		require.ErrorIs(t, err, myErr)
	}
	_, err = f.ReadAt(p[:100], 8192+4000) // overlapping partially
	require.ErrorIs(t, err, myErr)
	_, err = f.WriteAt(p, 8192) // other op kinds pass
	require.NoError(t, err)
	remove()
	_, err = f.ReadAt(p, 8192)
	require.NoError(t, err)
}

func TestFaultyFlushDiscardZeroes(t *testing.T) {
	t.Parallel()
	f := blockdev.NewFaulty(blockdev.NewMem(1 << 20))
	f.Inject(blockdev.Fault{Op: blockdev.OpFlush})
	f.Inject(blockdev.Fault{Op: blockdev.OpDiscard, Sticky: true})
	f.Inject(blockdev.Fault{Op: blockdev.OpWriteZeroes, Off: 0, Len: 10})
	require.ErrorIs(t, f.Flush(), blockdev.ErrInjected)
	require.NoError(t, f.Flush())
	require.ErrorIs(t, blockdev.Discard(f, 0, 4096), blockdev.ErrInjected)
	require.ErrorIs(t, blockdev.Discard(f, 4096, 4096), blockdev.ErrInjected)
	require.NoError(t, blockdev.WriteZeroes(f, 4096, 4096))
	require.ErrorIs(t, blockdev.WriteZeroes(f, 0, 4096), blockdev.ErrInjected)
	f.Reset()
	require.NoError(t, blockdev.Discard(f, 0, 4096))
}
