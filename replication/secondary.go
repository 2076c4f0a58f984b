package replication

import (
	"fmt"
	"github.com/gdrbd/gdrbd/protocol"
)

// The receiving side of replication: the peer's writes, applied epoch by
// epoch.
//
// EPOCHS IN ORDER: writes of epoch n+1 are not issued to the disk before
// every write of epoch n completed and, with disk-flushes, a flush issued
// after the last of them completed has completed; only then is
// P_BARRIER_ACK n sent. So after any crash the disk holds a prefix of
// whole epochs plus part of the one being applied.
//
// EARLY FLUSH: the flush may start before P_BARRIER n arrives. When every
// write received for the active epoch has completed, the disk is flushed
// at once: the barrier is typically a round trip away (our acks to the
// Primary, its completion closing the epoch, the barrier back), and that
// round trip and the flush now overlap instead of adding up. The barrier
// only finds out whether the flush covered the whole epoch: writes of
// epoch n that arrived after it need another flush, as before (at most
// one early flush per epoch, so a slow trickle of writes does not turn
// into a flush per write). Kernel DRBD 8.4 flushes at the barrier
// (receive_Barrier); the wire is the same, only the flush starts earlier.

// peerWrite is a write received from the peer (DRBD's peer request).
type peerWrite struct {
	op      Op
	sector  uint64
	size    int64
	blockID uint64
	seq     uint32
	flags   uint32
	data    []byte
	issued  bool
	done    bool

	// Two primaries (see CONFLICTING WRITES).
	seqOK          bool         // every packet the peer numbered before it was seen
	lk             *rangeLock   // its range lock, once issued
	resume         func()       // re-runs the conflict check while it waits
	answer         protocol.Cmd // P_SUPERSEDED / P_RETRY_WRITE instead of applying it
	restart        bool         // issue our postponed writes again after it
	conflictLogged bool
}

// pages is the write's memory in 4 KiB pages (trims carry no data: one
// page for the request itself).
func (w *peerWrite) pages() int {
	if w.op != OpWrite {
		return 1
	}
	return int((w.size + BlockSize - 1) / BlockSize)
}

// rEpoch is an epoch of received writes.
type rEpoch struct {
	writes   []*peerWrite
	barrier  bool   // its P_BARRIER arrived
	nr       uint32 // the barrier number, once arrived
	done     int    // writes completed
	flushing bool   // a flush for it is in flight
	early    bool   // its early flush was issued (at most one)
	covered  int    // writes durable: completed before a completed flush was issued
}

// receiver holds the epochs being applied; epochs[0] is the active one.
type receiver struct {
	epochs  []*rEpoch
	backlog int // 4 KiB pages of peer writes received and not yet completed
	// waiting: the peer's read requests held back until the writes it
	// sent before them to the same blocks are on the disk (PEER READS
	// AFTER PEER WRITES).
	waiting []waitingRead
	// gate: peer writes, in the order received, not yet cleared by the
	// sequence gate (since gateSince); conflictWait: peer writes holding
	// their range lock until a conflict is resolved (CONFLICTING WRITES).
	gate         []*peerWrite
	gateSince    int64
	conflictWait []*peerWrite
}

// waitingRead is a peer read request held back by earlier peer writes.
type waitingRead struct {
	off, size int64
	start     func()
}

// PEER READS AFTER PEER WRITES: a read request (P_DATA_REQUEST of a
// diskless or SyncTarget Primary, or P_RS_DATA_REQUEST) is served only
// after every write the peer sent before it to the same blocks is on our
// disk. A write may be held back for a later epoch, or wait for a range
// lock, while the read would go to the disk at once and return the data
// from before a write the peer already completed (protocol A and B
// complete writes before the Secondary has them on disk). DRBD's receiver
// gets the same order by submitting writes as it reads them and blocking
// at each barrier.

// peerWritesPending reports whether a write received from the peer and
// not completed overlaps [off, off+size).
func (n *Node) peerWritesPending(off, size int64) bool {
	for _, e := range n.peer.recv.epochs {
		if e.done == len(e.writes) {
			continue
		}
		for _, w := range e.writes {
			if !w.done && off < int64(w.sector)*512+w.size && int64(w.sector)*512 < off+size {
				return true
			}
		}
	}
	return false
}

// afterPeerWrites runs start now, or once the peer writes received so far
// that overlap [off, off+size) are done.
func (n *Node) afterPeerWrites(off, size int64, start func()) {
	if !n.peerWritesPending(off, size) {
		start()
		return
	}
	n.peer.recv.waiting = append(n.peer.recv.waiting, waitingRead{off: off, size: size, start: start})
}

