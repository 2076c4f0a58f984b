package replication

import (
	"fmt"

	"github.com/gdrbd/gdrbd/metadata"

	"github.com/gdrbd/gdrbd/protocol"
)

// request is an application request in flight (DRBD's drbd_request).
type request struct {
	Request
	sector uint64

	// local part
	localPending bool
	localErr     error
	localDone    bool

	// network part
	netPending bool // sent (or to be sent), waiting for the ack the protocol needs
	netOK      bool // the peer has it (as the protocol defines)
	netDone    bool // nothing more expected for completion
	postponed  bool // P_RETRY_WRITE: to be issued again (CONFLICTING WRITES)
	inTL       bool // in the transfer log, waiting for the epoch's barrier ack
	epoch      *tlEpoch
	sentAt     int64
	remoteRead bool

	// activity log
	alFirst, alLast uint64
	alGen           uint64
	inAL            bool
	lock            *rangeLock

	completed bool
	// flushWait: an OpFlush waiting for these epochs' barrier acks.
	flushEpoch uint32
	flushLocal bool
	flushPeer  bool
}

// Propose submits an application request. Requests are only accepted on
// a Primary with access to UpToDate data (local or the peer's); anything
// else is refused at once with an error and changes nothing. An accepted
// request is reported exactly once in Ready().Completions.
func (n *Node) Propose(r Request) error {
	if n.st.Role != RolePrimary {
		return ErrNotPrimary
	}
	if _, dup := n.reqs[r.ID]; dup {
		return ErrDuplicateID
	}
	size := n.Size()
	switch r.Op {
	case OpRead, OpWrite:
		if int64(len(r.Data)) != r.Length || r.Length <= 0 || r.Length > MaxRequestSize {
			return fmt.Errorf("%w: %s of %d bytes with a %d-byte buffer", ErrBadRequest, r.Op, r.Length, len(r.Data))
		}
	case OpTrim, OpWriteZeroes:
		if r.Length <= 0 || r.Length > MaxDiscardSize {
			return fmt.Errorf("%w: %s of %d bytes", ErrBadRequest, r.Op, r.Length)
		}
	case OpFlush:
	default:
		return fmt.Errorf("%w: op %v", ErrBadRequest, r.Op)
	}
	if r.Op != OpFlush {
		if r.Offset%512 != 0 || r.Length%512 != 0 {
			return fmt.Errorf("%w: offset %d length %d not multiples of 512", ErrBadRequest, r.Offset, r.Length)
		}
		if r.Offset < 0 || r.Offset+r.Length > size {
			return ErrOutOfRange
		}
	}
	if !n.haveData() {
		return ErrNoData
	}
	req := &request{Request: r, sector: uint64(r.Offset) / 512}
	n.reqs[r.ID] = req
	n.stats.ap++
	switch r.Op {
	case OpRead:
		n.startRead(req)
	case OpFlush:
		n.startFlush(req)
	default:
		n.startWrite(req)
	}
	return nil
}

// haveData reports whether the Primary can serve I/O: local UpToDate disk,
// or a connected peer with an UpToDate disk.
func (n *Node) haveData() bool {
	return n.st.Disk == UpToDate || n.localUsableForWrite() && n.peerUpToDate() || n.peerUpToDate()
}

func (n *Node) peerUpToDate() bool {
	return n.st.Conn >= Connected && n.st.PDsk == UpToDate && n.peer != nil && n.peer.socketsUp
}

// localUsableForWrite: application writes go to the local disk whenever it
// is attached and not failing (also while Inconsistent as SyncTarget).
func (n *Node) localUsableForWrite() bool {
	return n.ldev != nil && !n.ldev.detaching && n.st.Disk >= Inconsistent
}

// replicating reports whether writes are mirrored to the peer now. It is
// DRBD's drbd_should_do_remote, and also mirrors to a connected
// Inconsistent peer outside a resync: DRBD would only mark such writes out
// of sync, and when the peer's disk then turns UpToDate without a resync
// (new-current-uuid --clear-bitmap racing with the peer's state report)
// those bits would stay behind an UpToDate/UpToDate pair until the next
// reconnect. Mirroring them costs nothing and leaves no bits behind.
func (n *Node) replicating() bool {
	s := n.st
	if n.peer == nil || !n.peer.socketsUp || s.Conn < Connected {
		return false
	}
	return s.PDsk == UpToDate || (s.PDsk >= Inconsistent && s.Conn < Ahead && s.Conn != WFBitMapS)
}

