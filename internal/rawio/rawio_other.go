//go:build !linux

package rawio

import "syscall"

const implemented = false

func read(uintptr, []byte) (int, error) { panic("rawio: not implemented") }

type iovec struct{}

func writev(uintptr, [][]byte, *[]iovec) (int, error) { panic("rawio: not implemented") }

func isStream(syscall.RawConn) bool { return false }
