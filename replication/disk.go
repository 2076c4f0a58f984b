package replication

import (
	"errors"
	"fmt"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
)

// ldev is the attached backing device (DRBD's drbd_backing_dev).
type ldev struct {
	maxSectors  uint64 // usable data sectors of the backing device
	userSectors uint64 // disk option "size" (0 = all)
	sizeSectors uint64 // size exported and replicated (DRBD's la_size_sect)

	uuids          genUUIDs
	flags          uint32
	crashedPrimary bool
	wasIOError     bool
	detaching      bool // admin or error detach in progress

	bm     *bitmap.Bitmap
	al     *metadata.ActivityLog
	layout metadata.Layout
	sb     metadata.Superblock // template: layout fields as read

	// Superblock writes are serialised: one in flight, later requests
	// coalesce into the next write.
	sbInFlight bool
	sbAgain    bool
	sbWaiters  []func(error)
	sbNext     []func(error)
	clean      bool // next superblock write uses the clean magic

	// Activity log: one sealed transaction in flight at a time; writes
	// wait for the generation that makes their extents hot.
	alInFlight bool
	alWaiting  []*request // waiting for their generation to commit
	alStarved  []*request // Begin said Wait: retry after Complete/Committed

	// Local operations in flight (for detach).
	inFlight int

	detachDone []func(error) // admin detach waiting for the drain
	finishing  bool          // the final bitmap/superblock writes started
}

// AttachParams is a loaded backing device handed to Attach.
type AttachParams struct {
	// MaxSectors is the usable data size of the backing device (sectors
	// in front of the metadata, or the whole device with external md).
	MaxSectors uint64
	// UserSectors is the disk option "size" (0 = all).
	UserSectors uint64
	// Super is the superblock as read; Layout where the metadata lives.
	Super  metadata.Superblock
	Layout metadata.Layout
	// Bitmap is the on-disk bitmap with the activity log already applied
	// (what apply-al does after a crash); AL a fresh activity log whose
	// next transaction number follows the ring's newest.
	Bitmap *bitmap.Bitmap
	AL     *metadata.ActivityLog
}

// Attach takes a loaded backing device into use (drbdadm attach). The disk
// state follows from the metadata flags as in DRBD: Consistent and
// was-UpToDate give UpToDate (with fencing dont-care) or Consistent,
// Consistent alone gives Outdated, otherwise Inconsistent.
func (n *Node) Attach(p AttachParams) error {
	if n.ldev != nil {
		return ErrAlreadyAttached
	}
	if n.st.Conn >= WFReportParams {
		return errors.New("replication: attach while connected is not supported; disconnect first")
	}
	if p.Bitmap == nil || p.AL == nil {
		panic("replication: Attach needs a bitmap and an activity log")
	}
	size := p.MaxSectors
	if p.UserSectors != 0 && p.UserSectors < size {
		size = p.UserSectors
	}
	if la := p.Super.LaSizeSect; la != 0 {
		if la > size {
			if uint32(p.Super.Flags)&MDFConsistent != 0 {
				return fmt.Errorf("replication: the backing device is smaller (%d sectors) than the last agreed size (%d sectors)", size, la)
			}
		} else {
			size = la
		}
	}
	if blocks := (size + sectorsPerBlock - 1) / sectorsPerBlock; p.Bitmap.Len() < blocks {
		return fmt.Errorf("replication: bitmap has %d bits, device needs %d", p.Bitmap.Len(), blocks)
	}
	u := p.Super.UUIDs
	l := &ldev{
		maxSectors: p.MaxSectors, userSectors: p.UserSectors, sizeSectors: size,
		uuids: genUUIDs{u.Current, u.Bitmap, u.History[0], u.History[1]}, flags: uint32(p.Super.Flags),
		bm: p.Bitmap, al: p.AL, layout: p.Layout, sb: p.Super,
	}
	l.fitBitmap()
	l.crashedPrimary = l.flags&MDFCrashedPrimary != 0
	if l.flags&MDFPrimaryInd != 0 && n.st.Role != RolePrimary {
		l.crashedPrimary = true
	}
	n.ldev = l
	if l.flags&MDFFullSync != 0 || (l.crashedPrimary && l.flags&MDFALDisabled != 0) {
		n.logf(LevelInfo, "Assuming that all blocks are out of sync (aka FullSync)")
		l.bm.SetAll()
		l.writeAllBitmap(n, nil)
	}
	var disk DiskState
	switch {
	case l.flags&MDFConsistent != 0 && l.flags&MDFWasUpToDate != 0:
		disk = Consistent
	case l.flags&MDFConsistent != 0:
		disk = Outdated
	default:
		disk = Inconsistent
	}
	pdsk := n.st.PDsk
	if l.flags&MDFPeerOutDated != 0 {
		pdsk = Outdated
	}
	if disk == Consistent && (pdsk == Outdated || n.cfg.Fencing == FencingDontCare) {
		disk = UpToDate
	}
	if err := n.changeState(StateMask{Disk: true}, State{Disk: Attaching}, csHard); err != nil {
		n.ldev = nil
		return err
	}
	if err := n.changeState(StateMask{Disk: true, PDsk: true}, State{Disk: disk, PDsk: pdsk}, csHard); err != nil {
		n.ldev = nil
		return err
	}
	n.logf(LevelInfo, "attached: %d sectors, %d KiB marked out-of-sync", size, l.bm.Count()*4)
	n.writeSuperblock(nil)
	return nil
}

