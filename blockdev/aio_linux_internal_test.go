package blockdev

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// The kernel reads struct iocb and writes struct io_event by offset.
func TestIocbLayout(t *testing.T) {
	var cb iocb
	require.Equal(t, uintptr(64), unsafe.Sizeof(cb))
	require.Equal(t, uintptr(16), unsafe.Offsetof(cb.opcode))
	require.Equal(t, uintptr(20), unsafe.Offsetof(cb.fildes))
	require.Equal(t, uintptr(24), unsafe.Offsetof(cb.buf))
	require.Equal(t, uintptr(32), unsafe.Offsetof(cb.nbytes))
	require.Equal(t, uintptr(40), unsafe.Offsetof(cb.offset))
	var ev ioEvent
	require.Equal(t, uintptr(32), unsafe.Sizeof(ev))
	require.Equal(t, uintptr(16), unsafe.Offsetof(ev.res))
}
