package blockdev_test

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
)

// asyncHarness collects AsyncIO results by tag.
type asyncHarness struct {
	mu   sync.Mutex
	got  map[uint64]blockdev.AsyncResult
	cond *sync.Cond
}

func newAsyncHarness() *asyncHarness {
	h := &asyncHarness{got: map[uint64]blockdev.AsyncResult{}}
	h.cond = sync.NewCond(&h.mu)
	return h
}

func (h *asyncHarness) done(rs []blockdev.AsyncResult) bool {
	h.mu.Lock()
	for _, r := range rs {
		if _, dup := h.got[r.Tag]; dup {
			panic("result delivered twice")
		}
		h.got[r.Tag] = r
	}
	h.cond.Broadcast()
	h.mu.Unlock()
	return true // the waiters
}

func (h *asyncHarness) wait(t *testing.T, tags ...uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		missing := 0
		for _, tag := range tags {
			if _, ok := h.got[tag]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d results missing", missing)
		h.mu.Unlock()
		time.Sleep(time.Millisecond)
		h.mu.Lock()
	}
}

// run submits ops, requires the kernel to take all of them, waits for
// their results and returns them in the order of ops, none failed.
func (h *asyncHarness) run(t *testing.T, a *blockdev.AsyncIO, ops []blockdev.AsyncOp) []blockdev.AsyncResult {
	t.Helper()
	n, err := a.Submit(ops)
	require.NoError(t, err)
	require.Equal(t, len(ops), n)
	tags := make([]uint64, len(ops))
	for i, op := range ops {
		tags[i] = op.Tag
	}
	h.wait(t, tags...)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]blockdev.AsyncResult, len(ops))
	for i, tg := range tags {
		out[i] = h.got[tg]
		require.NoError(t, out[i].Err)
		require.Equal(t, len(ops[i].P), out[i].N)
	}
	return out
}

func openAsync(t *testing.T, size int64, depth int) (*blockdev.File, *blockdev.AsyncIO, *asyncHarness) {
	t.Helper()
	f := openFile(t, blockdevtest.TempFile(t, size), blockdev.Options{Direct: true})
	if !f.Direct() {
		t.Skip("temp dir file system has no O_DIRECT")
	}
	h := newAsyncHarness()
	a, err := blockdev.NewAsyncIO(f, depth, h.done)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return f, a, h
}

// TestAsyncIOWritesAndReads: a batch of random aligned writes lands where
// pwrite would have put it, and async reads return it.
func TestAsyncIOWritesAndReads(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	f, a, h := openAsync(t, size, 64)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	var tag uint64
	for round := 0; round < 20; round++ {
		// Distinct 4 KiB blocks within a batch: concurrent writes to one
		// block have no defined order.
		used := map[int64]bool{}
		var ops []blockdev.AsyncOp
		for len(ops) < 32 {
			blk := rng.Int64N(size / 4096)
			n := int64(1 + rng.IntN(4))
			if blk+n > size/4096 {
				continue
			}
			clash := false
			for b := blk; b < blk+n; b++ {
				clash = clash || used[b]
			}
			if clash {
				continue
			}
			for b := blk; b < blk+n; b++ {
				used[b] = true
			}
			p := blockdev.AlignedBuffer(int(n * 4096))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			copy(model[blk*4096:], p)
			tag++
			require.True(t, a.Accepts(p, blk*4096))
			ops = append(ops, blockdev.AsyncOp{Tag: tag, Write: true, P: p, Off: blk * 4096})
		}
		h.run(t, a, ops)
	}
	// Whole device back through pread, then through async reads.
	back := blockdev.AlignedBuffer(size)
	_, err := f.ReadAt(back, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(model, back), "pread after async writes differs")
	var ops []blockdev.AsyncOp
	for off := int64(0); off < size; off += 1 << 20 {
		tag++
		ops = append(ops, blockdev.AsyncOp{Tag: tag, P: blockdev.AlignedBuffer(1 << 20), Off: off})
	}
	h.run(t, a, ops)
	for i, op := range ops {
		require.True(t, bytes.Equal(model[op.Off:op.Off+1<<20], op.P), "async read %d differs", i)
	}
}

