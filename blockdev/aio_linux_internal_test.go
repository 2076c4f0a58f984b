//go:build linux

package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The kernel reads struct iocb and writes struct io_event by offset.
func TestIocbLayout(t *testing.T) {
	var cb iocb
	require.Equal(t, uintptr(64), unsafe.Sizeof(cb))
	require.Equal(t, uintptr(12), unsafe.Offsetof(cb.rwFlags))
	require.Equal(t, uintptr(16), unsafe.Offsetof(cb.opcode))
	require.Equal(t, uintptr(20), unsafe.Offsetof(cb.fildes))
	require.Equal(t, uintptr(24), unsafe.Offsetof(cb.buf))
	require.Equal(t, uintptr(32), unsafe.Offsetof(cb.nbytes))
	require.Equal(t, uintptr(40), unsafe.Offsetof(cb.offset))
	var ev ioEvent
	require.Equal(t, uintptr(32), unsafe.Sizeof(ev))
	require.Equal(t, uintptr(16), unsafe.Offsetof(ev.res))
}

// A kernel that refuses AIO fsync or RWF_DSYNC (emulated with an unknown
// aio_rw_flags bit, which also proves the kernel reads the field where
// rwFlags puts it): Submit takes the ops before the refused one, names
// the error, and AcceptsFlush / AcceptsFUA turn false; plain writes go on.
func TestAsyncIORefusedFlushAndFUA(t *testing.T) {
	a, results := openInternalAsync(t)
	a.testRWFlags = 1 << 30
	p := AlignedBuffer(4096)
	refused := func(err error) bool {
		return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
	}

	n, err := a.Submit([]AsyncOp{{Tag: 1, Write: true, P: p}, {Tag: 2, Write: true, FUA: true, P: p, Off: 4096}, {Tag: 3, Write: true, P: p, Off: 8192}})
	require.Equal(t, 1, n, "the plain write before the refused FUA write is taken")
	require.True(t, refused(err), "%v", err)
	require.False(t, a.AcceptsFUA())
	require.True(t, a.AcceptsFlush())
	require.Equal(t, uint64(1), (<-results).Tag)

	n, err = a.Submit([]AsyncOp{{Tag: 4, Flush: true}})
	require.Zero(t, n)
	require.True(t, refused(err), "%v", err)
	require.False(t, a.AcceptsFlush())

	n, err = a.Submit([]AsyncOp{{Tag: 5, Write: true, P: p, Off: 8192}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	r := <-results
	require.Equal(t, uint64(5), r.Tag)
	require.NoError(t, r.Err)
}

// openDirect opens a 1 MiB file of the test's with O_DIRECT (closed at
// the test's end), or skips the test where the file system has none.
func openDirect(t *testing.T) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk")
	require.NoError(t, os.WriteFile(path, make([]byte, 1<<20), 0o600))
	f, err := Open(path, Options{Direct: true})
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	if !f.Direct() {
		t.Skip("temp dir file system has no O_DIRECT")
	}
	return f
}

// openInternalAsync opens an AsyncIO of depth 16 on a 1 MiB O_DIRECT
// file; its results arrive on the channel.
func openInternalAsync(t *testing.T) (*AsyncIO, chan AsyncResult) {
	t.Helper()
	f := openDirect(t)
	results := make(chan AsyncResult, 16)
	a, err := NewAsyncIO(f, 16, func(rs []AsyncResult) bool {
		for _, r := range rs {
			results <- r
		}
		return true
	})
	require.NoError(t, err)
	// Registered after f's: runs first. Close is idempotent; a test that
	// stops early leaves no reaper (and no held P) to the next one.
	t.Cleanup(func() { a.Close() })
	return a, results
}

// A reaper waiting in its raw io_getevents holds a P: the runtime must
// still stop the world and scan the reaper's stack at once (every GC does
// both), not after the wait's timeout, and not only after a livelock of
// signals (interrupted, the reaper is runnable again at once and goes back
// into the raw wait before the GC catches it stopped: on a busy machine
// that held a GC for seconds). The wait is made to last by counting a
// request in flight that was never submitted, and the raw wait's timeout
// is made 10 s; each round first completes a real read, which puts the
// reaper back on its raw wait, and spinning goroutines keep the other
// processors busy (a GC then takes 10-120 ms here).
func TestAsyncIORawWaitLetsTheWorldStop(t *testing.T) {
	if !rawWait {
		t.Skip("GODEBUG turns async preemption off: the reaper waits as an ordinary system call")
	}
	defer func(d time.Duration) { rawIdle = d }(rawIdle)
	rawIdle = 10 * time.Second
	a, results := openInternalAsync(t)
	a.inflight.Add(1)
	undone := false
	undo := func() { // else Close would wait for it forever
		if !undone {
			undone = true
			a.inflight.Add(-1)
		}
	}
	defer undo()
	var stop atomic.Bool
	var spinners sync.WaitGroup
	defer func() { stop.Store(true); spinners.Wait() }()
	for range max(1, runtime.GOMAXPROCS(0)-2) {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for !stop.Load() {
			}
		}()
	}
	p := AlignedBuffer(4096)
	for i := range 30 {
		n, err := a.Submit([]AsyncOp{{Tag: uint64(i), P: p}})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, uint64(i), (<-results).Tag)
		// The reaper is back on its raw wait (sysmon would interrupt it
		// after 10 ms of it).
		time.Sleep(2 * time.Millisecond)
		start := time.Now()
		runtime.GC()
		require.Less(t, time.Since(start), 2*time.Second, "a GC waited for the reaper's io_getevents")
	}
	undo()
	require.NoError(t, a.Close())
}

