package blockdev

import (
	"errors"
	"fmt"
	"sync"
)

// Op is a kind of device operation, for fault injection.
type Op int

// Operation kinds. The zero value is invalid.
const (
	OpRead Op = 1 + iota
	OpWrite
	OpFlush
	OpDiscard
	OpWriteZeroes
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpFlush:
		return "flush"
	case OpDiscard:
		return "discard"
	case OpWriteZeroes:
		return "write-zeroes"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// ErrInjected is the error a Fault returns unless it names its own.
var ErrInjected = errors.New("blockdev: injected I/O error")

// Fault describes errors to inject into one kind of operation (a plain
// value; Faulty keeps its own copy).
type Fault struct {
	Op Op
	// Off and Len restrict the fault to operations overlapping [Off,
	// Off+Len). Len 0 matches every offset (and Flush, which has none,
	// matches only faults with Len 0).
	Off, Len int64
	// After lets this many matching operations succeed before the first
	// failure.
	After int
	// Sticky keeps failing every matching operation once the fault fired;
	// otherwise it fails exactly once.
	Sticky bool
	// Err is returned (wrapped) instead of ErrInjected when set.
	Err error
}

type faultState struct {
	Fault
	seen  int
	fired bool
	done  bool
}

// FaultError is returned by a failed injected operation (a plain value).
type FaultError struct {
	Op       Op
	Off, Len int64
	Err      error
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("blockdev: %s [%d, +%d): %v", e.Op, e.Off, e.Len, e.Err)
}

func (e *FaultError) Unwrap() error { return e.Err }

// Faulty wraps a Device and fails chosen operations, to test error paths
// (DRBD's on-io-error handling, metadata write failures). A failing
// operation does not reach the inner device: a failed write changes
// nothing.
//
// Faulty is safe for concurrent use; its fault table sits behind a mutex
// that is held only to decide, never during the inner I/O.
type Faulty struct {
	inner  Device
	mu     sync.Mutex
	faults []*faultState
}

var (
	_ Device     = (*Faulty)(nil)
	_ Discarder  = (*Faulty)(nil)
	_ ZeroWriter = (*Faulty)(nil)
)

// NewFaulty wraps inner. With no fault injected it passes everything
// through.
func NewFaulty(inner Device) *Faulty { return &Faulty{inner: inner} }

// Inner returns the wrapped device.
func (f *Faulty) Inner() Device { return f.inner }

// Inject adds a fault and returns a function that removes it.
func (f *Faulty) Inject(ft Fault) (remove func()) {
	if ft.Op < OpRead || ft.Op > OpWriteZeroes {
		panic(fmt.Sprintf("blockdev: Inject with invalid op %v", ft.Op))
	}
	st := &faultState{Fault: ft}
	f.mu.Lock()
	f.faults = append(f.faults, st)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, s := range f.faults {
			if s == st {
				f.faults = append(f.faults[:i], f.faults[i+1:]...)
				return
			}
		}
	}
}

// Reset removes every fault.
func (f *Faulty) Reset() {
	f.mu.Lock()
	f.faults = nil
	f.mu.Unlock()
}

// check decides whether an operation fails. Every matching fault counts
// the operation, so After counts are independent of each other.
func (f *Faulty) check(op Op, off, n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var fail error
	for _, s := range f.faults {
		if s.Op != op || s.done {
			continue
		}
		if s.Len != 0 && (op == OpFlush || off+n <= s.Off || off >= s.Off+s.Len) {
			continue
		}
		if s.fired && s.Sticky {
			fail = cmpOr(fail, s.Err)
			continue
		}
		if s.seen < s.After {
			s.seen++
			continue
		}
		s.fired = true
		if !s.Sticky {
			s.done = true
		}
		fail = cmpOr(fail, s.Err)
	}
	if fail == nil {
		return nil
	}
	return &FaultError{Op: op, Off: off, Len: n, Err: fail}
}

// cmpOr keeps the first error, defaulting a fault's nil Err to ErrInjected.
func cmpOr(have, next error) error {
	if have != nil {
		return have
	}
	if next == nil {
		return ErrInjected
	}
	return next
}

// ReadAt implements Device.
func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check(OpRead, off, int64(len(p))); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

// WriteAt implements Device.
func (f *Faulty) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check(OpWrite, off, int64(len(p))); err != nil {
		return 0, err
	}
	return f.inner.WriteAt(p, off)
}

// Flush implements Device.
func (f *Faulty) Flush() error {
	if err := f.check(OpFlush, 0, 0); err != nil {
		return err
	}
	return f.inner.Flush()
}

// Discard implements Discarder (falling back as the package's Discard
// does when the inner device is no Discarder).
func (f *Faulty) Discard(off, length int64) error {
	if err := f.check(OpDiscard, off, length); err != nil {
		return err
	}
	return Discard(f.inner, off, length)
}

// WriteZeroes implements ZeroWriter.
func (f *Faulty) WriteZeroes(off, length int64) error {
	if err := f.check(OpWriteZeroes, off, length); err != nil {
		return err
	}
	return WriteZeroes(f.inner, off, length)
}

// Size implements Device.
func (f *Faulty) Size() int64 { return f.inner.Size() }

// Close implements Device; it is never failed.
func (f *Faulty) Close() error { return f.inner.Close() }
