package blockdev

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// CrashGranularity is the unit in which Crash decides whether an unflushed
// write survived a power cut.
type CrashGranularity int

const (
	// CrashPerWrite: each unflushed write survives whole or not at all
	// (a device with atomic writes of any size).
	CrashPerWrite CrashGranularity = 1 + iota
	// CrashPer4K: each 4 KiB-aligned piece of each unflushed write survives
	// independently: a multi-block write may be torn at 4 KiB boundaries,
	// as on a disk with 4 KiB physical sectors. DRBD's own metadata I/O
	// (4 KiB superblock, AL transactions, bitmap pages) is atomic under
	// this model.
	CrashPer4K
	// CrashPer512: pieces of 512 bytes survive independently, so even a
	// single 4 KiB block may be torn (legacy 512-byte-sector disks). A
	// torn AL transaction then fails its crc32c and is ignored on replay.
	CrashPer512
)

func (g CrashGranularity) String() string {
	switch g {
	case CrashPerWrite:
		return "per-write"
	case CrashPer4K:
		return "per-4k"
	case CrashPer512:
		return "per-512"
	}
	return fmt.Sprintf("CrashGranularity(%d)", int(g))
}

func (g CrashGranularity) unit() int64 {
	switch g {
	case CrashPer4K:
		return 4096
	case CrashPer512:
		return 512
	}
	return 0
}

type pendingWrite struct {
	seq  uint64
	off  int64
	n    int64
	data []byte // nil: zeroes (discard or write-zeroes)
}

// Crashable wraps a Device and remembers which writes are durable, so a
// test can cut the power at any moment: Crash returns the device as it
// would be found after a reboot, holding everything that was flushed plus
// a random subset of the writes that were not.
//
// What is modelled: a volatile write cache that may persist any subset of
// unflushed writes, in any order, at the chosen granularity; a completed
// Flush persists every write that completed before the Flush began; writes
// that fail leave nothing behind; discards and write-zeroes are writes of
// zeroes. When two unflushed writes overlap and both survive, the later
// one wins (the cache never resurrects older data over newer). Not
// modelled: bit rot, misdirected writes, reads returning data that then
// disappears (reads always see the latest write).
//
// Crashable is safe for concurrent use. I/O goes to the inner device
// without any lock; a short mutex only guards the log of unflushed writes.
type Crashable struct {
	inner Device
	gran  CrashGranularity

	mu      sync.Mutex
	durable *Mem
	pending []pendingWrite
	seq     uint64
}

var (
	_ Device     = (*Crashable)(nil)
	_ Discarder  = (*Crashable)(nil)
	_ ZeroWriter = (*Crashable)(nil)
)

// NewCrashable wraps inner; its current contents count as durable. A Mem
// is cloned cheaply; any other device is copied into memory block by block,
// skipping zeroes, so keep it small.
func NewCrashable(inner Device, g CrashGranularity) (*Crashable, error) {
	if g < CrashPerWrite || g > CrashPer512 {
		return nil, fmt.Errorf("blockdev: invalid crash granularity %v", g)
	}
	c := &Crashable{inner: inner, gran: g}
	if m, ok := inner.(*Mem); ok {
		c.durable = m.Clone()
		return c, nil
	}
	c.durable = NewMem(inner.Size())
	buf := make([]byte, memChunkSize)
	for off := int64(0); off < inner.Size(); off += memChunkSize {
		n := min(memChunkSize, inner.Size()-off)
		if _, err := inner.ReadAt(buf[:n], off); err != nil {
			return nil, fmt.Errorf("blockdev: snapshot for crash testing: %w", err)
		}
		if !allZero(buf[:n]) {
			if _, err := c.durable.WriteAt(buf[:n], off); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// Inner returns the wrapped device.
func (c *Crashable) Inner() Device { return c.inner }

// Unflushed is the number of writes not yet made durable by a Flush.
func (c *Crashable) Unflushed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func (c *Crashable) record(off, n int64, data []byte) {
	var cp []byte
	if data != nil {
		cp = append([]byte(nil), data...)
	}
	c.mu.Lock()
	c.seq++
	c.pending = append(c.pending, pendingWrite{seq: c.seq, off: off, n: n, data: cp})
	c.mu.Unlock()
}

// ReadAt implements Device (reads see every completed write).
func (c *Crashable) ReadAt(p []byte, off int64) (int, error) { return c.inner.ReadAt(p, off) }

// WriteAt implements Device.
func (c *Crashable) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.inner.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	c.record(off, int64(len(p)), p)
	return n, nil
}

// Discard implements Discarder.
func (c *Crashable) Discard(off, length int64) error {
	if err := Discard(c.inner, off, length); err != nil {
		return err
	}
	c.record(off, length, nil)
	return nil
}

// WriteZeroes implements ZeroWriter.
func (c *Crashable) WriteZeroes(off, length int64) error {
	if err := WriteZeroes(c.inner, off, length); err != nil {
		return err
	}
	c.record(off, length, nil)
	return nil
}

// Flush implements Device: after the inner Flush succeeds, every write
// that completed before this call is durable.
func (c *Crashable) Flush() error {
	c.mu.Lock()
	upTo := c.seq
	c.mu.Unlock()
	if err := c.inner.Flush(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.pending[:0]
	for _, w := range c.pending {
		if w.seq <= upTo {
			apply(c.durable, w, w.off, w.n)
		} else {
			keep = append(keep, w)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	return nil
}

// apply writes the part [off, off+n) of w onto m.
func apply(m *Mem, w pendingWrite, off, n int64) {
	if w.data == nil {
		if err := m.Discard(off, n); err != nil {
			panic(err)
		}
		return
	}
	if _, err := m.WriteAt(w.data[off-w.off:off-w.off+n], off); err != nil {
		panic(err)
	}
}

// Crash returns the device contents after a power cut now: every flushed
// write, plus each unflushed write (or piece of one, per the granularity)
// with probability 1/2, decided by r. The wrapped device is not changed,
// so a test can crash the same history many times with different seeds.
func (c *Crashable) Crash(r *rand.Rand) *Mem {
	c.mu.Lock()
	out := c.durable.Clone()
	pending := append([]pendingWrite(nil), c.pending...)
	c.mu.Unlock()
	unit := c.gran.unit()
	for _, w := range pending {
		if unit == 0 {
			if r.IntN(2) == 1 {
				apply(out, w, w.off, w.n)
			}
			continue
		}
		for off := w.off; off < w.off+w.n; {
			next := min((off/unit+1)*unit, w.off+w.n)
			if r.IntN(2) == 1 {
				apply(out, w, off, next-off)
			}
			off = next
		}
	}
	return out
}

// Durable returns a copy of what is guaranteed to survive (the flushed
// state alone).
func (c *Crashable) Durable() *Mem {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.durable.Clone()
}

// Size implements Device.
func (c *Crashable) Size() int64 { return c.inner.Size() }

// Close implements Device.
func (c *Crashable) Close() error { return c.inner.Close() }