// sendsOutOfSync reports whether writes that are not mirrored are
// announced with P_OUT_OF_SYNC (DRBD's drbd_should_send_out_of_sync):
// while our bitmap is on its way to the sync target, and when Ahead.
func (n *Node) sendsOutOfSync() bool {
	return n.peer != nil && n.peer.socketsUp && (n.st.Conn == Ahead || n.st.Conn == WFBitMapS)
}

// complete reports an application request's end exactly once.
func (n *Node) complete(req *request, err error) {
	if req.completed {
		panic(fmt.Sprintf("replication: request %d completed twice", req.ID))
	}
	req.completed = true
	n.stats.ap--
	n.ready.Completions = append(n.ready.Completions, Completion{ID: req.ID, Err: err})
	if !req.inTL {
		n.forget(req)
	}
}

// ---- reads ----

func (n *Node) startRead(req *request) {
	first, last := blockRange(req.Offset, req.Length)
	// An Inconsistent disk serves the blocks its bitmap says are in sync,
	// except while a handshake is merging the peer's bits into it (the
	// peer may have written blocks our bitmap does not mark yet).
	merging := n.st.Conn == WFReportParams || n.st.Conn == StartingSyncT || n.st.Conn == WFBitMapT
	localOK := n.st.Disk == UpToDate ||
		(n.localUsableForWrite() && n.st.Disk == Inconsistent && !merging && n.rangeInSync(first, last))
	if localOK {
		n.readLocal(req)
		return
	}
	if n.peerUpToDate() {
		n.readRemote(req)
		return
	}
	n.complete(req, ErrNoData)
}

func (n *Node) readLocal(req *request) {
	n.ldev.inFlight++
	n.ioSectors += uint64(req.Length / 512)
	n.submitDisk(DiskOp{Op: OpRead, Offset: req.Offset, Length: req.Length, Data: req.Data}, func(err error, _ []byte) {
		n.ldev.inFlight--
		n.stats.dr += uint64(req.Length)
		if err != nil {
			// Marked for the resync to repair, as DRBD does.
			n.setOutOfSync(req.Offset, req.Length)
			n.diskError("read", err)
			if n.peerUpToDate() {
				n.readRemote(req) // DRBD retries a failed read on the peer
				n.maybeFinishDetach()
				return
			}
			n.complete(req, fmt.Errorf("%w: %v", ErrIOError, err))
		} else {
			n.complete(req, nil)
		}
		n.maybeFinishDetach()
	})
}

func (n *Node) readRemote(req *request) {
	req.remoteRead = true
	req.netPending = true
	req.sentAt = n.peer.now
	n.peer.pendingReads++
	n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdDataRequest, Sector: req.sector, BlockID: req.ID, BlockSize: uint32(req.Length)})
}

// receiveDataReply completes a remote read (P_DATA_REPLY).
func (n *Node) receiveDataReply(p *protocol.Data) error {
	req, ok := n.reqs[p.BlockID]
	if !ok || !req.remoteRead || req.sector != p.Sector || !req.netPending || int64(len(p.Payload)) != req.Length {
		return n.protocolError("P_DATA_REPLY for unknown request %#x sector %d", p.BlockID, p.Sector)
	}
	copy(req.Data, p.Payload)
	req.netPending = false
	n.peer.pendingReads--
	n.stats.nr += uint64(len(p.Payload))
	n.complete(req, nil)
	return nil
}

// ---- writes ----

func (n *Node) startWrite(req *request) {
	if n.ldev != nil && !n.ldev.detaching {
		req.alFirst, req.alLast = extentRange(req.Offset, req.Length)
		n.alBegin(req)
		return
	}
	n.issueWrite(req)
}

