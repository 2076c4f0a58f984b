package blockdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
// send the others through the synchronous Device methods. A flush
// (IOCB_CMD_FDSYNC, Linux 4.18+) goes the same way: the kernel runs the
// fdatasync in its own worker, so the caller neither blocks nor wakes a
// thread of its own to start it (a flush done submits is run by the
// reaper: FLUSHES SUBMITTED FROM DONE); and so does a FUA write (RWF_DSYNC,
// Linux 4.13+). Where the kernel refuses one, AcceptsFlush or AcceptsFUA
// turns false and callers use Device.Flush (after the write). Where native
// AIO is missing (a seccomp filter, fs.aio-max-nr exhausted) NewAsyncIO
// fails and callers keep the synchronous path.
//
// Buffers: the kernel reads or fills an op's buffer after Submit returned,
// until its result was delivered. The caller keeps the slice referenced
// (Go's heap does not move objects) and must not touch it in between.
//
// An AsyncIO is safe for concurrent use. Results are delivered by one
// goroutine, in batches, to the function given to NewAsyncIO.
//
// WAITING FOR COMPLETIONS: while the disk is busy the reaper waits in
// io_getevents as a raw system call, keeping its P (Go's processor)
// instead of entering the scheduler's syscall state. In that state, a
// wait longer than a sysmon tick (20 us, about one device latency) lost
// the P whenever other goroutines were queued on it or no P was idle,
// and the completion's return had to find a P again: several thread
// switches per completion, and sysmon polling at its fastest rate; on a
// 2-CPU machine that was a tenth of the daemons' CPU per replicated
// write. So that the rest of the program keeps its processors, the
// AsyncIOs add to GOMAXPROCS one P each, at most as many as it had (see
// holdProc), and no more reapers wait raw at once than Ps were added
// (takeRawSlot): the others wait as ordinary system calls. The raw wait
// stays stoppable: a stop-the-world, the GC's stack scan or sysmon's
// preemption of a long-running goroutine signals the thread,
// io_getevents returns EINTR (it is never restarted, SA_RESTART or not),
// the reaper passes a preemption point (yieldToRuntime) and waits once as
// an ordinary system call (a plain yield let it re-enter the raw wait
// before the GC caught it stopped: a GC held for seconds on a busy
// machine). A timer or goroutine queued on the reaper's P meanwhile runs
// when another P steals it or the wait ends (a completion, at the latest
// rawIdle). When idle, or with async preemption off (GODEBUG
// asyncpreemptoff or gccheckmark: no signal would end the wait), it waits
// as an ordinary system call, so an idle daemon costs no extra wake-ups.
// Idle means nothing in flight for rawIdle: a queue that drains between
// two submissions (most completions of a 4 KiB workload find the disk's
// queue empty) stays on the raw wait.
//
// FLUSHES SUBMITTED FROM DONE: a flush that done itself submits
// (SubmitFromDone; done is where a Secondary learns that the last write
// of an epoch completed and flushes before the next epoch's writes may
// start) with nothing else in flight is not handed to the kernel: the
// reaper runs the fdatasync itself when done returns, and delivers its
// result like any other. With requests in flight their completions would
// wait behind it: the kernel runs it. Ops submitted after it, in the same
// call or later from done, go to the kernel and are reaped after it.
// Through IOCB_CMD_FDSYNC the kernel queues the fsync to a worker thread
// that has to be woken, and its completion wakes the reaper again: two
// thread wake-ups of 40-100 us each on a small machine, per epoch, while
// the Secondary's disk has nothing else to do. Meaning is unchanged: the
// fdatasync starts after the flush was submitted, so every write that
// completed before that is covered. Flushes submitted with Submit go to
// the kernel.
type AsyncIO struct {
	f    *File
	ctx  uintptr // aio_context_t
	done func([]AsyncResult) bool

	mu     sync.Mutex // serializes Submit; guards cbs, ptrs, closed
	cbs    []iocb
	ptrs   []*iocb
	closed bool

	inflight atomic.Int64
	noFlush  atomic.Bool // the kernel refused IOCB_CMD_FDSYNC
	noFUA    atomic.Bool // the kernel refused RWF_DSYNC
	// testRWFlags is or-ed into the aio_rw_flags of flushes and FUA
	// writes: tests set an unknown bit to make the kernel refuse them.
	testRWFlags uint32
	closing     atomic.Bool
	reaped      chan struct{} // closed when the reaper exited
	once        sync.Once

	// Flushes the reaper runs itself (see FLUSHES SUBMITTED FROM DONE).
	fmu sync.Mutex
	// delivering is set under fmu: the reaper is in done, and looks at
	// flushes when done returns.
	delivering atomic.Bool
	flushes    []uint64 // guarded by fmu: their tags
	spare      []uint64 // the reaper's: the list it swapped out last
	// reaperFlushes counts the flushes the reaper ran (ReaperFlushes),
	// yields the times it yielded after a delivery (tests).
	reaperFlushes, yields atomic.Int64
}

