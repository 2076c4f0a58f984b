package nbd

import "github.com/gdrbd/gdrbd/blockdev"

// Payload buffers come from blockdev's pool: 4096-aligned, so a backend
// may hand them straight to O_DIRECT I/O. A request's payload is read
// from the socket into one, given to the backend, and (for READ) written
// back out with writev: the data is never copied inside the server.
var bufPool blockdev.BufferPool

// getPayload returns a buffer of n bytes (0 < n <= MaxPayload). Callers
// have checked n against MaxPayload: a length read off the wire never
// reaches an allocation unchecked.
func getPayload(n int) []byte {
	if n <= 0 || n > MaxPayload {
		panic("nbd: payload size out of range")
	}
	return bufPool.Get(n)
}

// putPayload returns p to the pool; p must not be used afterwards.
func putPayload(p []byte) {
	if p != nil {
		bufPool.Put(p)
	}
}