// alBegin makes the request's extents hot. AL BEFORE DATA: the write is
// issued only when every extent it touches is recorded in a durable
// activity-log transaction, so a crash can never leave a written block
// that the log does not mark out of sync.
func (n *Node) alBegin(req *request) {
	l := n.ldev
	b := l.al.Begin(uint32(req.alFirst), uint32(req.alLast))
	switch b.Decision {
	case metadata.Go:
		req.inAL = true
		n.issueWrite(req)
	case metadata.Commit:
		req.inAL = true
		req.alGen = b.Gen
		l.alWaiting = append(l.alWaiting, req)
		n.alCommit()
	default: // Wait: no extent can be evicted now
		l.alStarved = append(l.alStarved, req)
	}
}

// alCommit writes the next AL transaction, if one is staged and none is
// in flight. EVICTED EXTENTS' BITMAP PAGES ARE DURABLE BEFORE THE
// TRANSACTION THAT EVICTS THEM: after the transaction, recovery would no
// longer set those extents' bits.
func (n *Node) alCommit() {
	l := n.ldev
	if l.alInFlight {
		return
	}
	tx := l.al.Seal()
	if tx == nil {
		return
	}
	l.alInFlight = true
	n.stats.al++
	pages := tx.EvictedPages()
	writeTx := func(err error) {
		if err != nil {
			n.alFailed(err)
			return
		}
		n.writeMeta(tx.Offset, tx.Data, "al", func(err error) {
			if err != nil {
				n.alFailed(err)
				return
			}
			l.al.Committed(tx)
			n.alDone()
		})
	}
	if len(pages) > 0 {
		n.stats.bm += uint64(len(pages))
		l.writePages(n, pages, writeTx)
	} else {
		writeTx(nil)
	}
}

// alDone runs after a transaction is durable: writes whose generation is
// now committed go on, starved writes try again, and the next staged
// transaction is written.
func (n *Node) alDone() {
	l := n.ldev
	l.alInFlight = false
	committed := l.al.CommittedGen()
	waiting := l.alWaiting
	l.alWaiting = nil
	for _, req := range waiting {
		if req.alGen <= committed {
			n.issueWrite(req)
		} else {
			l.alWaiting = append(l.alWaiting, req)
		}
	}
	n.alRetryStarved()
	n.alCommit()
	n.maybeFinishDetach()
}

// alRetryStarved gives writes that found no free extent another try.
func (n *Node) alRetryStarved() {
	l := n.ldev
	if l == nil || len(l.alStarved) == 0 {
		return
	}
	starved := l.alStarved
	l.alStarved = nil
	for _, r := range starved {
		if l.detaching {
			n.issueWrite(r)
			continue
		}
		n.alBegin(r)
	}
}

// alFailed: the metadata disk failed; the log is unusable.
func (n *Node) alFailed(err error) {
	l := n.ldev
	l.alInFlight = false
	n.metaError("activity log write", err)
	waiting := append(l.alWaiting, l.alStarved...)
	l.alWaiting, l.alStarved = nil, nil
	for _, req := range waiting {
		req.inAL = false
		n.issueWrite(req) // the disk is failing: the write goes to the peer only
	}
	n.maybeFinishDetach()
}

// alComplete drops the request's AL references and wakes starved writers.
// The caller has already set the out-of-sync bits the write needs: after
// Complete the extent may be evicted, and only bits already set are
// written out with it.
func (n *Node) alComplete(req *request) {
	if !req.inAL {
		return
	}
	req.inAL = false
	l := n.ldev
	if l == nil {
		return
	}
	l.al.Complete(uint32(req.alFirst), uint32(req.alLast))
	n.alRetryStarved()
	n.alCommit()
}

// issueWrite starts the write once no resync of the same blocks is in
// flight (see locks.go).
func (n *Node) issueWrite(req *request) {
	if n.ldev == nil {
		n.doIssueWrite(req)
		return
	}
	req.lock = n.lockRange(req.Offset, req.Length, lockWrite, func() { n.doIssueWrite(req) })
}

// releaseLock drops the request's range lock (once its local part ended:
// a resync read after that sees the new data).
func (n *Node) releaseLock(req *request) {
	if req.lock != nil {
		lk := req.lock
		req.lock = nil
		n.unlockRange(lk)
	}
}