// AsyncOp is one read, write or flush. Tag comes back in its AsyncResult.
//
// A Flush op (P and Off unused) has the meaning of Device.Flush: every
// write that completed before it was submitted is durable when it
// completes. Writes still in flight when it is submitted, including the
// ones of the same Submit, are not covered.
//
// A write with FUA is durable when it completes (RWF_DSYNC: the device's
// FUA, or the write and a flush where the device has none).
type AsyncOp struct {
	Tag   uint64
	Write bool
	FUA   bool
	Flush bool
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
	data    uint64
	_       uint32 // aio_key
	rwFlags uint32 // aio_rw_flags
	opcode  uint16
	_       int16 // aio_reqprio
	fildes  uint32
	buf     uint64
	nbytes  uint64
	offset  int64
	_       uint64 // aio_reserved2
	_       uint32 // aio_flags
	_       uint32 // aio_resfd
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
	iocbCmdFdsync = 3
)

// ErrAsyncUnavailable: native AIO cannot be used for this file.
var ErrAsyncUnavailable = errors.New("blockdev: native AIO unavailable")

// NewAsyncIO sets up a native AIO context for f with room for depth
// requests in flight and starts the goroutine that delivers results to
// done. done must not keep the slice; it returns true when it readied a
// goroutine that should run at once (the reaper then yields its processor
// to it) and false when it did the work itself. f must have been opened
// with O_DIRECT. Close it before f.
func NewAsyncIO(f *File, depth int, done func([]AsyncResult) bool) (*AsyncIO, error) {
	if !f.direct {
		return nil, fmt.Errorf("%w: %s is not open with O_DIRECT", ErrAsyncUnavailable, f.path)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil, fmt.Errorf("%w: big-endian iocb layout not implemented", ErrAsyncUnavailable)
	}
	if depth <= 0 {
		depth = 256
	}
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, uintptr(depth), uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		return nil, fmt.Errorf("%w: io_setup(%d): %w", ErrAsyncUnavailable, depth, e)
	}
	a := &AsyncIO{
		f: f, ctx: ctx, done: done,
		reaped: make(chan struct{}),
	}
	holdProc(1)
	go a.reap(depth, rawIdle)
	return a, nil
}

// Accepts reports whether a request of p at off can go through native
// AIO: in range, and buffer, offset and length aligned for O_DIRECT.
func (a *AsyncIO) Accepts(p []byte, off int64) bool {
	n := int64(len(p))
	return n > 0 && off >= 0 && off <= a.f.size && n <= a.f.size-off &&
		a.f.aligned(off, n) && IsAligned(p)
}

// AcceptsFlush reports whether a Flush op can go through native AIO: true
// until the kernel refused one (before Linux 4.18 it has no AIO fsync).
func (a *AsyncIO) AcceptsFlush() bool { return !a.noFlush.Load() }

// AcceptsFUA reports whether a FUA write can go through native AIO: true
// until the kernel refused RWF_DSYNC on one (Linux 4.13+ takes it).
func (a *AsyncIO) AcceptsFUA() bool { return !a.noFUA.Load() }

// Submit queues ops and returns how many the kernel took, in order; the caller carries out the rest (ops[n:]) some other way. An
// error says why not all of them were taken (EAGAIN: the context is full;
// EINVAL or EOPNOTSUPP for ops[n] a Flush or FUA write: the kernel has no
// AIO fsync or RWF_DSYNC, and AcceptsFlush or AcceptsFUA is false from now
// on). Every op must pass Accepts (a Flush: AcceptsFlush; a FUA write:
// AcceptsFUA too); writes need a writable File.
func (a *AsyncIO) Submit(ops []AsyncOp) (int, error) { return a.submitOps(ops, false) }