// Detach stops using the backing device (drbdadm detach). done is called
// when no local I/O is in flight any more and the superblock is clean; the
// driver may then close the device.
func (n *Node) Detach(done func(error)) {
	if n.ldev == nil {
		done(ErrIsDiskless)
		return
	}
	n.requestState(StateMask{Disk: true}, State{Disk: Failed}, func(err error) {
		if err != nil {
			done(err)
			return
		}
		n.ldev.detachDone = append(n.ldev.detachDone, done)
		n.maybeFinishDetach()
	})
}

// diskError handles a failed local data read, write or flush according
// to on-io-error. With pass_on the error goes to the caller and the disk
// stays attached, but it is no longer UpToDate as a whole: it drops to
// Inconsistent, so that its blocks are served only where the bitmap says
// they are in sync (the caller marks the failed ones), as DRBD's
// EP_PASS_ON does.
func (n *Node) diskError(what string, err error) {
	n.logf(LevelError, "local disk %s failed: %v", what, err)
	if n.ldev == nil || n.ldev.detaching {
		return
	}
	if n.cfg.OnIOError == IOErrorPassOn {
		if n.st.Disk > Inconsistent {
			n.logf(LevelError, "Local IO failed in %s.", what)
			_ = n.changeState(StateMask{Disk: true}, State{Disk: Inconsistent}, csHard)
		}
		return
	}
	n.detachOnError(what)
}

// metaError handles a failed metadata write (activity log, bitmap,
// superblock): the disk is detached whatever on-io-error says, as DRBD
// does for DRBD_META_IO_ERROR; a log or bitmap that is not on disk cannot
// protect the data after a crash.
func (n *Node) metaError(what string, err error) {
	n.logf(LevelError, "local disk %s failed: %v", what, err)
	if n.ldev == nil || n.ldev.detaching {
		return
	}
	n.detachOnError(what)
}

// detachOnError starts the detach after an I/O error.
func (n *Node) detachOnError(what string) {
	n.ldev.wasIOError = true
	n.logf(LevelError, "Local IO failed in %s. Detaching...", what)
	_ = n.changeState(StateMask{Disk: true}, State{Disk: Failed}, csHard)
}

// finishDetach is the first half of a detach: stop new local I/O.
func (n *Node) finishDetach() {
	if n.ldev == nil {
		return
	}
	n.ldev.detaching = true
	n.maybeFinishDetach()
}

