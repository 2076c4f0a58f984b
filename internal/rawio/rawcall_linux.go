//go:build linux && !race

package rawio

import (
	"syscall"
	"unsafe"
)

const implemented = true

func read(fd uintptr, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

type iovec = syscall.Iovec

// writev writes from up to IOVMax pieces of v (the caller loops for the
// rest), building the iovec array in *vecs.
func writev(fd uintptr, v [][]byte, vecs *[]iovec) (int, error) {
	iov := (*vecs)[:0]
	for _, b := range v {
		if len(iov) == IOVMax {
			break
		}
		if len(b) == 0 {
			continue
		}
		iov = append(iov, iovec{Base: unsafe.SliceData(b)})
		iov[len(iov)-1].SetLen(len(b))
	}
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)))
	clear(iov) // do not pin the caller's buffers
	*vecs = iov[:0]
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