// SubmitFromDone is Submit for done itself, on the goroutine delivering
// results: a flush among ops, with nothing in flight, is taken by the
// reaper (FLUSHES SUBMITTED FROM DONE) and counts as taken.
func (a *AsyncIO) SubmitFromDone(ops []AsyncOp) (int, error) { return a.submitOps(ops, true) }

func (a *AsyncIO) submitOps(ops []AsyncOp, fromDone bool) (int, error) {
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
		}
		switch {
		case op.Flush:
			cb.opcode, cb.buf, cb.nbytes, cb.offset = iocbCmdFdsync, 0, 0, 0
			cb.rwFlags = a.testRWFlags
		case op.Write:
			cb.opcode = iocbCmdPwrite
			if op.FUA {
				cb.rwFlags = unix.RWF_DSYNC | a.testRWFlags
			}
		}
		ptrs[i] = cb
	}
	// Runs of ops go to io_submit; a flush the reaper will run (see
	// FLUSHES SUBMITTED FROM DONE) ends a run.
	done := 0
	for i := 0; i < len(ops); i++ {
		if !ops[i].Flush || !fromDone || !a.delivering.Load() {
			continue
		}
		// The ops ahead of it first: the reaper takes it only when
		// nothing is in flight.
		n, err := a.submit(ops, ptrs, done, i)
		if err != nil {
			return n, err
		}
		done = i
		if a.reaperTakesFlush(ops[i].Tag) {
			done = i + 1
		}
	}
	return a.submit(ops, ptrs, done, len(ops))
}

// reaperTakesFlush queues the flush tagged tag, submitted from done, for
// the reaper; false when nothing would run it (the reaper is not in done)
// or requests are in flight (the kernel runs the flush then). The reaper
// looks at the queue after done returned, under fmu.
func (a *AsyncIO) reaperTakesFlush(tag uint64) bool {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	if !a.delivering.Load() || a.inflight.Load() != int64(len(a.flushes)) {
		// Not from done, or requests in flight: their completions would
		// wait behind the fdatasync.
		return false
	}
	a.inflight.Add(1)
	a.flushes = append(a.flushes, tag)
	return true
}

// submit hands ptrs[from:to] (of ops[from:to]) to io_submit and returns
// how many ops in all are taken: from, plus those it submitted.
func (a *AsyncIO) submit(ops []AsyncOp, ptrs []*iocb, from, to int) (int, error) {
	done := from
	for done < to {
		a.inflight.Add(int64(to - done))
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, uintptr(to-done), uintptr(unsafe.Pointer(&ptrs[done])))
		if e != 0 || n == 0 {
			a.inflight.Add(-int64(to - done))
			if e == unix.EINTR {
				continue
			}
			if e == 0 {
				e = unix.EAGAIN
			}
			if e == unix.EINVAL || e == unix.EOPNOTSUPP {
				// No AIO fsync or RWF_DSYNC in this kernel (or not for
				// this file): callers take the synchronous path for those
				// from now on.
				switch op := ops[done]; {
				case op.Flush:
					a.noFlush.Store(true)
				case op.Write && op.FUA:
					a.noFUA.Store(true)
				}
			}
			return done, fmt.Errorf("blockdev: io_submit on %s: %w", a.f.path, e)
		}
		a.inflight.Add(-int64(to - done - int(n)))
		done += int(n)
	}
	return done, nil
}

// deliver gives results to done, then runs the flushes submitted from
// done (FLUSHES SUBMITTED FROM DONE) and delivers theirs, until done
// submits none. results is reused. It returns whether a call of done
// asked the reaper to yield.
func (a *AsyncIO) deliver(results []AsyncResult) (yield bool) {
	for {
		a.fmu.Lock()
		a.delivering.Store(true)
		a.fmu.Unlock()
		if a.done(results) {
			yield = true
		}
		a.fmu.Lock()
		tags := a.flushes
		a.flushes, a.spare = a.spare[:0], tags
		a.delivering.Store(false)
		a.fmu.Unlock()
		if len(tags) == 0 {
			return yield
		}
		err := a.f.Flush()
		a.reaperFlushes.Add(int64(len(tags)))
		results = results[:0]
		for _, t := range tags {
			results = append(results, AsyncResult{Tag: t, Err: err})
		}
		a.inflight.Add(-int64(len(tags)))
	}
}

