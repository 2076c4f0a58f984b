package nbd

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/gdrbd/gdrbd/blockdev"
)

// Backend is what the server exports: the replication driver on a
// Primary, or DeviceBackend over a plain blockdev.Device.
//
// Backend is safe for concurrent use; calls may be in flight in parallel,
// and the server never serialises them. Offsets and lengths have been
// checked against Size and the advertised minimum block size before any
// call, so a backend sees only in-range, aligned requests.
//
// Buffer ownership: p in ReadAt and WriteAt belongs to the server (a
// pooled, 4096-aligned buffer the payload was read into or the reply will
// be written from without copying). It is valid only until the call
// returns; a backend that needs the data later (a protocol A send queue,
// a resync) must copy it.
//
// Durability: WriteAt with fua=true returns only once that write is
// durable (for a replicator under protocol C: on the peer as well); Flush
// returns once every write that completed before Flush was called is
// durable, whichever connection it came from (the server advertises
// CAN_MULTI_CONN on that promise).
type Backend interface {
	// Size is the export size in bytes; it does not change while served.
	Size() int64
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	Flush(ctx context.Context) error
	// Trim is a hint that the range is unused. The range need not read as
	// zeroes afterwards. fua asks for the effect to be durable on return.
	Trim(ctx context.Context, off, length int64, fua bool) error
	// WriteZeroes makes the range read as zeroes.
	WriteZeroes(ctx context.Context, off, length int64, opt ZeroOptions) error
}

// AsyncBackend is a Backend that can start a READ or WRITE and report
// its end later, so the server needs no goroutine per request: the
// request is started from the connection's reader and answered from the
// done callback. Same contract as ReadAt/WriteAt otherwise, with the
// buffer held until done is called instead of until the call returns.
//
// done is called exactly once, from any goroutine (possibly before Start
// returns); it must not block, and the server's done only queues the
// reply. A backend that is going away must still call done (with
// ErrShutdown) for every request it started.
type AsyncBackend interface {
	Backend
	StartRead(p []byte, off int64, done func(error))
	StartWrite(p []byte, off int64, fua bool, done func(error))
}

// ZeroOptions qualifies a WriteZeroes call (NBD_CMD_WRITE_ZEROES flags).
type ZeroOptions struct {
	// NoHole forbids deallocating the range (NBD_CMD_FLAG_NO_HOLE): the
	// client wants it provisioned.
	NoHole bool
	// Fast asks to fail with ErrNotFast, without changing anything, unless
	// zeroing is faster than writing zeroes (NBD_CMD_FLAG_FAST_ZERO).
	Fast bool
	// FUA asks for the zeroes to be durable on return.
	FUA bool
}

// Errors a Backend returns to choose the NBD error the client sees; see
// the error mapping table in the package documentation. Wrap them with
// %w to add detail: the server matches them with errors.Is.
var (
	// ErrReadOnly refuses a write on an export that cannot be written
	// now (a Secondary, a read-only device): NBD_EPERM.
	ErrReadOnly = errors.New("nbd: export is read-only")
	// ErrShutdown fails a request because the backend is going away
	// (demotion, resource down): NBD_ESHUTDOWN, after which a client must
	// disconnect.
	ErrShutdown = errors.New("nbd: export is shutting down")
	// ErrNotFast refuses a FAST_ZERO request that would be no faster than
	// a write: NBD_ENOTSUP.
	ErrNotFast = errors.New("nbd: zeroing would not be fast")
)

// errnoOf maps an error from a Backend to the NBD error value for a
// request of type cmd. Unknown errors are EIO: the client must not be
// told more than "the data is not there".
func errnoOf(err error, cmd uint16) uint32 {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrReadOnly), errors.Is(err, blockdev.ErrReadOnly):
		return errnoPerm
	case errors.Is(err, ErrShutdown), errors.Is(err, context.Canceled):
		return errnoShutdown
	case errors.Is(err, ErrNotFast):
		return errnoNotSup
	case errors.Is(err, blockdev.ErrOutOfRange):
		if cmd == cmdWrite || cmd == cmdWriteZeroes {
			return errnoNoSpc
		}
		return errnoInval
	case errors.As(err, &en):
		switch en {
		case syscall.EPERM, syscall.EACCES, syscall.EROFS:
			return errnoPerm
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return errnoNoSpc
		case syscall.ENOMEM:
			return errnoNoMem
		case syscall.EINVAL:
			return errnoInval
		case syscall.EOPNOTSUPP:
			return errnoNotSup
		case syscall.ESHUTDOWN:
			return errnoShutdown
		}
	}
	return errnoIO
}

// DeviceBackend exports a blockdev.Device. FUA is a write followed by
// Flush (the Device contract has nothing finer); Trim uses
// blockdev.Discarder when the device has it and is a no-op otherwise;
// WriteZeroes uses Discarder (unless NoHole), then blockdev.ZeroWriter,
// then plain writes of a shared zero buffer.
//
// DeviceBackend is safe for concurrent use when the Device is (the Device
// contract requires it).
type DeviceBackend struct {
	Dev blockdev.Device
}

var _ Backend = DeviceBackend{}

// Size reports the device size.
func (d DeviceBackend) Size() int64 { return d.Dev.Size() }

// ReadAt reads p at off.
func (d DeviceBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := d.Dev.ReadAt(p, off)
	return err
}

// WriteAt writes p at off, flushing afterwards when fua is set.
func (d DeviceBackend) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if _, err := d.Dev.WriteAt(p, off); err != nil {
		return err
	}
	if fua {
		return d.Dev.Flush()
	}
	return nil
}

// Flush flushes the device.
func (d DeviceBackend) Flush(context.Context) error { return d.Dev.Flush() }

// Trim discards the range when the device can; otherwise it ignores the
// hint, which the protocol allows.
func (d DeviceBackend) Trim(_ context.Context, off, length int64, fua bool) error {
	dc, ok := d.Dev.(blockdev.Discarder)
	if !ok {
		return nil
	}
	if err := dc.Discard(off, length); err != nil {
		return err
	}
	if fua {
		return d.Dev.Flush()
	}
	return nil
}

// zeroChunk bounds the buffer of the plain-write fallback of WriteZeroes.
const zeroChunk = 1 << 20

var zeroBuf = make([]byte, zeroChunk)

// WriteZeroes zeroes the range by the cheapest means the device offers.
func (d DeviceBackend) WriteZeroes(_ context.Context, off, length int64, opt ZeroOptions) error {
	var err error
	dc, canDiscard := d.Dev.(blockdev.Discarder)
	zw, canZero := d.Dev.(blockdev.ZeroWriter)
	switch {
	case canDiscard && !opt.NoHole:
		err = dc.Discard(off, length)
	case canZero:
		err = zw.WriteZeroes(off, length)
	case opt.Fast:
		return fmt.Errorf("%w: device has neither discard nor write-zeroes", ErrNotFast)
	default:
		for done := int64(0); done < length && err == nil; {
			n := min(length-done, zeroChunk)
			_, err = d.Dev.WriteAt(zeroBuf[:n], off+done)
			done += n
		}
	}
	if err == nil && opt.FUA {
		err = d.Dev.Flush()
	}
	return err
}