// doIssueWrite starts the local and the remote part of a write (after the
// activity log allows it): both in parallel.
func (n *Node) doIssueWrite(req *request) {
	local := n.localUsableForWrite()
	if local {
		req.localPending = true
		n.ldev.inFlight++
		n.ioSectors += uint64(req.Length / 512)
		op := DiskOp{Op: req.Op, Offset: req.Offset, Length: req.Length, Data: req.Data, FUA: req.FUA}
		n.submitDisk(op, func(err error, _ []byte) { n.localWriteDone(req, err) })
	} else {
		req.localDone = true
		req.localErr = ErrNotAttached
	}
	sent := false
	if n.replicating() {
		sent = n.sendWrite(req)
	} else {
		req.netDone = true
		n.setOutOfSync(req.Offset, req.Length)
		if n.sendsOutOfSync() {
			n.send(DataStream, &protocol.BlockDesc{Cmd: protocol.CmdOutOfSync, Sector: req.sector, BlockSize: uint32(req.Length)})
		}
	}
	if !local {
		n.releaseLock(req)
		if !sent {
			// Nothing will ack it: it ends here (diskless, so with
			// ErrNoData: no disk has it).
			n.finishRequest(req)
		}
	}
}

// sendWrite ships the write to the peer in the current epoch. The barrier
// that closes the previous epoch was already sent when it closed, so the
// peer sees: all writes of epoch n, P_BARRIER n, writes of epoch n+1.
//
// false: the peer cannot take it (a trim or zeroing without the feature
// agreed); the range is marked out of sync, to be resynced later, and the
// request joins no epoch: the peer's barrier ack counts only the writes
// it received (set_size), so an epoch must hold exactly those.
func (n *Node) sendWrite(req *request) bool {
	pr := n.peer
	seq := pr.packetSeq + 1
	flags := uint32(0)
	if req.FUA {
		flags |= protocol.DPFUA
	}
	switch n.cfg.Protocol {
	case ProtocolB:
		flags |= protocol.DPSendReceiveAck
	case ProtocolC:
		flags |= protocol.DPSendWriteAck
	}
	var pk protocol.Packet
	switch {
	case req.Op == OpWrite:
		pk = &protocol.Data{Cmd: protocol.CmdData, Sector: req.sector, BlockID: req.ID, SeqNum: seq, Flags: flags, Payload: req.Data}
		n.stats.ns += uint64(req.Length)
	case req.Op == OpWriteZeroes && pr.dialect.Features&protocol.FeatureWZeroes != 0:
		pk = &protocol.Trim{Cmd: protocol.CmdZeroes, Sector: req.sector, BlockID: req.ID, SeqNum: seq, Flags: flags | protocol.DPZeroes, Size: uint32(req.Length)}
	case pr.dialect.Features&protocol.FeatureTrim != 0:
		if req.Op == OpWriteZeroes {
			flags |= protocol.DPZeroes
		}
		pk = &protocol.Trim{Cmd: protocol.CmdTrim, Sector: req.sector, BlockID: req.ID, SeqNum: seq, Flags: flags | protocol.DPDiscard, Size: uint32(req.Length)}
	default:
		// The peer cannot trim: the range is resynced later.
		req.netDone = true
		n.setOutOfSync(req.Offset, req.Length)
		return false
	}
	pr.packetSeq = seq
	e := n.tl.current(n)
	req.epoch = e
	e.writes = append(e.writes, req)
	req.inTL = true
	req.netPending = true
	req.sentAt = pr.now
	if n.cfg.Protocol == ProtocolA {
		n.sendWithToken(DataStream, pk, func() { n.netAcked(req, true) })
	} else {
		n.send(DataStream, pk)
	}
	if len(e.writes) >= n.cfg.MaxEpochSize {
		n.closeEpoch()
	}
	return true
}

func (n *Node) localWriteDone(req *request, err error) {
	req.localPending = false
	req.localDone = true
	n.ldev.inFlight--
	n.releaseLock(req)
	if req.Op == OpWrite {
		n.stats.dw += uint64(req.Length)
	}
	if err != nil {
		req.localErr = err
		n.setOutOfSync(req.Offset, req.Length)
		n.diskError("write", err)
	}
	n.finishRequest(req)
	n.maybeFinishDetach()
}

// netAcked records the peer's answer for a write: ok for P_RECV_ACK /
// P_WRITE_ACK (or protocol A's hand-off), not ok for P_NEG_ACK.
func (n *Node) netAcked(req *request, ok bool) {
	if !req.netPending {
		if !ok {
			n.setOutOfSync(req.Offset, req.Length)
		}
		return
	}
	req.netPending = false
	req.netDone = true
	req.netOK = ok
	if !ok {
		n.setOutOfSync(req.Offset, req.Length)
	}
	n.finishRequest(req)
}

