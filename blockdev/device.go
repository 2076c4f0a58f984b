package blockdev

import (
	"errors"
	"fmt"
)

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
// (hole punching, or a zeroing discard on block devices). After Discard
// the range reads as zeroes. Like WriteAt, a Discard is durable only after
// the next Flush.
type Discarder interface {
	Discard(off, length int64) error
}

// ZeroWriter is implemented by devices that can zero a range without the
// caller supplying a buffer of zeroes. Like WriteAt, the zeroes are durable
// only after the next Flush.
type ZeroWriter interface {
	WriteZeroes(off, length int64) error
}

var (
	// ErrOutOfRange is wrapped by errors for accesses past the end of a device.
	ErrOutOfRange = errors.New("blockdev: access beyond end of device")
	// ErrBusy is wrapped when an exclusive open finds the device in use
	// (mounted, held by another exclusive opener, or locked by another
	// gdrbd process).
	ErrBusy = errors.New("blockdev: device busy")
	// ErrUnaligned is wrapped when a write, discard or zeroing on a device
	// opened with Options.Direct is not aligned to the device's direct I/O
	// alignment (see File.Alignment). Reads are never refused: they go
	// through an aligned bounce buffer.
	ErrUnaligned = errors.New("blockdev: unaligned direct I/O")
	// ErrReadOnly is wrapped by writes to a device opened read-only.
	ErrReadOnly = errors.New("blockdev: device opened read-only")
	// ErrClosed is wrapped by operations on a closed device.
	ErrClosed = errors.New("blockdev: device closed")
)

// checkRange validates [off, off+n) against size.
func checkRange(op string, off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%s [%d, +%d) on a %d-byte device: %w", op, off, n, size, ErrOutOfRange)
	}
	return nil
}

// zeroChunk is the size of the zero buffer the fallbacks write with.
const zeroChunk = 1 << 20

// Discard deallocates [off, off+length) on d when d is a Discarder, and
// otherwise writes zeroes there (through WriteZeroes). Either way the range
// reads as zeroes afterwards.
func Discard(d Device, off, length int64) error {
	if dd, ok := d.(Discarder); ok {
		return dd.Discard(off, length)
	}
	return WriteZeroes(d, off, length)
}

// WriteZeroes zeroes [off, off+length) on d, with d's own WriteZeroes when
// d is a ZeroWriter and otherwise by writing buffers of zeroes.
func WriteZeroes(d Device, off, length int64) error {
	if zw, ok := d.(ZeroWriter); ok {
		return zw.WriteZeroes(off, length)
	}
	return writeZeroBuffers(d, off, length)
}

// writeZeroBuffers is the portable fallback: plain writes of an aligned
// zero buffer (aligned so that it also satisfies O_DIRECT).
func writeZeroBuffers(d Device, off, length int64) error {
	if err := checkRange("write zeroes", off, length, d.Size()); err != nil {
		return err
	}
	buf := zeroBuffer(int(min(length, zeroChunk)))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if _, err := d.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}