// maybeFinishDetach completes the detach once local I/O has drained.
func (n *Node) maybeFinishDetach() {
	l := n.ldev
	if l == nil || !l.detaching || l.inFlight > 0 || l.sbInFlight || l.alInFlight {
		return
	}
	if l.finishing {
		return
	}
	l.finishing = true
	fail := func(err error) {
		waiters := l.detachDone
		l.detachDone = nil
		n.ldev = nil
		_ = n.changeState(StateMask{Disk: true}, State{Disk: Diskless}, csHard)
		for _, w := range waiters {
			w(err)
		}
	}
	if l.wasIOError {
		fail(nil)
		return
	}
	// Clean shutdown: data durable, then the bitmap, then the superblock
	// with the clean magic (no activity log to apply at the next attach).
	l.inFlight++
	n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
		l.inFlight--
		if err != nil {
			fail(err)
			return
		}
		l.writeDirtyBitmap(n, func(err error) {
			if err != nil {
				fail(err)
				return
			}
			l.clean = true
			n.writeSuperblock(func(err error) { fail(err) })
		})
	})
}

// sectorRange converts a byte range to inclusive bitmap blocks.
func blockRange(off, length int64) (first, last uint64) {
	return uint64(off) / BlockSize, uint64(off+length-1) / BlockSize
}

// extentRange converts a byte range to inclusive AL extents.
func extentRange(off, length int64) (first, last uint64) {
	return uint64(off) / ExtentSize, uint64(off+length-1) / ExtentSize
}

// setOutOfSync marks a byte range out of sync (DRBD's drbd_set_out_of_sync).
func (n *Node) setOutOfSync(off, length int64) {
	if n.ldev == nil || length <= 0 {
		return
	}
	f, l := blockRange(off, length)
	n.ldev.bm.SetRange(f, l+1)
}

// setInSync marks the blocks wholly inside a byte range in sync.
func (n *Node) setInSync(off, length int64) uint64 {
	if n.ldev == nil || length <= 0 {
		return 0
	}
	first := (uint64(off) + BlockSize - 1) / BlockSize
	end := uint64(off+length) / BlockSize
	if last := n.ldev.sizeSectors * 512; last > 0 && uint64(off+length) >= last {
		// The device's last block may be partial: a range reaching the
		// end covers it (DRBD's drbd_set_in_sync), or its bit would never
		// clear and the resync never end.
		end = (last + BlockSize - 1) / BlockSize
	}
	if end <= first {
		return 0
	}
	return n.ldev.bm.ClearRange(first, end)
}

// mdFlags computes the superblock flags from the state (DRBD's
// __drbd_set_state bookkeeping).
func (n *Node) mdFlags() uint32 {
	l := n.ldev
	f := l.flags &^ (MDFConsistent | MDFPrimaryInd | MDFConnectedInd | MDFWasUpToDate | MDFPeerOutDated | MDFCrashedPrimary | MDFALClean)
	s := n.st
	if l.crashedPrimary {
		f |= MDFCrashedPrimary
	}
	if s.Role == RolePrimary || (s.PDsk < Inconsistent && s.Peer == RolePrimary) {
		f |= MDFPrimaryInd
	}
	if s.Conn > WFReportParams {
		f |= MDFConnectedInd
	}
	if s.Disk > Inconsistent {
		f |= MDFConsistent
	}
	if s.Disk > Outdated {
		f |= MDFWasUpToDate
	}
	if s.PDsk <= Outdated && s.PDsk >= Inconsistent {
		f |= MDFPeerOutDated
	}
	return f
}

// updateMDFlags writes the superblock when the flags changed.
func (n *Node) updateMDFlags() {
	if n.ldev == nil || n.st.Disk <= Failed {
		return
	}
	if f := n.mdFlags(); f != n.ldev.flags {
		n.ldev.flags = f
		n.writeSuperblock(nil)
	}
}