// finishRequest completes the request to the application once both parts
// are done. ACK AFTER BOTH DISKS: under protocol C netDone means the
// peer's P_WRITE_ACK (its disk has the data) arrived; the local part is
// done when our own write completed. Success if either part succeeded.
func (n *Node) finishRequest(req *request) {
	if req.completed || req.localPending || (!req.netDone && req.netPending) {
		return
	}
	if !req.localDone || !req.netDone {
		return
	}
	var err error
	if req.localErr != nil && !req.netOK {
		err = fmt.Errorf("%w: %v", ErrIOError, req.localErr)
		if req.localErr == ErrNotAttached {
			err = ErrNoData
		}
	}
	// A completed write closes the current epoch: anything the
	// application issues after seeing this completion lands in a later
	// epoch (DRBD's start_new_tl_epoch in drbd_req_complete).
	if req.epoch != nil && req.epoch == n.tl.open {
		n.closeEpoch()
	}
	if !req.inTL {
		n.alComplete(req)
	}
	n.complete(req, err)
}

// ---- flush ----

// startFlush handles an application FLUSH: every write completed before
// it must be durable on both disks. Locally a disk flush; on the peer the
// current epoch is closed with P_BARRIER and the flush completes when the
// barrier acks of all epochs up to it arrived (the peer acks a barrier
// only after flushing its disk).
func (n *Node) startFlush(req *request) {
	req.flushLocal = n.localUsableForWrite()
	if req.flushLocal {
		req.localPending = true
		n.ldev.inFlight++
		n.submitDisk(DiskOp{Op: OpFlush}, func(err error, _ []byte) {
			req.localPending = false
			n.ldev.inFlight--
			if err != nil {
				req.localErr = err
				n.diskError("flush", err)
			}
			n.finishFlush(req)
			n.maybeFinishDetach()
		})
	}
	if n.replicating() && n.tl.hasUnacked() {
		if n.tl.open != nil && len(n.tl.open.writes) > 0 {
			n.closeEpoch()
		}
		req.flushPeer = true
		req.flushEpoch = n.tl.lastClosedNr
		n.tl.flushWaiters = append(n.tl.flushWaiters, req)
	}
	n.finishFlush(req)
}

func (n *Node) finishFlush(req *request) {
	if req.completed || req.localPending || req.flushPeer {
		return
	}
	var err error
	if req.flushLocal && req.localErr != nil {
		err = fmt.Errorf("%w: flush: %v", ErrIOError, req.localErr)
	}
	n.complete(req, err)
}

// ---- acks from the peer ----

func (n *Node) receiveBlockAck(p *protocol.BlockAck) error {
	switch p.Cmd {
	case protocol.CmdRSWriteAck, protocol.CmdRSIsInSync, protocol.CmdNegRSDReply, protocol.CmdRSCancel, protocol.CmdOVResult:
		return n.receiveResyncAck(p)
	case protocol.CmdNegDReply:
		req, ok := n.reqs[p.BlockID]
		if !ok || !req.remoteRead || !req.netPending {
			return n.protocolError("P_NEG_DREPLY for unknown request")
		}
		req.netPending = false
		n.peer.pendingReads--
		n.logf(LevelError, "Got NegDReply; Sector %ds, len %d.", p.Sector, p.BlockSize)
		n.complete(req, fmt.Errorf("%w: peer could not read", ErrIOError))
		return nil
	}
	if p.BlockID == idSyncer {
		return n.receiveResyncAck(p)
	}
	req, ok := n.reqs[p.BlockID]
	if !ok || req.sector != p.Sector || req.Op == OpRead || req.Op == OpFlush || req.remoteRead {
		if p.Cmd == protocol.CmdNegAck {
			// Protocol A/B: the request may be gone already.
			if err := n.checkPeerRange(p.Sector, int64(p.BlockSize)); err != nil {
				return err
			}
			n.setOutOfSync(int64(p.Sector)*512, int64(p.BlockSize))
			return nil
		}
		return n.protocolError("%#04x for unknown request %#x sector %d", p.Cmd, p.BlockID, p.Sector)
	}
	switch p.Cmd {
	case protocol.CmdWriteAck:
		if n.cfg.Protocol != ProtocolC {
			return n.protocolError("P_WRITE_ACK under protocol %s", n.cfg.Protocol)
		}
		n.netAcked(req, true)
	case protocol.CmdRecvAck:
		if n.cfg.Protocol != ProtocolB {
			return n.protocolError("P_RECV_ACK under protocol %s", n.cfg.Protocol)
		}
		n.netAcked(req, true)
	case protocol.CmdNegAck:
		n.netAcked(req, false)
	case protocol.CmdSuperseded, protocol.CmdRetryWrite:
		// Two primaries: the resolver's answer to a write that crossed
		// one of its own (CONFLICTING WRITES). Only it sends these.
		if !n.cfg.AllowTwoPrimaries || n.peer.resolveConflicts {
			return n.protocolError("%v from a peer that does not resolve write conflicts", p.Cmd)
		}
		if p.Cmd == protocol.CmdRetryWrite {
			return n.postponeWrite(req)
		}
		// Overwritten by the resolver's write, which is on its way here
		// and will be applied over ours.
		n.netAcked(req, true)
	default:
		return n.protocolError("unexpected ack %#04x", p.Cmd)
	}
	return nil
}