// startWaitingReads starts the held-back reads no write holds back any
// more (after a peer write completed).
func (n *Node) startWaitingReads() {
	r := &n.peer.recv
	if len(r.waiting) == 0 {
		return
	}
	ws := r.waiting
	r.waiting = nil
	var keep []waitingRead
	for _, w := range ws {
		if n.peerWritesPending(w.off, w.size) {
			keep = append(keep, w)
			continue
		}
		w.start()
	}
	r.waiting = append(keep, r.waiting...)
}

func (r *receiver) init() { r.epochs = []*rEpoch{{}} }

// receiving returns the epoch new writes belong to.
func (r *receiver) receiving() *rEpoch {
	last := r.epochs[len(r.epochs)-1]
	if last.barrier {
		last = &rEpoch{}
		r.epochs = append(r.epochs, last)
	}
	return last
}

// RecvBacklog is how many 4 KiB pages of peer writes were received and
// are not yet on disk. The driver stops reading the data socket while it
// is at or above Config.MaxBuffers: that bounds memory (max-buffers counts
// pages, as DRBD's drbd_alloc_pages does: 2048 is 8 MiB whatever the
// write size) and pushes back on the Primary through TCP.
func (n *Node) RecvBacklog() int {
	if n.peer == nil {
		return 0
	}
	return n.peer.recv.backlog
}

func (n *Node) checkPeerRange(sector uint64, size int64) error {
	if size <= 0 || size%512 != 0 {
		return n.protocolError("peer range of %d bytes", size)
	}
	// Without overflow: a sector near 2^64 must not wrap around to a
	// small offset.
	if dev := n.Size(); size > dev || sector > uint64(dev-size)/512 {
		return n.protocolError("peer range beyond end of device: sector %d + %d bytes > %d", sector, size, dev)
	}
	return nil
}

// receivePeerWrite handles P_DATA from the Primary.
func (n *Node) receivePeerWrite(p *protocol.Data) error {
	if n.st.Conn < Connected && n.st.Conn != WFReportParams {
		return n.protocolError("P_DATA in state %s", n.st.Conn)
	}
	if err := n.checkPeerRange(p.Sector, int64(len(p.Payload))); err != nil {
		return err
	}
	n.stats.nr += uint64(len(p.Payload))
	w := &peerWrite{op: OpWrite, sector: p.Sector, size: int64(len(p.Payload)), blockID: p.BlockID, seq: p.SeqNum, flags: p.Flags, data: p.Payload}
	n.acceptPeerWrite(w)
	return nil
}

// receivePeerTrim handles P_TRIM and P_ZEROES.
func (n *Node) receivePeerTrim(p *protocol.Trim) error {
	if n.st.Conn < Connected && n.st.Conn != WFReportParams {
		return n.protocolError("%v in state %s", p.Cmd, n.st.Conn)
	}
	if err := n.checkPeerRange(p.Sector, int64(p.Size)); err != nil {
		return err
	}
	op := OpTrim
	if p.Cmd == protocol.CmdZeroes || p.Flags&protocol.DPZeroes != 0 {
		op = OpWriteZeroes
	}
	w := &peerWrite{op: op, sector: p.Sector, size: int64(p.Size), blockID: p.BlockID, seq: p.SeqNum, flags: p.Flags}
	n.acceptPeerWrite(w)
	return nil
}

func (n *Node) acceptPeerWrite(w *peerWrite) {
	pr := n.peer
	e := pr.recv.receiving()
	e.writes = append(e.writes, w)
	pr.recv.backlog += w.pages()
	n.gatePeerWrite(w)
	if e == pr.recv.epochs[0] {
		n.issuePeerWrite(e, w)
	}
}