// ReaperFlushes is how many flushes the reaper ran itself with fdatasync
// (FLUSHES SUBMITTED FROM DONE) instead of sending them to the kernel as
// IOCB_CMD_FDSYNC: diagnostics, and the driver's test that a Secondary's
// epoch flushes take that path.
func (a *AsyncIO) ReaperFlushes() int64 { return a.reaperFlushes.Load() }

// wakeTag marks the read Close submits to wake an idle reaper; its
// result is not delivered.
const wakeTag = ^uint64(0)

// reap delivers completions; once closing and nothing is in flight it
// destroys the context and exits.
//
// NB: only the reaper destroys the context. An aio context id is the
// address of its ring: destroyed while the reaper is between two
// io_getevents, it could be reused by another AsyncIO's io_setup, and the
// old reaper would then take (and misdeliver) the new context's events.
func (a *AsyncIO) reap(depth int, rawIdle time.Duration) {
	defer close(a.reaped)
	defer holdProc(-1)
	defer unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0) //nolint:errcheck // nothing is in flight
	events := make([]ioEvent, min(depth, 256))
	results := make([]AsyncResult, 0, len(events))
	// The timeout bounds how long an idle reaper takes to notice Close
	// when Close could not submit its wake-up read.
	ts := unix.NsecToTimespec(int64(time.Second))
	tsRaw := unix.NsecToTimespec(int64(rawIdle))
	idle := true
	interrupted := false
	for {
		var n uintptr
		var e unix.Errno
		raw := !idle && !interrupted && takeRawSlot()
		interrupted = false
		if raw {
			// See WAITING FOR COMPLETIONS.
			n, _, e = unix.RawSyscall6(unix.SYS_IO_GETEVENTS, a.ctx, 1, uintptr(len(events)),
				uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&tsRaw)), 0)
			rawWaiting.Add(-1)
			idle = e == 0 && n == 0 && a.inflight.Load() == 0
		} else {
			n, _, e = unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 1, uintptr(len(events)),
				uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&ts)), 0)
		}
		if e == unix.EINTR {
			// A signal: maybe the runtime wants this P (a stop-the-world,
			// a preemption, the GC's stack scan). RawSyscall6 is no
			// preemption point, and runtime.Gosched inlined here is none
			// either: the reaper, runnable again at once, re-entered the
			// raw wait before the GC caught it stopped, again and again.
			// yieldToRuntime is one, and the next wait is an ordinary
			// system call, where the runtime takes the P and scans the
			// stack without the reaper's help.
			interrupted = true
			yieldToRuntime()
		} else if e != 0 {
			panic(fmt.Sprintf("blockdev: io_getevents on %s: %v", a.f.path, e))
		}
		if e == 0 && n > 0 {
			idle = false
			results = results[:0]
			for _, ev := range events[:n] {
				if ev.data == wakeTag {
					continue
				}
				r := AsyncResult{Tag: ev.data, N: int(ev.res)}
				if ev.res < 0 {
					r.N, r.Err = 0, fmt.Errorf("blockdev: native AIO on %s: %w", a.f.path, unix.Errno(-ev.res))
				}
				results = append(results, r)
			}
			// Counted out before their delivery: a flush submitted from
			// done sees what is still in the kernel (FLUSHES SUBMITTED
			// FROM DONE). Close still waits for this delivery: only the
			// reaper ends the reaper, after it.
			if a.inflight.Add(-int64(n)) < 0 {
				panic("blockdev: native AIO delivered more completions than were submitted")
			}
			if len(results) > 0 {
				// done says whether it readied a goroutine that waits for
				// these results (a caller blocked on a flush, or the
				// driver's event loop when done handed the results to it):
				// it is queued on this P, and yielding runs it on this
				// thread now instead of after another thread was woken to
				// steal it (qd1 + fsync: ~90 us off a flush's reply).
				// When done ran everything itself, the reaper goes straight
				// back to its wait: a yield then only woke another thread
				// (goschedImpl calls wakep), which often took the reaper
				// from the global queue while this thread went to sleep,
				// two futex calls and a thread switch per batch (under
				// 4 KiB qd16 protocol C, a quarter of both daemons' futex
				// calls).
				if a.deliver(results) {
					a.yields.Add(1)
					runtime.Gosched()
				}
			}
		}
		if a.closing.Load() && a.inflight.Load() == 0 {
			return
		}
	}
}

