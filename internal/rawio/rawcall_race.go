//go:build linux && race

package rawio

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Under the race detector the calls go through syscall.Read and
// unix.Writev, which tell the detector about the buffers the kernel reads
// and writes (RawSyscall does not): a data race on a payload handed to
// the socket stays visible in -race tests. The scheduler behaviour this
// package exists for does not matter there.

const implemented = true

// iovec is a piece here: writev gathers the non-empty ones into the
// kept array as the raw version does.
type iovec = []byte

func read(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Read(int(fd), p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func writev(fd uintptr, v [][]byte, vecs *[]iovec) (int, error) {
	pieces := (*vecs)[:0]
	for _, b := range v {
		if len(pieces) == IOVMax {
			break
		}
		if len(b) > 0 {
			pieces = append(pieces, b)
		}
	}
	if len(pieces) == 0 {
		return 0, nil
	}
	n, err := unix.Writev(int(fd), pieces)
	clear(pieces)
	*vecs = pieces[:0]
	if err != nil {
		return 0, err
	}
	return n, nil
}