// issuePeerWrite submits one write of the active epoch to the disk.
//
// Protocol B's P_RECV_ACK goes out here, not on receipt: a write held
// back for a later epoch could still be dropped by a disconnect, so only
// a write that is being applied is acknowledged (DRBD does not even read
// the next epoch from the socket before the current one is done).
func (n *Node) issuePeerWrite(e *rEpoch, w *peerWrite) {
	w.issued = true
	if w.flags&protocol.DPSendReceiveAck != 0 {
		n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdRecvAck, Sector: w.sector, BlockID: w.blockID, BlockSize: uint32(w.size)})
	}
	pr := n.peer
	if n.ldev == nil || n.ldev.detaching || n.st.Disk < Inconsistent {
		// Not applied here: our writes the resolver told to retry go
		// again after this answer (they would otherwise wait for a peer
		// write that we will never apply).
		w.restart = n.cfg.AllowTwoPrimaries
		n.peerWriteDone(pr, e, w, ErrNotAttached)
		return
	}
	l := n.ldev
	off := int64(w.sector) * 512
	n.ioSectors += uint64(w.size / 512)
	// The range lock comes first, also for a write with DP_FLUSH: taken
	// only after its preflush, a later overlapping write of the same epoch
	// could take it in between and be overwritten by this older one.
	var start func()
	start = func() {
		if n.ldev != l || l.detaching {
			// The disk went away while the write waited for its range
			// lock (behind a resync, or for a conflict's answer): it was
			// not counted in flight, so the detach did not wait for it.
			// It is not applied, and the peer learns so.
			n.peerWriteDone(pr, e, w, ErrNotAttached)
			n.unlockRange(w.lk)
			return
		}
		if n.cfg.AllowTwoPrimaries {
			if n.peer != pr || !pr.socketsUp {
				n.peerWriteDone(pr, e, w, errConnectionGone)
				n.unlockRange(w.lk)
				return
			}
			switch n.peerWriteConflict(w) {
			case verdictWait:
				w.resume = start
				pr.recv.conflictWait = append(pr.recv.conflictWait, w)
				return
			case verdictSuperseded:
				w.answer = protocol.CmdSuperseded
			case verdictRetry:
				w.answer = protocol.CmdRetryWrite
				if pr.dialect.Version < 100 {
					// As DRBD answers peers before 100, which know no
					// retry: the peer's blocks outside ours now differ
					// from ours, so they are marked for the resync.
					w.answer = protocol.CmdSuperseded
					n.setOutOfSync(off, w.size)
				}
			}
			if w.answer == protocol.CmdSuperseded && w.flags&(protocol.DPFlush|protocol.DPFUA) != 0 {
				// The peer completes its write as durable (FUA) or as
				// ordered after durable predecessors (preflush): what
				// overwrote it here, our write, is on our disk but maybe
				// only in its cache. Flush before answering.
				l.inFlight++
				n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
					l.inFlight--
					if err != nil {
						n.diskError("flush", err)
					}
					n.peerWriteDone(pr, e, w, err)
					n.unlockRange(w.lk)
					n.maybeFinishDetach()
				})
				return
			}
			if w.answer != 0 {
				n.peerWriteDone(pr, e, w, nil)
				n.unlockRange(w.lk)
				return
			}
		}
		write := func() {
			if n.ldev != l || l.detaching {
				n.peerWriteDone(pr, e, w, ErrNotAttached)
				n.unlockRange(w.lk)
				return
			}
			l.inFlight++
			n.submitDisk(DiskOp{Op: w.op, Offset: off, Length: w.size, Data: w.data, FUA: w.flags&protocol.DPFUA != 0}, func(err error, _ []byte) {
				l.inFlight--
				n.peerWriteDone(pr, e, w, err)
				n.unlockRange(w.lk)
				n.maybeFinishDetach()
			})
		}
		if w.flags&protocol.DPFlush == 0 {
			write()
			return
		}
		// PREFLUSH: what completed before must be durable first. A failed
		// flush fails the write, as the kernel's flush+write bio does:
		// P_NEG_ACK, the blocks out of sync, not an ack for a write whose
		// predecessors may not be durable.
		l.inFlight++
		n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
			l.inFlight--
			if err != nil {
				n.peerWriteDone(pr, e, w, fmt.Errorf("preflush: %w", err))
				n.unlockRange(w.lk)
				n.maybeFinishDetach()
				return
			}
			write()
		})
	}
	w.lk = n.lockRange(off, w.size, lockWrite, nil)
	if w.lk.granted {
		start()
	} else {
		w.lk.fn = start
	}
}

