package blockdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AsyncIO submits reads and writes of an O_DIRECT File through Linux
// native AIO (io_setup/io_submit/io_getevents). A synchronous pwrite costs
// its caller a sleep and a wake-up per request; here one io_submit queues
// a whole batch and one io_getevents reaps whatever completed, so a queue
// of small writes costs a few system calls and no thread per request.
//
// Native AIO is only asynchronous for O_DIRECT with aligned buffers,
// offsets and lengths: Accepts says which requests qualify, and callers
// send the others through the synchronous Device methods. Where native
// AIO is missing (a seccomp filter, fs.aio-max-nr exhausted) NewAsyncIO
// fails and callers keep the synchronous path.
//
// Buffers: the kernel reads or fills an op's buffer after Submit returned,
// until its result was delivered. The caller keeps the slice referenced
// (Go's heap does not move objects) and must not touch it in between.
//
// An AsyncIO is safe for concurrent use. Results are delivered by one
// goroutine, in batches, to the function given to NewAsyncIO.
type AsyncIO struct {
	f    *File
	ctx  uintptr  // aio_context_t
	ev   *os.File // eventfd every completion is counted on
	done func([]AsyncResult)

	mu     sync.Mutex // serializes Submit; guards cbs, ptrs, closed
	cbs    []iocb
	ptrs   []*iocb
	closed bool

	inflight atomic.Int64
	closing  atomic.Bool
	reaped   chan struct{} // closed when the reaper exited
	once     sync.Once
}

// AsyncOp is one read or write. Tag comes back in its AsyncResult.
type AsyncOp struct {
	Tag   uint64
	Write bool
	P     []byte
	Off   int64
}

// AsyncResult is the outcome of one AsyncOp: the bytes transferred, or
// the error. N short of the op's length without an error is possible in
// principle (O_DIRECT on a healthy device does not do it): the caller
// redoes such an op synchronously.
type AsyncResult struct {
	Tag uint64
	N   int
	Err error
}

// struct iocb of <linux/aio_abi.h> for little-endian machines (where
// aio_key precedes aio_rw_flags). 64 bytes; TestIocbLayout checks it.
type iocb struct {
	data   uint64
	_      uint32 // aio_key
	_      uint32 // aio_rw_flags
	opcode uint16
	_      int16 // aio_reqprio
	fildes uint32
	buf    uint64
	nbytes uint64
	offset int64
	_      uint64 // aio_reserved2
	flags  uint32 // aio_flags
	resfd  uint32 // aio_resfd
}

// struct io_event: 32 bytes.
type ioEvent struct {
	data uint64
	_    uint64 // obj: the iocb's address
	res  int64
	_    int64 // res2
}

const (
	iocbCmdPread  = 0
	iocbCmdPwrite = 1
	iocbFlagResfd = 1 << 0 // IOCB_FLAG_RESFD: count the completion on aio_resfd
)

// ErrAsyncUnavailable: native AIO cannot be used for this file.
var ErrAsyncUnavailable = errors.New("blockdev: native AIO unavailable")

// NewAsyncIO sets up a native AIO context for f with room for depth
// requests in flight and starts the goroutine that delivers results to
// done. f must have been opened with O_DIRECT. Close it before f.
func NewAsyncIO(f *File, depth int, done func([]AsyncResult)) (*AsyncIO, error) {
	if !f.direct {
		return nil, fmt.Errorf("%w: %s is not open with O_DIRECT", ErrAsyncUnavailable, f.path)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil, fmt.Errorf("%w: big-endian iocb layout not implemented", ErrAsyncUnavailable)
	}
	if depth <= 0 {
		depth = 256
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%w: eventfd: %w", ErrAsyncUnavailable, err)
	}
	// Non-blocking: reads park in Go's network poller, not in a thread.
	ev := os.NewFile(uintptr(efd), "aio-eventfd")
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, uintptr(depth), uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		ev.Close()
		return nil, fmt.Errorf("%w: io_setup(%d): %w", ErrAsyncUnavailable, depth, e)
	}
	a := &AsyncIO{
		f: f, ctx: ctx, ev: ev, done: done,
		reaped: make(chan struct{}),
	}
	go a.reap(depth)
	return a, nil
}

// Accepts reports whether a request of p at off can go through native
// AIO: in range, and buffer, offset and length aligned for O_DIRECT.
func (a *AsyncIO) Accepts(p []byte, off int64) bool {
	n := int64(len(p))
	return n > 0 && off >= 0 && off <= a.f.size && n <= a.f.size-off &&
		a.f.aligned(off, n) && IsAligned(p)
}