// idSyncer is the block_id of resync requests (DRBD's ID_SYNCER).
const idSyncer = ^uint64(0)

// receiveBarrierAck releases the oldest epoch (DRBD's tl_release). The
// set size must match the writes we sent in it.
func (n *Node) receiveBarrierAck(p *protocol.BarrierAck) error {
	e := n.tl.oldestClosed()
	if e == nil {
		return n.protocolError("BarrierAck #%d received, but no epoch is waiting", p.Barrier)
	}
	if e.nr != p.Barrier {
		return n.protocolError("BAD! BarrierAck #%d received, expected #%d!", p.Barrier, e.nr)
	}
	if uint32(len(e.writes)) != p.SetSize {
		return n.protocolError("BAD! BarrierAck #%d received with n_writes=%d, expected n_writes=%d!", p.Barrier, p.SetSize, len(e.writes))
	}
	for _, req := range e.writes {
		if req.netPending && !req.postponed {
			// Protocol A: the ack covers writes not otherwise acked.
			req.netPending = false
			req.netDone = true
			req.netOK = true
			n.finishRequest(req)
		}
	}
	n.tl.pop()
	for _, req := range e.writes {
		req.inTL = false
		if req.postponed {
			// The resolver counted it, but it is still to be written
			// again: it keeps its AL reference and its place in the
			// request table until restartPostponed.
			continue
		}
		// The AL reference goes with the request's last part: a local
		// write still in flight keeps its extent in the activity log
		// (finishRequest drops it when the write completes). Dropped
		// now, the extent could be evicted, its bit clear since the peer
		// has the data, and a power cut before the local write lands
		// would leave the blocks different with nothing marking them.
		if !req.localPending {
			n.alComplete(req)
		}
		if req.completed {
			n.forget(req)
		}
	}
	n.tl.ackedNr = e.nr
	n.tl.ackedAny = true
	n.wakeFlushWaiters()
	return nil
}

func (n *Node) wakeFlushWaiters() {
	ws := n.tl.flushWaiters[:0]
	for _, req := range n.tl.flushWaiters {
		if n.tl.epochAcked(req.flushEpoch) {
			req.flushPeer = false
			n.finishFlush(req)
		} else {
			ws = append(ws, req)
		}
	}
	n.tl.flushWaiters = ws
}

