package blockdev

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// memChunkSize is the allocation unit of Mem. Untouched chunks take no
// memory, so a 1 TiB Mem with a few written blocks stays small.
const memChunkSize = 64 << 10

// memShards spreads the chunk index over several maps so that lookups of
// unrelated chunks do not contend on one lock.
const memShards = 64

type memChunk struct {
	mu   sync.RWMutex
	data [memChunkSize]byte
}

type memShard struct {
	mu     sync.RWMutex
	chunks map[int64]*memChunk
}

// Mem is an in-memory sparse Device: chunks are allocated on first write,
// and unwritten ranges read as zeroes. Flush does nothing (memory is its
// own stable storage); use Crashable for power-cut semantics.
//
// Mem is safe for concurrent use. Locks are per 64 KiB chunk (and per shard
// of the chunk index), never device-wide, and are held during the copy so
// that even overlapping concurrent I/O is free of data races.
type Mem struct {
	size   int64
	shards [memShards]memShard
	closed atomic.Bool
}

var (
	_ Device     = (*Mem)(nil)
	_ Discarder  = (*Mem)(nil)
	_ ZeroWriter = (*Mem)(nil)
)

// NewMem returns a zero-filled in-memory device of size bytes.
func NewMem(size int64) *Mem {
	if size < 0 {
		panic(fmt.Sprintf("blockdev: negative Mem size %d", size))
	}
	m := &Mem{size: size}
	for i := range m.shards {
		m.shards[i].chunks = make(map[int64]*memChunk)
	}
	return m
}

// Size implements Device.
func (m *Mem) Size() int64 { return m.size }

func (m *Mem) shard(idx int64) *memShard { return &m.shards[uint64(idx)%memShards] }

// chunk returns chunk idx, allocating it when create is set.
func (m *Mem) chunk(idx int64, create bool) *memChunk {
	s := m.shard(idx)
	s.mu.RLock()
	c := s.chunks[idx]
	s.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.chunks[idx]; c == nil {
		c = new(memChunk)
		s.chunks[idx] = c
	}
	return c
}

// each calls fn for every chunk-bounded piece of [off, off+n).
func each(off, n int64, fn func(idx, in, pos, cnt int64)) {
	pos := int64(0)
	for pos < n {
		cur := off + pos
		idx := cur / memChunkSize
		in := cur % memChunkSize
		cnt := min(n-pos, memChunkSize-in)
		fn(idx, in, pos, cnt)
		pos += cnt
	}
}

// ReadAt implements Device.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, fmt.Errorf("blockdev: mem read: %w", ErrClosed)
	}
	if err := checkRange("read", off, int64(len(p)), m.size); err != nil {
		return 0, err
	}
	each(off, int64(len(p)), func(idx, in, pos, cnt int64) {
		dst := p[pos : pos+cnt]
		c := m.chunk(idx, false)
		if c == nil {
			clear(dst)
			return
		}
		c.mu.RLock()
		copy(dst, c.data[in:in+cnt])
		c.mu.RUnlock()
	})
	return len(p), nil
}

// WriteAt implements Device.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, fmt.Errorf("blockdev: mem write: %w", ErrClosed)
	}
	if err := checkRange("write", off, int64(len(p)), m.size); err != nil {
		return 0, err
	}
	each(off, int64(len(p)), func(idx, in, pos, cnt int64) {
		c := m.chunk(idx, true)
		c.mu.Lock()
		copy(c.data[in:in+cnt], p[pos:pos+cnt])
		c.mu.Unlock()
	})
	return len(p), nil
}

// Discard implements Discarder: whole chunks are released, partial ones
// zeroed.
func (m *Mem) Discard(off, length int64) error {
	if m.closed.Load() {
		return fmt.Errorf("blockdev: mem discard: %w", ErrClosed)
	}
	if err := checkRange("discard", off, length, m.size); err != nil {
		return err
	}
	each(off, length, func(idx, in, _, cnt int64) {
		if cnt == memChunkSize {
			s := m.shard(idx)
			s.mu.Lock()
			delete(s.chunks, idx)
			s.mu.Unlock()
			return
		}
		if c := m.chunk(idx, false); c != nil {
			c.mu.Lock()
			clear(c.data[in : in+cnt])
			c.mu.Unlock()
		}
	})
	return nil
}

// WriteZeroes implements ZeroWriter (the same as Discard for memory).
func (m *Mem) WriteZeroes(off, length int64) error { return m.Discard(off, length) }

// Flush implements Device; memory needs no flushing.
func (m *Mem) Flush() error {
	if m.closed.Load() {
		return fmt.Errorf("blockdev: mem flush: %w", ErrClosed)
	}
	return nil
}

// Close implements Device. The contents stay readable through Clone.
func (m *Mem) Close() error {
	m.closed.Store(true)
	return nil
}

// Clone returns an independent copy of the device's current contents (open,
// even when m is closed).
func (m *Mem) Clone() *Mem {
	n := NewMem(m.size)
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for idx, c := range s.chunks {
			nc := new(memChunk)
			c.mu.RLock()
			nc.data = c.data
			c.mu.RUnlock()
			n.shards[i].chunks[idx] = nc
		}
		s.mu.RUnlock()
	}
	return n
}

// Allocated is the number of bytes of chunk memory in use (for tests that
// check sparseness).
func (m *Mem) Allocated() int64 {
	var n int64
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += int64(len(s.chunks)) * memChunkSize
		s.mu.RUnlock()
	}
	return n
}
