package metadata

import (
	"fmt"
	"slices"
)

// Decision is ActivityLog.Begin's answer for one write.
type Decision int

const (
	// Go: every extent of the write is hot and committed; issue the data
	// write now.
	Go Decision = 1 + iota
	// Commit: the write's extents are being made hot; it may go only after
	// the transaction of generation Begin.Gen is committed (see Seal).
	Commit
	// Wait: not enough slots can be freed now (every candidate is in use,
	// or the pending transaction is full). Nothing was reserved; retry
	// after a Complete or a Committed.
	Wait
)

func (d Decision) String() string {
	switch d {
	case Go:
		return "go"
	case Commit:
		return "commit"
	case Wait:
		return "wait"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Begin is the answer to ActivityLog.Begin (a plain value).
type Begin struct {
	Decision Decision
	// Gen is the transaction generation the write waits for (Commit).
	Gen uint64
}

// ALConfig configures an ActivityLog (a plain value).
type ALConfig struct {
	// Extents is al-extents: how many 4 MiB extents may be hot at once.
	// It must lie in ALExtentsMin..MaxALExtents(layout).
	Extents int
	// Layout locates the ring on the metadata device.
	Layout Layout
	// NextNumber is the first transaction number to write: one past the
	// newest in the ring (Replay.NextNumber), 0 after apply-al.
	NextNumber uint32
}

// MaxALExtents is the largest al-extents the ring of l can describe: each
// transaction repeats 919 slots of context and the ring minus the one
// being written must cover every slot (drbd_al_extents_max), capped at
// 65534 by the 16-bit slot numbers.
func MaxALExtents(l Layout) int {
	n := int(l.ALTransactions())
	if n > (ALExtentsMax+ALContextPerTransaction-1)/ALContextPerTransaction {
		return ALExtentsMax
	}
	return (n - 1) * ALContextPerTransaction
}

// ClampALExtents clamps a configured al-extents value the way the kernel
// does at attach (sanitize_disk_conf): into ALExtentsMin..MaxALExtents(l).
func ClampALExtents(n int, l Layout) int {
	return min(max(n, ALExtentsMin), MaxALExtents(l))
}

// slot states
const (
	slotFree     = iota // never used: holds LCFree
	slotLRU             // committed extent, no writes: may be evicted
	slotInUse           // committed extent with writes in flight
	slotChanging        // staged or sealed: becomes newExtent at commit
)

type alSlot struct {
	extent    uint32 // committed content (lc_number)
	newExtent uint32 // content after the pending change (lc_new_number)
	refs      int
	state     int
	gen       uint64 // for slotChanging: the generation bringing newExtent
	// LRU list links (slot indexes, -1 none); most recently used at head.
	prev, next int32
}

// ActivityLog is DRBD's activity log as a pure state machine: it tracks
// which 4 MiB extents are "hot" (may have writes in flight), with an LRU of
// al-extents slots and per-extent reference counts, and produces the 4 KiB
// transactions that record changes of the hot set. It does no I/O; the
// caller writes what it asks for, in the order below.
//
// The write path, and the ORDERING RULES the caller MUST keep:
//
//	b := al.Begin(first, last)          // extents of the write
//	switch b.Decision {
//	case Go:     issue the data write
//	case Wait:   queue the write; retry after Complete or Committed
//	case Commit: queue the write until generation b.Gen is committed
//	}
//	if tx := al.Seal(); tx != nil {     // at most one transaction in flight
//		1. WRITE OUT THE BITMAP PAGES tx.EvictedPages() AND FLUSH THEM,
//		   BEFORE the transaction: once tx is on disk, a crash no longer
//		   replays the evicted extents, so their out-of-sync bits must
//		   already be on disk.
//		2. WRITE tx.Data AT tx.Offset AND FLUSH (or FUA).
//		3. al.Committed(tx), THEN issue the queued data writes whose Gen
//		   is now committed: AL BEFORE DATA. A data write that reaches the
//		   disk before its extent's transaction is durable would be
//		   invisible to apply-al after a crash.
//	}
//	on completion: SET THE BLOCK'S OUT-OF-SYNC BIT (if the peer did not
//	get it) BEFORE al.Complete(first, last): after Complete the extent may
//	be evicted, and only bits already set get written out with it.
//
// If writing a transaction fails the log is unusable: the disk must be
// detached (DRBD's on-io-error), there is no undo.
//
// An ActivityLog is not safe for concurrent use; the replication core owns
// it.
type ActivityLog struct {
	layout     Layout
	nr         int
	slots      []alSlot
	byExtent   map[uint32]int32 // extent -> slot, for committed and pending contents
	free       []int32          // slotFree slots, popped from the end
	lruHead    int32
	lruTail    int32
	staged     []int32 // slots changing in the next transaction
	sealed     *SealedTransaction
	trNumber   uint32
	trCycle    int
	stagedGen  uint64 // generation of the staging transaction
	committed  uint64 // highest committed generation
	lruEntries int
}

// SealedTransaction is a transaction ready to be written. It is read-only
// once returned by Seal, and may be handed to an I/O goroutine while the
// owner of the ActivityLog goes on.
type SealedTransaction struct {
	Transaction
	// Data is the encoded 4 KiB block; Offset its byte offset on the
	// metadata device.
	Data   []byte
	Offset int64
	// Evicts lists the extents this transaction makes cold. Their bitmap
	// pages MUST be on disk BEFORE Data is written.
	Evicts []uint32
	// Gen is the generation that becomes committed with it.
	Gen   uint64
	slots []int32
}

// EvictedPages are the on-disk bitmap pages covering the evicted extents
// (one 4 KiB page holds 32 extents), sorted and distinct.
func (t *SealedTransaction) EvictedPages() []int {
	var pages []int
	for _, e := range t.Evicts {
		pages = append(pages, ExtentBitmapPage(e))
	}
	slices.Sort(pages)
	return slices.Compact(pages)
}

// ExtentBitmapPage is the bitmap page holding extent e's 1024 bits.
func ExtentBitmapPage(e uint32) int { return int(uint64(e) * BitsPerALExtent / (4096 * 8)) }

// NewActivityLog returns an empty activity log (no hot extents), as after
// attach: apply-al has folded the previous log into the bitmap.
func NewActivityLog(cfg ALConfig) (*ActivityLog, error) {
	if cfg.Extents < ALExtentsMin || cfg.Extents > ALExtentsMax {
		return nil, fmt.Errorf("metadata: al-extents %d outside %d..%d", cfg.Extents, ALExtentsMin, ALExtentsMax)
	}
	if max := MaxALExtents(cfg.Layout); cfg.Extents > max {
		return nil, fmt.Errorf("metadata: al-extents %d needs a larger activity log than %d x %d KiB (max %d)",
			cfg.Extents, cfg.Layout.ALTransactions(), 4, max)
	}
	al := &ActivityLog{
		layout:   cfg.Layout,
		nr:       cfg.Extents,
		slots:    make([]alSlot, cfg.Extents),
		byExtent: make(map[uint32]int32, cfg.Extents),
		lruHead:  -1,
		lruTail:  -1,
		trNumber: cfg.NextNumber,
	}
	// The kernel's free list hands out the highest slot first.
	al.free = make([]int32, cfg.Extents)
	for i := range al.slots {
		al.slots[i] = alSlot{extent: LCFree, newExtent: LCFree, prev: -1, next: -1}
		al.free[i] = int32(i)
	}
	al.stagedGen = 1
	return al, nil
}

// Extents is the configured number of slots (al-extents).
func (al *ActivityLog) Extents() int { return al.nr }

// NextNumber is the number the next transaction gets.
func (al *ActivityLog) NextNumber() uint32 { return al.trNumber }

// CommittedGen is the highest committed transaction generation.
func (al *ActivityLog) CommittedGen() uint64 { return al.committed }

// IsHot reports whether extent e is committed hot (writes may go).
func (al *ActivityLog) IsHot(e uint32) bool {
	s, ok := al.byExtent[e]
	if !ok {
		return false
	}
	sl := &al.slots[s]
	return sl.state == slotLRU || sl.state == slotInUse
}

// Refs is the number of writes holding extent e.
func (al *ActivityLog) Refs(e uint32) int {
	if s, ok := al.byExtent[e]; ok {
		return al.slots[s].refs
	}
	return 0
}

// HotExtents lists the committed hot extents, sorted.
func (al *ActivityLog) HotExtents() []uint32 {
	var out []uint32
	for i := range al.slots {
		if e := al.slots[i].extent; e != LCFree {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// ExtentRange returns the first and last AL extent a write of length bytes
// at byte offset off touches.
func ExtentRange(off, length int64) (first, last uint32) {
	first = uint32(off >> ALExtentShift)
	if length <= 0 {
		return first, first
	}
	return first, uint32((off + length - 1) >> ALExtentShift)
}

// Begin reserves extents first..last for one write. On Go and Commit the
// write holds a reference on each extent until Complete; on Wait nothing
// is held.
func (al *ActivityLog) Begin(first, last uint32) Begin {
	if last < first {
		panic(fmt.Sprintf("metadata: AL Begin(%d, %d): last before first", first, last))
	}
	if uint64(last-first)+1 > ALUpdatesPerTransaction {
		panic(fmt.Sprintf("metadata: AL Begin(%d, %d): a write may span at most %d extents", first, last, ALUpdatesPerTransaction))
	}
	// Victims may not be this write's own idle extents, which it is about
	// to use.
	need, ownIdle := 0, 0
	for e := first; ; e++ {
		if s, ok := al.byExtent[e]; !ok {
			need++
		} else if al.slots[s].state == slotLRU {
			ownIdle++
		}
		if e == last {
			break
		}
	}
	if need > 0 && (need > len(al.free)+al.lruEntries-ownIdle || len(al.staged)+need > ALUpdatesPerTransaction) {
		return Begin{Decision: Wait}
	}
	res := Begin{Decision: Go}
	// First take references on present extents (so none of them is picked
	// as a victim below), then stage the absent ones.
	for e := first; ; e++ {
		if s, ok := al.byExtent[e]; ok {
			sl := &al.slots[s]
			switch sl.state {
			case slotLRU:
				al.lruRemove(s)
				sl.state = slotInUse
			case slotChanging:
				res.Decision = Commit
				res.Gen = max(res.Gen, sl.gen)
			}
			sl.refs++
		}
		if e == last {
			break
		}
	}
	for e := first; ; e++ {
		if _, ok := al.byExtent[e]; !ok {
			s := al.victim()
			sl := &al.slots[s]
			if sl.extent != LCFree {
				delete(al.byExtent, sl.extent)
			}
			sl.newExtent = e
			sl.state = slotChanging
			sl.gen = al.stagedGen
			sl.refs = 1
			al.byExtent[e] = s
			al.staged = append(al.staged, s)
			res.Decision = Commit
			res.Gen = max(res.Gen, al.stagedGen)
		}
		if e == last {
			break
		}
	}
	return res
}

// victim picks the slot for a new extent: a never-used one first, else the
// least recently used idle one.
func (al *ActivityLog) victim() int32 {
	if n := len(al.free); n > 0 {
		s := al.free[n-1]
		al.free = al.free[:n-1]
		return s
	}
	s := al.lruTail
	if s < 0 {
		panic("metadata: AL victim with no free or idle slot")
	}
	al.lruRemove(s)
	return s
}

// Seal turns the staged changes into the next transaction, or returns nil
// when nothing is staged or a sealed transaction is not yet committed.
func (al *ActivityLog) Seal() *SealedTransaction {
	if al.sealed != nil || len(al.staged) == 0 {
		return nil
	}
	t := &SealedTransaction{
		Transaction: Transaction{
			Number:       al.trNumber,
			Type:         TransactionUpdate,
			ContextSize:  uint16(al.nr),
			ContextStart: uint16(al.trCycle),
		},
		Gen:   al.stagedGen,
		slots: al.staged,
	}
	for _, s := range al.staged {
		sl := &al.slots[s]
		t.Updates = append(t.Updates, SlotUpdate{Slot: uint16(s), Extent: sl.newExtent})
		if sl.extent != LCFree {
			t.Evicts = append(t.Evicts, sl.extent)
		}
	}
	// Context: the committed content of the next 919 slots, so that the
	// ring as a whole keeps describing every slot.
	n := min(ALContextPerTransaction, al.nr-al.trCycle)
	t.Context = make([]uint32, n)
	for i := range n {
		t.Context[i] = al.slots[al.trCycle+i].extent
	}
	al.trCycle += ALContextPerTransaction
	if al.trCycle >= al.nr {
		al.trCycle = 0
	}
	t.Data = make([]byte, ALTransactionSize)
	if err := t.Encode(t.Data); err != nil {
		panic(err)
	}
	t.Offset = al.layout.ALTransactionOffset(t.Number)
	al.staged = nil
	al.stagedGen++
	al.sealed = t
	return t
}

// Sealed is the transaction in flight, if any.
func (al *ActivityLog) Sealed() *SealedTransaction { return al.sealed }

// Committed records that t is durable on disk: its extents become hot,
// and writes waiting for generation t.Gen may go.
func (al *ActivityLog) Committed(t *SealedTransaction) {
	if t == nil || t != al.sealed {
		panic("metadata: AL Committed for a transaction that is not the sealed one")
	}
	for _, s := range t.slots {
		sl := &al.slots[s]
		sl.extent = sl.newExtent
		if sl.refs > 0 {
			sl.state = slotInUse
		} else {
			sl.state = slotLRU
			al.lruPush(s)
		}
	}
	al.trNumber++
	al.committed = t.Gen
	al.sealed = nil
}

// Complete releases a write's references on extents first..last. Extents
// whose count drops to zero become candidates for eviction.
func (al *ActivityLog) Complete(first, last uint32) {
	for e := first; ; e++ {
		s, ok := al.byExtent[e]
		if !ok || al.slots[s].refs == 0 {
			panic(fmt.Sprintf("metadata: AL Complete on inactive extent %d", e))
		}
		sl := &al.slots[s]
		sl.refs--
		if sl.refs == 0 && sl.state == slotInUse {
			sl.state = slotLRU
			al.lruPush(s)
		}
		if e == last {
			break
		}
	}
}

func (al *ActivityLog) lruPush(s int32) {
	sl := &al.slots[s]
	sl.prev, sl.next = -1, al.lruHead
	if al.lruHead >= 0 {
		al.slots[al.lruHead].prev = s
	}
	al.lruHead = s
	if al.lruTail < 0 {
		al.lruTail = s
	}
	al.lruEntries++
}

func (al *ActivityLog) lruRemove(s int32) {
	sl := &al.slots[s]
	if sl.prev >= 0 {
		al.slots[sl.prev].next = sl.next
	} else {
		al.lruHead = sl.next
	}
	if sl.next >= 0 {
		al.slots[sl.next].prev = sl.prev
	} else {
		al.lruTail = sl.prev
	}
	sl.prev, sl.next = -1, -1
	al.lruEntries--
}
