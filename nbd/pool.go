package nbd

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Payload buffers come from power-of-two size classes between 4 KiB and
// MaxPayload, each allocation aligned to 4096 bytes so a backend may hand
// them straight to O_DIRECT I/O. A request's payload is read from the
// socket into one, given to the backend, and (for READ) written back out
// with writev: the data is never copied inside the server.

const (
	bufAlign    = 4096
	minClassLog = 12 // 4 KiB
	maxClassLog = 25 // 32 MiB == MaxPayload
)

// payload is one pooled buffer; b has the length of the request.
type payload struct {
	b     []byte
	full  []byte // the whole aligned class buffer
	class int
}

var bufPools [maxClassLog - minClassLog + 1]sync.Pool

func classOf(n int) int {
	if n <= 1<<minClassLog {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassLog
}

// getPayload returns a buffer of n bytes (0 < n <= MaxPayload). Callers
// have checked n against MaxPayload before: a length read off the wire
// never reaches an allocation unchecked.
func getPayload(n int) *payload {
	if n <= 0 || n > MaxPayload {
		panic("nbd: payload size out of range")
	}
	c := classOf(n)
	if v := bufPools[c].Get(); v != nil {
		p := v.(*payload)
		p.b = p.full[:n]
		return p
	}
	size := 1 << (c + minClassLog)
	raw := make([]byte, size+bufAlign)
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & (bufAlign - 1))
	full := raw[off : off+size : off+size]
	return &payload{b: full[:n], full: full, class: c}
}

// putPayload returns p to its pool; p must not be used afterwards.
func putPayload(p *payload) {
	if p == nil {
		return
	}
	p.b = nil
	bufPools[p.class].Put(p)
}
