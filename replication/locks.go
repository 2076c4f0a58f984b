package replication

// Range locks keep resync and application/peer writes to the same blocks
// from being in flight at once (DRBD does this with its resync extents and
// interval trees). Locks are granted in FIFO order per conflict: a lock
// waits for every granted lock it conflicts with and for every earlier
// waiting one, except that
//
// RESYNC DOES NOT QUEUE BEHIND WAITING WRITES: a resync lock waits only
// for the writes in flight, not for writes still waiting for a lock. The
// resync reads or writes what is on the disk now; a waiting write comes
// after it on this disk, and is mirrored to the peer after the resync
// reply (which is sent before its lock goes). Queued behind waiting
// writes, the resync of the SyncSource could wait for a write that waits
// for a peer write held back until the SyncTarget answers a conflict,
// which itself waits for this resync (two Primaries, a write straddling
// the resync's blocks: CONFLICTING WRITES).

type lockKind uint8

const (
	lockWrite  lockKind = 1 + iota // application write (Primary) or peer write (Secondary)
	lockResync                     // resync request (target) or resync read (source)
)

type rangeLock struct {
	first, last uint64 // blocks, inclusive
	kind        lockKind
	granted     bool
	fn          func()
}

// conflicts: any two overlapping locks, except two resync locks (the
// resync never overlaps itself). Overlapping writes are applied in the
// order they were submitted: issued in parallel, each disk could apply
// them in a different order and the replicas would differ (DRBD waits
// for the earlier write as well).
func conflicts(a, b *rangeLock) bool {
	if a.last < b.first || b.last < a.first {
		return false
	}
	return a.kind == lockWrite || b.kind == lockWrite
}

// lockRange takes a lock on the blocks of [off, off+length). When it is
// granted at once, fn (if not nil) runs before lockRange returns;
// otherwise fn runs when the lock is granted.
func (n *Node) lockRange(off, length int64, kind lockKind, fn func()) *rangeLock {
	f, l := blockRange(off, length)
	lk := &rangeLock{first: f, last: l, kind: kind, fn: fn}
	n.locks = append(n.locks, lk)
	if n.canGrant(len(n.locks)-1, lk) {
		lk.granted = true
		if fn != nil {
			fn()
		}
	}
	return lk
}

// canGrant reports whether the lock at index i of n.locks may be granted
// now (see the rules above).
func (n *Node) canGrant(i int, lk *rangeLock) bool {
	for j, o := range n.locks {
		if j == i || !conflicts(o, lk) {
			continue
		}
		if o.granted {
			return false
		}
		if j < i && !(lk.kind == lockResync && o.kind == lockWrite) {
			return false
		}
	}
	return true
}

// unlockRange releases a lock and grants the waiters it was blocking.
func (n *Node) unlockRange(lk *rangeLock) {
	for i, o := range n.locks {
		if o == lk {
			n.locks = append(n.locks[:i], n.locks[i+1:]...)
			break
		}
	}
	var grant []*rangeLock
	for i, w := range n.locks {
		if !w.granted && n.canGrant(i, w) {
			w.granted = true
			grant = append(grant, w)
		}
	}
	for _, w := range grant {
		if w.fn != nil {
			w.fn()
		}
	}
}

// alBusy reports whether an application write holds an activity-log
// extent of the range. Such a write may not be on the peer's disk yet
// (the reference goes once its epoch was acked and its local write is
// done), so a SyncTarget must not fetch these blocks now: the peer's copy
// could be older than ours, and writing it would undo the write. DRBD's
// drbd_try_rs_begin_io leaves extents in use to a later pass the same way.
func (n *Node) alBusy(off, length int64) bool {
	if n.ldev == nil || n.ldev.al == nil || length <= 0 {
		return false
	}
	first, last := extentRange(off, length)
	for e := first; e <= last; e++ {
		if n.ldev.al.Refs(uint32(e)) > 0 {
			return true
		}
	}
	return false
}

// rangeBusy reports whether a write lock (granted or waiting) overlaps
// the range.
func (n *Node) rangeBusy(off, length int64) bool {
	f, l := blockRange(off, length)
	for _, o := range n.locks {
		if o.kind == lockWrite && !(o.last < f || l < o.first) {
			return true
		}
	}
	return false
}