// Each open AsyncIO adds one to GOMAXPROCS (its reaper's P), at most as
// many as there were, and allows one more raw wait; closing the last one
// puts GOMAXPROCS back. Not parallel: no other AsyncIO is open.
func TestAsyncIOHoldsAProc(t *testing.T) {
	if !rawWait {
		t.Skip("GODEBUG turns async preemption off: reapers hold no P")
	}
	procs.Lock()
	open := procs.n
	procs.Unlock()
	require.Zero(t, open, "an AsyncIO of another test is still open")
	before := runtime.GOMAXPROCS(0)
	a, _ := openInternalAsync(t)
	require.Equal(t, before+1, runtime.GOMAXPROCS(0))
	require.Equal(t, int32(1), rawLimit.Load())
	more := []*AsyncIO{a}
	for range before + 1 {
		b, _ := openInternalAsync(t)
		more = append(more, b)
	}
	require.Equal(t, 2*before, runtime.GOMAXPROCS(0), "at most as many Ps added as there were")
	require.Equal(t, int32(before), rawLimit.Load())
	for _, b := range more {
		require.NoError(t, b.Close())
	}
	require.Equal(t, before, runtime.GOMAXPROCS(0))
	require.Zero(t, rawLimit.Load())
}

func TestAsyncPreemption(t *testing.T) {
	require.True(t, asyncPreemption(""))
	require.True(t, asyncPreemption("gctrace=1,asyncpreemptoff=0"))
	require.False(t, asyncPreemption("asyncpreemptoff=1"))
	require.False(t, asyncPreemption("asyncpreemptoff=2"))
	require.False(t, asyncPreemption("asyncpreemptoff=1,gctrace=1"))
	require.True(t, asyncPreemption("asyncpreemptoff=1,gctrace=1,asyncpreemptoff=0"))
	require.False(t, asyncPreemption("gccheckmark=1"))
	require.True(t, asyncPreemption("xasyncpreemptoff=1,asyncpreemptoff=x"))
}

