package blockdev

import (
	"fmt"
	"math/bits"
	"sync"
	"unsafe"
)

// Alignment is the memory alignment of every buffer this package hands out.
// 4096 satisfies O_DIRECT on every Linux block device and file system.
const Alignment = 4096

// AlignedBuffer returns a new zeroed buffer of n bytes whose first byte is
// Alignment-aligned in memory, as O_DIRECT needs.
func AlignedBuffer(n int) []byte {
	if n < 0 {
		panic(fmt.Sprintf("blockdev: negative buffer size %d", n))
	}
	raw := make([]byte, n+Alignment)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & (Alignment - 1)); r != 0 {
		skip = Alignment - r
	}
	return raw[skip : skip+n : skip+n]
}

// IsAligned reports whether p starts at an Alignment-aligned address.
func IsAligned(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))&(Alignment-1) == 0
}

// Buffer pool size classes: powers of two from 4 KiB to 4 MiB. Larger
// requests are allocated and dropped, not pooled.
const (
	poolMinShift = 12
	poolMaxShift = 22
	poolClasses  = poolMaxShift - poolMinShift + 1
)

// BufferPool recycles Alignment-aligned buffers in power-of-two size
// classes (4 KiB .. 4 MiB), so hot I/O paths using O_DIRECT do not allocate
// per request. The zero value is ready to use. A BufferPool is safe for
// concurrent use.
type BufferPool struct {
	classes [poolClasses]sync.Pool
}

// Get returns an aligned buffer of length n. Its contents are unspecified
// (it may hold a previous user's data). Return it with Put when done.
func (p *BufferPool) Get(n int) []byte {
	c := sizeClass(n)
	if c < 0 {
		return AlignedBuffer(n)
	}
	if v := p.classes[c].Get(); v != nil {
		b := *(v.(*[]byte))
		return b[:n]
	}
	return AlignedBuffer(1 << (c + poolMinShift))[:n]
}

// Put returns a buffer obtained from Get. Buffers of other origins are
// ignored, so a stray Put cannot poison the pool with unaligned memory.
func (p *BufferPool) Put(b []byte) {
	c := sizeClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+poolMinShift) || !IsAligned(b[:1]) {
		return
	}
	b = b[:cap(b)]
	p.classes[c].Put(&b)
}

// sizeClass maps a size to its pool class, or -1 when too large to pool.
func sizeClass(n int) int {
	if n <= 1<<poolMinShift {
		return 0
	}
	s := bits.Len(uint(n - 1)) // ceil(log2 n)
	if s > poolMaxShift {
		return -1
	}
	return s - poolMinShift
}

// defaultPool serves the package's own bounce buffers.
var defaultPool BufferPool

// zeroBuffer returns a shared read-only aligned buffer of at least n (at
// most zeroChunk) zero bytes. Callers must never write into it.
func zeroBuffer(n int) []byte {
	return sharedZeroes()[:n]
}

var sharedZeroes = sync.OnceValue(func() []byte { return AlignedBuffer(zeroChunk) })