// tlClear handles the loss of the connection for the transfer log (DRBD's
// tl_clear): every write the peer did not confirm with a barrier ack is
// marked out of sync (the peer may not have it durably), and every write
// still waiting for the peer completes now.
func (n *Node) tlClear() {
	for _, e := range n.tl.epochs {
		for _, req := range e.writes {
			n.setOutOfSync(req.Offset, req.Length)
			req.inTL = false
			req.epoch = nil
			if req.netPending {
				// A postponed write too: it is on our disk only.
				req.netPending = false
				req.postponed = false
				req.netDone = true
				n.finishRequest(req)
			}
			n.alComplete(req)
			if req.completed {
				n.forget(req)
			}
		}
	}
	n.tl.reset()
	n.failPostponed()
	flushers := n.tl.flushWaiters
	n.tl.flushWaiters = nil
	for _, req := range flushers {
		req.flushPeer = false
		n.finishFlush(req)
	}
	// Remote reads in flight fail over to the local disk or fail.
	for _, req := range n.reqsWhere(func(req *request) bool { return req.remoteRead && req.netPending }) {
		{
			req.netPending = false
			req.remoteRead = false
			if n.st.Disk == UpToDate {
				n.readLocal(req)
			} else {
				n.complete(req, ErrNoData)
			}
		}
	}
	if n.peer != nil {
		n.peer.pendingReads = 0
	}
}

// oldestPeerWait returns since when the oldest thing we wait for from the
// peer has been outstanding: a write's ack, a closed epoch's
// P_BARRIER_ACK (what a FLUSH and protocol A wait for), a remote read's
// reply, as DRBD's request timer looks at all of them; ok is false when
// nothing is outstanding. (A tick count of 0 is a real time: the first
// connection's handshake and writes can happen before the first tick.)
func (n *Node) oldestPeerWait() (since int64, ok bool) {
	see := func(t int64) {
		if !ok || t < since {
			since, ok = t, true
		}
	}
	for _, e := range n.tl.epochs {
		if e.closed {
			see(e.closedAt)
		}
		for _, req := range e.writes {
			if req.netPending {
				see(req.sentAt)
			}
		}
	}
	if n.cfg.AllowTwoPrimaries {
		for _, req := range n.reqs {
			if req.postponed {
				see(req.sentAt)
			}
		}
	}
	if n.peer != nil && n.peer.pendingReads > 0 {
		for _, req := range n.reqs {
			if req.remoteRead && req.netPending {
				see(req.sentAt)
			}
		}
	}
	return since, ok
}

// ---- transfer log ----

// tlEpoch is one epoch of replicated writes.
type tlEpoch struct {
	nr       uint32
	writes   []*request
	closed   bool
	closedAt int64 // the peer's tick count when its P_BARRIER went out
}

// transferLog is the Primary's list of epochs not yet barrier-acked.
type transferLog struct {
	epochs       []*tlEpoch // oldest first; the last may be open
	open         *tlEpoch
	nextNr       uint32
	lastClosedNr uint32
	ackedNr      uint32
	ackedAny     bool
	flushWaiters []*request
}

func (t *transferLog) init() { t.nextNr = 1 }

func (t *transferLog) reset() {
	t.epochs = nil
	t.open = nil
	t.ackedAny = false
	t.lastClosedNr = 0
	t.ackedNr = 0
}

// current returns the open epoch, starting one if needed.
func (t *transferLog) current(n *Node) *tlEpoch {
	if t.open == nil {
		t.open = &tlEpoch{nr: t.nextNr}
		t.nextNr++
		if t.nextNr == 0 {
			t.nextNr = 1
		}
		t.epochs = append(t.epochs, t.open)
	}
	return t.open
}

func (t *transferLog) hasUnacked() bool { return len(t.epochs) > 0 }

func (t *transferLog) oldestClosed() *tlEpoch {
	if len(t.epochs) == 0 || !t.epochs[0].closed {
		return nil
	}
	return t.epochs[0]
}

func (t *transferLog) pop() { t.epochs = t.epochs[1:] }

// epochAcked reports whether epoch nr (and so every epoch before it) was
// acknowledged: it is no longer in the log.
func (t *transferLog) epochAcked(nr uint32) bool {
	for _, e := range t.epochs {
		if e.nr == nr {
			return false
		}
	}
	return true
}

// closeEpoch ends the open epoch and sends its P_BARRIER. BARRIER AFTER
// EPOCH: the barrier follows every write of its epoch on the data socket
// and precedes every write of the next.
func (n *Node) closeEpoch() {
	e := n.tl.open
	if e == nil || len(e.writes) == 0 {
		return
	}
	e.closed = true
	if n.peer != nil {
		e.closedAt = n.peer.now
	}
	n.tl.open = nil
	n.tl.lastClosedNr = e.nr
	n.send(DataStream, &protocol.Barrier{Barrier: e.nr})
}