// Submit queues ops and returns how many were accepted by the kernel, in
// order; the caller carries out the rest (ops[n:]) some other way. An
// error says why not all of them were taken (EAGAIN: the context is full).
// Every op must pass Accepts; writes need a writable File.
func (a *AsyncIO) Submit(ops []AsyncOp) (int, error) {
	if len(ops) == 0 {
		return 0, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.f.closed.Load() {
		return 0, fmt.Errorf("blockdev: submit to %s: %w", a.f.path, ErrClosed)
	}
	if cap(a.cbs) < len(ops) {
		a.cbs = make([]iocb, len(ops))
		a.ptrs = make([]*iocb, len(ops))
	}
	cbs, ptrs := a.cbs[:len(ops)], a.ptrs[:len(ops)]
	for i, op := range ops {
		if op.Write && a.f.readOnly {
			return 0, fmt.Errorf("blockdev: write %s: %w", a.f.path, ErrReadOnly)
		}
		cb := &cbs[i]
		*cb = iocb{
			data:   op.Tag,
			fildes: uint32(a.f.fd),
			buf:    uint64(uintptr(unsafe.Pointer(unsafe.SliceData(op.P)))),
			nbytes: uint64(len(op.P)),
			offset: op.Off,
			opcode: iocbCmdPread,
			flags:  iocbFlagResfd,
			resfd:  uint32(a.ev.Fd()),
		}
		if op.Write {
			cb.opcode = iocbCmdPwrite
		}
		ptrs[i] = cb
	}
	done := 0
	for done < len(ops) {
		a.inflight.Add(int64(len(ops) - done))
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, uintptr(len(ops)-done), uintptr(unsafe.Pointer(&ptrs[done])))
		if e != 0 || n == 0 {
			a.inflight.Add(-int64(len(ops) - done))
			if e == unix.EINTR {
				continue
			}
			if e == 0 {
				e = unix.EAGAIN
			}
			return done, fmt.Errorf("blockdev: io_submit on %s: %w", a.f.path, e)
		}
		a.inflight.Add(-int64(len(ops) - done - int(n)))
		done += int(n)
	}
	return done, nil
}

// reap delivers completions; once closing and nothing is in flight it
// destroys the context and exits.
//
// It waits on the eventfd every request counts its completion on, so it
// parks in Go's network poller like a socket reader instead of sleeping
// in io_getevents: a thread blocked in a system call keeps its P, and the
// event loop this goroutine just woke with done would sit queued on that
// P until sysmon retook it (20 us at best): a delay on every completion.
// io_getevents is only called to take what is already there.
//
// NB: only the reaper destroys the context. An aio context id is the
// address of its ring: destroyed while the reaper is between two
// io_getevents, it could be reused by another AsyncIO's io_setup, and the
// old reaper would then take (and misdeliver) the new context's events.
func (a *AsyncIO) reap(depth int) {
	defer close(a.reaped)
	defer unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0) //nolint:errcheck // nothing is in flight
	events := make([]ioEvent, min(depth, 256))
	results := make([]AsyncResult, 0, len(events))
	var zero unix.Timespec
	var cnt [8]byte
	for {
		for {
			n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 0, uintptr(len(events)),
				uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&zero)), 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				panic(fmt.Sprintf("blockdev: io_getevents on %s: %v", a.f.path, e))
			}
			if n == 0 {
				break
			}
			results = results[:0]
			for _, ev := range events[:n] {
				r := AsyncResult{Tag: ev.data, N: int(ev.res)}
				if ev.res < 0 {
					r.N, r.Err = 0, fmt.Errorf("blockdev: native AIO on %s: %w", a.f.path, unix.Errno(-ev.res))
				}
				results = append(results, r)
			}
			a.done(results)
			if a.inflight.Add(-int64(n)) < 0 {
				panic("blockdev: native AIO delivered more completions than were submitted")
			}
			if int(n) < len(events) {
				break
			}
		}
		if a.closing.Load() && a.inflight.Load() == 0 {
			return
		}
		// The counter holds the completions since the last read (Close
		// adds one to wake us): a completion between the io_getevents
		// above and this read makes it return at once.
		if _, err := a.ev.Read(cnt[:]); err != nil {
			panic(fmt.Sprintf("blockdev: reading the AIO eventfd of %s: %v", a.f.path, err))
		}
	}
}

// Close waits until every submitted request was delivered and the
// context destroyed. Submit fails afterwards. It does not close the File.
func (a *AsyncIO) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.closing.Store(true)
		a.mu.Unlock()
		// Wake the reaper: it exits once nothing is in flight (each
		// completion wakes it again).
		one := [8]byte{1}
		if _, err := a.ev.Write(one[:]); err != nil {
			panic(fmt.Sprintf("blockdev: waking the AIO reaper of %s: %v", a.f.path, err))
		}
		<-a.reaped
		a.ev.Close()
	})
	return nil
}
