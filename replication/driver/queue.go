package driver

import "sync"

// queue is an unbounded FIFO from the event loop to worker goroutines.
//
// NB: the loop must never block on a worker: workers block on the loop
// (they post completions to its inbox), so a bounded queue in the other
// direction could deadlock both. What bounds the queue is the core: it
// emits work only for requests it accepted, and those are bounded by the
// NBD server's in-flight limits and max-buffers.
//
// A queue is safe for concurrent use.
type queue[T any] struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []T
	closed bool
}

func newQueue[T any]() *queue[T] {
	q := &queue[T]{}
	q.cond.L = &q.mu
	return q
}

// push appends v; it reports false (and drops v) after close.
func (q *queue[T]) push(v T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append(q.items, v)
	q.cond.Signal()
	return true
}

// pushAll appends vs in order with one lock and one wake-up; it reports
// false (and drops them) after close.
func (q *queue[T]) pushAll(vs []T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append(q.items, vs...)
	q.cond.Signal()
	return true
}

// pop blocks for the next item; ok is false once the queue is closed and
// empty.
func (q *queue[T]) pop() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return v, false
	}
	v = q.items[0]
	var zero T
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true
}

// popAll blocks until there is at least one item and takes all of them
// (appended to buf); ok is false once the queue is closed and empty.
func (q *queue[T]) popAll(buf []T) ([]T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return buf, false
	}
	buf = append(buf, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	return buf, true
}

// close wakes every consumer; items already queued are still popped.
func (q *queue[T]) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}