// peerWriteDone records the end of a write received on pr's connection.
// ACK BEFORE UNLOCK: the caller releases the write's range lock only after
// this sent its ack. A write of ours to the same blocks waits for the lock;
// sent before the ack, it would carry a lower sequence number, and the
// resolver (CONFLICTING WRITES) would take it for one that crossed the
// peer's write, when ours came after it (DRBD removes the peer request
// from its interval tree after sending the ack for the same reason).
func (n *Node) peerWriteDone(pr *peer, e *rEpoch, w *peerWrite, err error) {
	w.done = true
	w.data = nil
	e.done++
	if pr == nil || n.peer != pr || !pr.socketsUp {
		// The connection went away while the write was in flight, and
		// another may be up by now: this write's ack, its receive
		// backlog and its epoch are not the new connection's. (DRBD
		// waits for the old connection's peer writes before it
		// connects again; here their range locks keep a resync of the
		// same blocks behind them.)
		if err != nil && n.ldev != nil {
			n.setOutOfSync(int64(w.sector)*512, w.size)
		}
		return
	}
	pr.recv.backlog -= w.pages()
	defer n.startWaitingReads()
	if err != nil {
		if err != ErrNotAttached {
			n.diskError("peer write", err)
		}
		n.setOutOfSync(int64(w.sector)*512, w.size)
		n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: w.sector, BlockID: w.blockID, BlockSize: uint32(w.size)})
	} else if w.answer != 0 {
		n.sendAck(&protocol.BlockAck{Cmd: w.answer, Sector: w.sector, BlockID: w.blockID, BlockSize: uint32(w.size)})
	} else {
		if w.op == OpWrite {
			n.stats.dw += uint64(w.size)
		}
		if w.flags&protocol.DPSendWriteAck != 0 {
			n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdWriteAck, Sector: w.sector, BlockID: w.blockID, BlockSize: uint32(w.size)})
		}
	}
	if w.restart {
		// After the ack: the resolver must see it before our write again.
		n.restartPostponed(int64(w.sector)*512, w.size)
	}
	n.maybeFinishEpoch()
}

// receiveBarrier handles P_BARRIER: the epoch being received is complete.
func (n *Node) receiveBarrier(p *protocol.Barrier) error {
	pr := n.peer
	e := pr.recv.epochs[len(pr.recv.epochs)-1]
	if e.barrier {
		// Two barriers in a row: an empty epoch.
		e = &rEpoch{}
		pr.recv.epochs = append(pr.recv.epochs, e)
	}
	e.barrier = true
	e.nr = p.Barrier
	n.maybeFinishEpoch()
	return nil
}

// maybeFinishEpoch acknowledges the active epoch once all its writes are
// done and, with disk-flushes, durable; then it activates the next one.
// Before the barrier it starts the early flush (see EARLY FLUSH).
func (n *Node) maybeFinishEpoch() {
	pr := n.peer
	for len(pr.recv.epochs) > 0 {
		e := pr.recv.epochs[0]
		if e.done < len(e.writes) || e.flushing {
			return
		}
		if n.needsFlush(e) && e.covered < e.done {
			if !e.barrier {
				if e.early {
					// One early flush per epoch: writes trickling in
					// after it wait for the barrier's flush.
					return
				}
				e.early = true
			}
			n.flushEpoch(pr, e)
			return
		}
		if !e.barrier {
			return
		}
		n.send(MetaStream, &protocol.BarrierAck{Barrier: e.nr, SetSize: uint32(len(e.writes))})
		pr.recv.epochs = pr.recv.epochs[1:]
		if len(pr.recv.epochs) == 0 {
			pr.recv.epochs = []*rEpoch{{}}
			return
		}
		next := pr.recv.epochs[0]
		for _, w := range next.writes {
			if !w.issued {
				n.issuePeerWrite(next, w)
			}
		}
	}
}

// needsFlush: the epoch's writes must be flushed before its barrier ack
// (disk-flushes, and a disk to flush).
func (n *Node) needsFlush(e *rEpoch) bool {
	return n.cfg.DiskFlushes && len(e.writes) > 0 && n.ldev != nil && !n.ldev.detaching
}

// flushEpoch flushes the disk for the writes of e completed so far.
func (n *Node) flushEpoch(pr *peer, e *rEpoch) {
	e.flushing = true
	cover := e.done
	l := n.ldev
	l.inFlight++
	n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
		l.inFlight--
		e.flushing = false
		// A failed flush counts as done, as DRBD's drbd_flush does: the
		// error detaches the disk (on-io-error) or is logged.
		e.covered = max(e.covered, cover)
		if err != nil {
			n.diskError("flush", err)
		}
		if n.peer == pr && pr.socketsUp {
			n.maybeFinishEpoch()
		}
		n.maybeFinishDetach()
	})
}

// recvClear forgets the epochs being received when the connection drops.
// Writes already issued complete later (their completion sees the
// connection gone); writes not issued are dropped: the Primary marked
// them out of sync because it never got their barrier ack.
func (n *Node) recvClear() {
	if n.peer == nil {
		return
	}
	waiting := n.peer.recv.conflictWait
	n.peer.recv = receiver{}
	n.peer.recv.init()
	n.dropConflictWaiters(waiting)
}
