//go:build !linux

package rawio

const implemented = false

func read(uintptr, []byte) (int, error) { panic("rawio: not implemented") }

type iovec struct{}

func writev(uintptr, [][]byte, *[]iovec) (int, error) { panic("rawio: not implemented") }