// TestAsyncIOAccepts: only what O_DIRECT takes as is.
func TestAsyncIOAccepts(t *testing.T) {
	t.Parallel()
	f, a, _ := openAsync(t, 1<<20, 8)
	al := int(f.Alignment())
	buf := blockdev.AlignedBuffer(8192)
	require.True(t, a.Accepts(buf[:4096], 0))
	require.True(t, a.Accepts(buf[:4096], 1<<20-4096))
	require.False(t, a.Accepts(buf[:4096], 1<<20), "past the end")
	require.False(t, a.Accepts(buf[:8192], 1<<20-4096), "crosses the end")
	require.False(t, a.Accepts(buf[:0], 0), "empty")
	require.False(t, a.Accepts(buf[1:4097], 0), "misaligned buffer")
	if al > 1 {
		require.False(t, a.Accepts(buf[:al-1], 0), "misaligned length")
		require.False(t, a.Accepts(buf[:4096], int64(al/2)), "misaligned offset")
	}
}

// TestAsyncIOCloseWaitsForInflight: Close returns only after every
// submitted request was delivered; Submit then fails and changes nothing.
func TestAsyncIOCloseWaitsForInflight(t *testing.T) {
	t.Parallel()
	f, a, h := openAsync(t, 16<<20, 256)
	var ops []blockdev.AsyncOp
	for i := range 128 {
		p := blockdev.AlignedBuffer(64 << 10)
		p[0] = byte(i + 1)
		ops = append(ops, blockdev.AsyncOp{Tag: uint64(i), Write: true, P: p, Off: int64(i) * (64 << 10)})
	}
	n, err := a.Submit(ops)
	require.NoError(t, err)
	require.Equal(t, len(ops), n)
	require.NoError(t, a.Close())
	h.mu.Lock()
	require.Len(t, h.got, len(ops), "Close returned with results undelivered")
	h.mu.Unlock()
	n, err = a.Submit(ops[:1])
	require.ErrorIs(t, err, blockdev.ErrClosed)
	require.Zero(t, n)
	one := blockdev.AlignedBuffer(4096)
	_, err = f.ReadAt(one, 5*(64<<10))
	require.NoError(t, err)
	require.Equal(t, byte(6), one[0])
	// Close on an idle context (its reaper blocked in io_getevents with
	// nothing in flight) returns too.
	_, idle, _ := openAsync(t, 1<<20, 8)
	require.NoError(t, idle.Close())
}

// TestAsyncIOFull: more requests than the context holds are partly taken;
// the rest is the caller's, with EAGAIN.
func TestAsyncIOFull(t *testing.T) {
	t.Parallel()
	_, a, h := openAsync(t, 64<<20, 4)
	var ops []blockdev.AsyncOp
	for i := range 512 {
		ops = append(ops, blockdev.AsyncOp{Tag: uint64(i), Write: true, P: blockdev.AlignedBuffer(128 << 10), Off: int64(i) * (128 << 10)})
	}
	n, err := a.Submit(ops)
	if n == len(ops) {
		t.Skip("the kernel took every request at once (a fast device): nothing to check")
	}
	require.Error(t, err)
	tags := make([]uint64, n)
	for i := range tags {
		tags[i] = uint64(i)
	}
	h.wait(t, tags...)
}

func TestAsyncIONeedsDirect(t *testing.T) {
	t.Parallel()
	f := openFile(t, blockdevtest.TempFile(t, 1<<20), blockdev.Options{})
	_, err := blockdev.NewAsyncIO(f, 8, func([]blockdev.AsyncResult) bool { return false })
	require.ErrorIs(t, err, blockdev.ErrAsyncUnavailable)
}

