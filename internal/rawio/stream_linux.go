package rawio

import "syscall"

// isStream reports whether the socket is a stream (a zero-byte read is
// the end of the stream only there).
func isStream(raw syscall.RawConn) bool {
	typ, serr := 0, error(nil)
	if err := raw.Control(func(fd uintptr) {
		typ, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil || serr != nil {
		return false
	}
	return typ == syscall.SOCK_STREAM
}