// writeSuperblock persists UUIDs, flags and size; done (may be nil) runs
// when that state is durable. Writes are serialised and coalesced.
func (n *Node) writeSuperblock(done func(error)) {
	l := n.ldev
	if l == nil {
		if done != nil {
			done(ErrNotAttached)
		}
		return
	}
	if l.sbInFlight {
		l.sbAgain = true
		if done != nil {
			l.sbNext = append(l.sbNext, done)
		}
		return
	}
	if done != nil {
		l.sbWaiters = append(l.sbWaiters, done)
	}
	l.sbInFlight = true
	off, block := l.encodeSuperblock()
	n.writeMeta(off, block, "superblock", func(err error) {
		l.sbInFlight = false
		waiters := l.sbWaiters
		l.sbWaiters = nil
		if err != nil {
			n.metaError("meta-data write", err)
		}
		for _, w := range waiters {
			w(err)
		}
		if l.sbAgain {
			l.sbAgain = false
			next := l.sbNext
			l.sbNext = nil
			l.sbWaiters = next
			l.sbInFlight = false
			n.writeSuperblockNow()
		}
		n.maybeFinishDetach()
	})
}

func (n *Node) writeSuperblockNow() {
	l := n.ldev
	if l == nil {
		return
	}
	waiters := l.sbWaiters
	l.sbWaiters = nil
	l.sbInFlight = false
	if len(waiters) == 0 {
		n.writeSuperblock(nil)
		return
	}
	for i, w := range waiters {
		if i == 0 {
			n.writeSuperblock(w)
		} else {
			l.sbNext = append(l.sbNext, w)
			l.sbAgain = true
		}
	}
}

// encodeSuperblock is the superblock with the current UUIDs, flags and
// size: "unclean" while attached (DRBD 8.4's 84_UNCLEAN magic, so a crash
// makes the next attach apply the activity log), clean after detach.
func (l *ldev) encodeSuperblock() (int64, []byte) {
	sb := l.sb
	sb.LaSizeSect = l.sizeSectors
	sb.UUIDs = metadata.GenerationUUIDs{Current: l.uuids[uiCurrent], Bitmap: l.uuids[uiBitmap], History: [2]uint64{l.uuids[uiHistory0], l.uuids[uiHistory1]}}
	sb.Flags = metadata.Flags(l.flags)
	sb.Magic = metadata.MagicV08Unclean
	if l.clean {
		sb.Magic = metadata.MagicV08
		sb.Flags |= metadata.Flags(MDFALClean)
	}
	block := make([]byte, metadata.SuperblockSize)
	sb.Encode(block)
	return l.layout.MDOffset, block
}

// encodePage is on-disk bitmap page p; the page is clean afterwards.
func (l *ldev) encodePage(p int) (int64, []byte) {
	block := make([]byte, bitmap.PageBytes)
	l.bm.EncodePage(p, block)
	l.bm.ClearPageDirty(p)
	return l.layout.BMByteOffset() + int64(p)*bitmap.PageBytes, block
}

// writeDirtyBitmap writes every changed bitmap page; done (may be nil)
// runs when all are durable.
func (l *ldev) writeDirtyBitmap(n *Node, done func(error)) {
	var pages []int
	for p := range l.bm.DirtyPages() {
		pages = append(pages, p)
	}
	l.writePages(n, pages, done)
}

// writeAllBitmap writes the whole bitmap.
func (l *ldev) writeAllBitmap(n *Node, done func(error)) {
	pages := make([]int, l.bm.Pages())
	for i := range pages {
		pages[i] = i
	}
	l.writePages(n, pages, done)
}

// writePages writes bitmap pages. DATA BEFORE CLEARED BITS: a page may
// carry bits cleared because a write (resync or application) completed;
// that write may still sit in the disk's volatile cache, so the data disk
// is flushed first. Otherwise a power cut could keep the cleared bit and
// lose the data it vouches for (with external metadata, or any cache that
// reorders).
func (l *ldev) writePages(n *Node, pages []int, done func(error)) {
	if len(pages) == 0 {
		if done != nil {
			done(nil)
		}
		return
	}
	if l.detaching && l.wasIOError {
		l.writePagesNow(n, pages, done)
		return
	}
	l.inFlight++
	n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
		l.inFlight--
		if err != nil {
			n.diskError("flush", err)
		}
		l.writePagesNow(n, pages, done)
	})
}