// A flush done submits (SubmitFromDone) while nothing else is in flight
// is run by the reaper itself (FLUSHES SUBMITTED FROM DONE), in a batch
// with writes too; one submitted while a request is in flight, with
// Submit, or from outside done, goes to the kernel. Every result arrives once, and the flush's tag with
// no error.
func TestAsyncIOFlushFromDone(t *testing.T) {
	f := openDirect(t)
	p := AlignedBuffer(4096)
	results := make(chan AsyncResult, 16)
	then := make(chan []AsyncOp, 1) // what done submits after the next result
	submitted := make(chan error, 1)
	var plainSubmit atomic.Bool // done uses Submit, not SubmitFromDone
	var a *AsyncIO
	var err error
	a, err = NewAsyncIO(f, 16, func(rs []AsyncResult) bool {
		for _, r := range rs {
			results <- r
		}
		select {
		case ops := <-then:
			var n int
			var err error
			if plainSubmit.Load() {
				n, err = a.Submit(ops)
			} else {
				n, err = a.SubmitFromDone(ops)
			}
			if err == nil && n != len(ops) {
				err = errors.New("not all taken")
			}
			submitted <- err
		default:
		}
		return true
	})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	next := func(want ...uint64) {
		t.Helper()
		got := map[uint64]bool{}
		for range want {
			select {
			case r := <-results:
				require.NoError(t, r.Err, "tag %d", r.Tag)
				require.False(t, got[r.Tag], "tag %d delivered twice", r.Tag)
				got[r.Tag] = true
			case <-time.After(10 * time.Second):
				t.Fatalf("results %v: got only %v", want, got)
			}
		}
		for _, tag := range want {
			require.True(t, got[tag], "tag %d", tag)
		}
	}
	// Each case starts with the reaper out of done (nothing is in flight:
	// it does not go back in), so that done takes the case's ops from
	// then after the case's own write, with nothing else in flight.
	outOfDone := func() {
		for a.delivering.Load() {
			runtime.Gosched()
		}
	}
	write := func(tag uint64) AsyncOp { return AsyncOp{Tag: tag, Write: true, P: p, Off: int64(tag) * 4096} }

	// round: done takes ops after write w's result (done runs again for
	// whatever ops completes); every tag in want arrives once, and the
	// reaper has run flushes flushes in all.
	round := func(ops []AsyncOp, w uint64, flushes int64, want ...uint64) {
		t.Helper()
		outOfDone()
		then <- ops
		_, err := a.Submit([]AsyncOp{write(w)})
		require.NoError(t, err)
		next(append([]uint64{w}, want...)...)
		require.NoError(t, <-submitted)
		require.Equal(t, flushes, a.reaperFlushes.Load())
	}

	// The last write's completion starts the flush: the reaper runs it.
	round([]AsyncOp{{Tag: 2, Flush: true}}, 1, 1, 2)
	// A write after it in the same call goes to the kernel, the flush to
	// the reaper.
	round([]AsyncOp{{Tag: 4, Flush: true}, write(5)}, 3, 2, 4, 5)
	// A write ahead of it is in flight when the flush comes: the kernel
	// runs the flush, so the write's completion need not wait for it.
	round([]AsyncOp{write(10), {Tag: 11, Flush: true}}, 6, 2, 10, 11)
	// With a request in flight (counted, never submitted) the flush would
	// hold back its completion: the kernel runs it.
	a.inflight.Add(1)
	round([]AsyncOp{{Tag: 8, Flush: true}}, 7, 2, 8)
	a.inflight.Add(-1)
	// Submit, not SubmitFromDone, in done: the kernel.
	plainSubmit.Store(true)
	round([]AsyncOp{{Tag: 13, Flush: true}}, 12, 2, 13)

	// Not from done: the kernel.
	outOfDone()
	_, err = a.Submit([]AsyncOp{{Tag: 9, Flush: true}})
	require.NoError(t, err)
	next(9)
	require.EqualValues(t, 2, a.reaperFlushes.Load())
	require.NoError(t, a.Close())
	require.Zero(t, a.inflight.Load())
}

// The reaper yields after a delivery when, and only when, done asks it
// to (it readied a goroutine waiting for the results).
func TestAsyncIOYieldsWhenDoneAsks(t *testing.T) {
	f := openDirect(t)
	var yield atomic.Bool
	got := make(chan struct{}, 1)
	a, err := NewAsyncIO(f, 4, func([]AsyncResult) bool {
		y := yield.Load()
		got <- struct{}{}
		return y
	})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	p := AlignedBuffer(4096)
	for i, y := range []bool{false, false, true, false, true} {
		yield.Store(y)
		_, err := a.Submit([]AsyncOp{{Tag: uint64(i), P: p, Off: 4096}})
		require.NoError(t, err)
		<-got
	}
	require.NoError(t, a.Close())
	require.EqualValues(t, 2, a.yields.Load())
}
