package blockdev

import "errors"

// SectorSize is the unit DRBD counts in (its "sector" is always 512 bytes,
// whatever the logical block size of the backing device).
const SectorSize = 512

// Sector is a position or length in 512-byte units, as DRBD's wire protocol
// and metadata use them.
type Sector uint64

// Bytes converts a sector count to bytes.
func (s Sector) Bytes() int64 { return int64(s) * SectorSize }

// Device is a random-access block store: a regular file, a block device, or
// memory.
//
// Implementations are safe for concurrent use: parallel ReadAt and WriteAt
// calls are allowed, and when their ranges do not overlap they behave as if
// they ran in any serial order. Overlapping concurrent writes leave either
// content. No implementation serialises I/O behind a global lock.
//
// Durability: a completed WriteAt may still be in a volatile cache. Only
// Flush makes every write that completed before Flush was called durable
// (it is fdatasync for files and block devices).
type Device interface {
	// ReadAt reads len(p) bytes at off. Reading past Size is an error
	// wrapping ErrOutOfRange; a short read is an error.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off. Writing past Size is an error wrapping
	// ErrOutOfRange and writes nothing.
	WriteAt(p []byte, off int64) (int, error)
	// Size is the usable size in bytes. It does not change while open.
	Size() int64
	// Flush makes every completed write durable.
	Flush() error
	// Close releases the device. Pending writes are not flushed.
	Close() error
}

// Discarder is implemented by devices that can deallocate a range
// (hole punching or BLKDISCARD). After Discard the range reads as zeroes.
type Discarder interface {
	Discard(off, length int64) error
}

// ZeroWriter is implemented by devices that can zero a range without the
// caller supplying a buffer of zeroes.
type ZeroWriter interface {
	WriteZeroes(off, length int64) error
}

// ErrOutOfRange is wrapped by errors for accesses past the end of a device.
var ErrOutOfRange = errors.New("blockdev: access beyond end of device")