func (l *ldev) writePagesNow(n *Node, pages []int, done func(error)) {
	left := len(pages)
	var firstErr error
	for _, p := range pages {
		off, block := l.encodePage(p)
		l.inFlight++
		n.writeMeta(off, block, "bitmap", func(err error) {
			l.inFlight--
			if err != nil && firstErr == nil {
				firstErr = err
				n.metaError("bitmap write", err)
			}
			left--
			if left == 0 {
				if done != nil {
					done(firstErr)
				}
				n.maybeFinishDetach()
			}
		})
	}
}

// newCurrentUUID starts a new data generation (DRBD's
// drbd_uuid_new_current): bitmap := current, current := random.
func (n *Node) newCurrentUUID() {
	l := n.ldev
	if l.uuids[uiBitmap] != 0 {
		n.logf(LevelWarn, "bm UUID was already set: %X", l.uuids[uiBitmap])
	}
	l.uuids[uiBitmap] = l.uuids[uiCurrent]
	n.setCurrentUUID(n.rand())
	n.logf(LevelInfo, "new current UUID %s", l.uuids)
	n.writeSuperblock(nil)
}

// setCurrentUUID sets the current UUID with the "was Primary" bit from
// the role (DRBD's __drbd_uuid_set).
func (n *Node) setCurrentUUID(v uint64) {
	if n.st.Role == RolePrimary {
		v |= 1
	} else {
		v &^= 1
	}
	n.ldev.uuids[uiCurrent] = v
}

// setBitmapUUID is DRBD's drbd_uuid_set_bm: 0 moves the bitmap UUID to
// history.
func (n *Node) setBitmapUUID(v uint64) {
	l := n.ldev
	if l.uuids[uiBitmap] == 0 && v == 0 {
		return
	}
	if v == 0 {
		l.uuids[uiHistory1] = l.uuids[uiHistory0]
		l.uuids[uiHistory0] = l.uuids[uiBitmap]
		l.uuids[uiBitmap] = 0
		return
	}
	l.uuids[uiBitmap] = v &^ 1
}

// UUIDs returns the generation UUIDs of the attached disk (current,
// bitmap, history 0, history 1), or false when Diskless.
func (n *Node) UUIDs() ([4]uint64, bool) {
	if n.ldev == nil {
		return [4]uint64{}, false
	}
	return n.ldev.uuids, true
}

// Size returns the replicated size in bytes (0 when neither a disk nor a
// connected peer gives one).
func (n *Node) Size() int64 {
	if n.ldev != nil {
		return int64(n.ldev.sizeSectors) * 512
	}
	if n.peer != nil && n.peer.gotSizes {
		return int64(n.peer.peerCSize) * 512
	}
	return 0
}

// OutOfSync returns the number of out-of-sync bytes of the local bitmap.
func (n *Node) OutOfSync() int64 {
	if n.ldev == nil {
		return 0
	}
	return int64(n.ldev.bm.Count()) * BlockSize
}

// setSize changes the replicated size (sectors) and fits the bitmap to
// it.
func (l *ldev) setSize(s uint64) {
	l.sizeSectors = s
	l.fitBitmap()
}

// fitBitmap makes the bitmap exactly as long as the replicated size, as
// DRBD resizes its bitmap with the device: both peers then exchange the
// same number of bits, and bits past the end (a larger backing device, a
// size agreed down) neither count nor travel. Bit i keeps its place, so
// the on-disk pages stay what they were.
func (l *ldev) fitBitmap() {
	want := bitmap.BitsForSectors(l.sizeSectors)
	if l.bm.Len() == want {
		return
	}
	nb := bitmap.New(want)
	words := make([]uint64, nb.WordCount())
	c := l.bm.CopyWords(words, 0)
	if _, err := nb.MergeWords(0, words[:c]); err != nil {
		panic(fmt.Sprintf("replication: refit bitmap: %v", err))
	}
	nb.ClearDirty()
	l.bm = nb
}

// rangeInSync reports whether blocks first..last have no out-of-sync bit.
func (n *Node) rangeInSync(first, last uint64) bool {
	b, ok := n.ldev.bm.NextSet(first)
	return !ok || b > last
}