// Close waits until every submitted request was delivered and the
// context destroyed. Submit fails afterwards. It does not close the File.
func (a *AsyncIO) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		// Wake the reaper with a read of the first block: a real request
		// completes even when nothing else is in flight. It is counted
		// before closing is set, so the reaper cannot destroy the context
		// under it.
		a.inflight.Add(1)
		a.closing.Store(true)
		buf := AlignedBuffer(int(max(a.f.align, 512)))
		cb := iocb{data: wakeTag, fildes: uint32(a.f.fd), opcode: iocbCmdPread,
			buf: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))), nbytes: uint64(len(buf))}
		ptr := &cb
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&ptr)))
		if e != 0 || n != 1 {
			a.inflight.Add(-1) // the reaper notices at its next timeout
		}
		a.mu.Unlock()
		<-a.reaped
		runtime.KeepAlive(buf)
	})
	return nil
}

// rawIdle is how long a raw wait lasts before the reaper, finding
// nothing in flight, waits as an ordinary system call until the next
// completion. NewAsyncIO hands it to the reaper; tests change it.
var rawIdle = 10 * time.Millisecond

// rawWait: reapers may wait holding their P (see WAITING FOR
// COMPLETIONS). Not with async preemption off (any non-zero
// asyncpreemptoff, or gccheckmark, which turns it off too): no signal
// would end a wait when the runtime needs the P.
var rawWait = asyncPreemption(os.Getenv("GODEBUG"))

// asyncPreemption reports whether the runtime preempts with signals
// under this GODEBUG string.
func asyncPreemption(s string) bool {
	return !godebugSet(s, "asyncpreemptoff") && !godebugSet(s, "gccheckmark")
}

// godebugSet reports whether key has a non-zero integer value in a
// GODEBUG string (the last one wins, as in the runtime).
func godebugSet(s, key string) bool {
	set := false
	for _, kv := range strings.Split(s, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			n, err := strconv.Atoi(val)
			set = err == nil && n != 0
		}
	}
	return set
}

// yieldToRuntime is a preemption point after a signal ended a raw wait:
// not inlined, its prologue sees a pending preemption request and, when
// the GC asked the goroutine to stop for its stack scan, parks it there
// (the runtime's Gosched, inlined into the loop, would not).
//
//go:noinline
func yieldToRuntime() { runtime.Gosched() }

// procs is the processors added to GOMAXPROCS for the reapers.
var procs struct {
	sync.Mutex
	n     int // open AsyncIOs
	base  int // GOMAXPROCS before the first of them
	added int // Ps added: min(n, base)
}

// rawLimit is how many reapers may wait raw at once (the Ps added);
// rawWaiting how many do.
var rawLimit, rawWaiting atomic.Int32

// takeRawSlot reserves a raw wait; the caller releases it with
// rawWaiting.Add(-1) when the wait returned.
func takeRawSlot() bool {
	if rawWaiting.Add(1) <= rawLimit.Load() {
		return true
	}
	rawWaiting.Add(-1)
	return false
}

// holdProc adds d (+1 or -1) open AsyncIOs and sets GOMAXPROCS to what
// it was before the first one plus one per open AsyncIO, at most twice
// that: a reaper waiting raw on a busy disk keeps its P, so the rest of
// the program keeps as many as it had. When the last one closes,
// GOMAXPROCS is what it was; the runtime's automatic updates (cgroup CPU
// limits), which any runtime.GOMAXPROCS call ends, are turned back on
// unless the GOMAXPROCS environment variable set it.
func holdProc(d int) {
	if !rawWait {
		return
	}
	procs.Lock()
	defer procs.Unlock()
	if procs.n == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.n += d
	added := min(procs.n, procs.base)
	if added == procs.added {
		return
	}
	if added < procs.added {
		rawLimit.Store(int32(added)) // fewer raw waits before fewer Ps
	}
	switch {
	case added > 0 || os.Getenv("GOMAXPROCS") != "":
		runtime.GOMAXPROCS(procs.base + added)
	case runtime.GOMAXPROCS(0) == procs.base+procs.added:
		// Nobody else changed it meanwhile.
		runtime.SetDefaultGOMAXPROCS()
	default:
		runtime.GOMAXPROCS(procs.base)
	}
	procs.added = added
	rawLimit.Store(int32(added))
}