// TestAsyncIOContextsComeAndGo: contexts set up and closed concurrently
// (resources attaching while others detach) each get exactly their own
// completions. An aio context id is an address the kernel reuses: a
// reaper still reading a destroyed id would steal a newer context's
// events, and both Closes would hang.
func TestAsyncIOContextsComeAndGo(t *testing.T) {
	t.Parallel()
	f := openFile(t, blockdevtest.TempFile(t, 4<<20), blockdev.Options{Direct: true})
	if !f.Direct() {
		t.Skip("temp dir file system has no O_DIRECT")
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				h := newAsyncHarness()
				a, err := blockdev.NewAsyncIO(f, 4+i%3, h.done)
				if err != nil {
					t.Error(err)
					return
				}
				var ops []blockdev.AsyncOp
				// Every third context is closed at once, before its
				// reaper may even have started.
				for k := range (1 + i%3) * min(i%3, 1) {
					ops = append(ops, blockdev.AsyncOp{Tag: uint64(g<<16 | i<<4 | k), P: blockdev.AlignedBuffer(4096), Off: int64(g*3+k) * 4096})
				}
				if i%2 == 0 && len(ops) > 0 {
					h.run(t, a, ops)
				} else if _, err := a.Submit(ops); err != nil {
					t.Error(err)
				}
				done := make(chan struct{})
				go func() { a.Close(); close(done) }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Error("Close hung")
					return
				}
				h.mu.Lock()
				for tag := range h.got {
					if tag>>16 != uint64(g) || (tag>>4)&0xfff != uint64(i) {
						t.Errorf("context %d/%d got another context's completion %#x", g, i, tag)
					}
				}
				if len(h.got) != len(ops) {
					t.Errorf("context %d/%d: %d of %d completions", g, i, len(h.got), len(ops))
				}
				h.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestAsyncIOFlush: a flush goes through native AIO (this kernel has AIO
// fsync), alone or in one batch behind writes, and reports no bytes and
// no error; the writes are where they belong afterwards.
func TestAsyncIOFlush(t *testing.T) {
	f, a, h := openAsync(t, 1<<20, 16)
	require.True(t, a.AcceptsFlush())
	p := blockdev.AlignedBuffer(4096)
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	ops := []blockdev.AsyncOp{
		{Tag: 1, Write: true, P: p, Off: 8192},
		{Tag: 2, Flush: true},
	}
	n, err := a.Submit(ops)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	h.wait(t, 1, 2)
	n, err = a.Submit([]blockdev.AsyncOp{{Tag: 3, Flush: true}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	h.wait(t, 3)
	h.mu.Lock()
	for _, tag := range []uint64{2, 3} {
		require.NoError(t, h.got[tag].Err, "flush %d", tag)
		require.Zero(t, h.got[tag].N, "flush %d", tag)
	}
	require.Equal(t, 4096, h.got[1].N)
	h.mu.Unlock()
	require.True(t, a.AcceptsFlush())
	got := blockdev.AlignedBuffer(4096)
	_, err = f.ReadAt(got, 8192)
	require.NoError(t, err)
	require.True(t, bytes.Equal(p, got))

	require.NoError(t, a.Close())
	_, err = a.Submit([]blockdev.AsyncOp{{Tag: 4, Flush: true}})
	require.ErrorIs(t, err, blockdev.ErrClosed)
}

// TestAsyncIOFUA: a FUA write (RWF_DSYNC) goes through native AIO on this
// kernel, in a batch with plain writes, and lands.
func TestAsyncIOFUA(t *testing.T) {
	f, a, h := openAsync(t, 1<<20, 16)
	require.True(t, a.AcceptsFUA())
	p1, p2 := blockdev.AlignedBuffer(4096), blockdev.AlignedBuffer(8192)
	for i := range p1 {
		p1[i] = byte(i*3 + 5)
	}
	for i := range p2 {
		p2[i] = byte(i*11 + 2)
	}
	h.run(t, a, []blockdev.AsyncOp{
		{Tag: 1, Write: true, FUA: true, P: p1, Off: 4096},
		{Tag: 2, Write: true, P: p2, Off: 16384},
	})
	require.True(t, a.AcceptsFUA())
	for _, w := range []struct {
		p   []byte
		off int64
	}{{p1, 4096}, {p2, 16384}} {
		got := blockdev.AlignedBuffer(len(w.p))
		_, err := f.ReadAt(got, w.off)
		require.NoError(t, err)
		require.True(t, bytes.Equal(w.p, got), "at %d", w.off)
	}
}
