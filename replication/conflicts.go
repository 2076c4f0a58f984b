package replication

import (
	"errors"
	"sort"

	"github.com/gdrbd/gdrbd/protocol"
)

// CONFLICTING WRITES (allow-two-primaries). With two Primaries, each node
// can write a block while the peer writes the same block: each node
// would apply its own write first and the peer's second, and the disks
// would end up different with no bit set. DRBD 8.4 resolves this in
// handle_write_conflicts, and so do we, on the wire the same way:
//
//   - The node that accepted the meta socket holds RESOLVE_CONFLICTS (the
//     resolver). When a peer write overlaps one of its own writes that the
//     peer has not acknowledged yet, the two crossed on the wire. The
//     resolver does not apply the peer write: if its own write covers it,
//     it answers P_SUPERSEDED (the peer's write counts as overwritten by
//     ours: "local came first" in time, ours last on disk); otherwise
//     P_RETRY_WRITE (the peer writes it again once ours is done).
//   - The other node never decides. A peer write that overlaps one of its
//     own unanswered writes waits until that write is answered: superseded
//     (it completes, and the resolver's write is applied over it) or
//     acknowledged; a write told to retry is postponed, the peer write is
//     applied, and then the postponed write is issued again, locally and
//     to the peer, as a new request (the old one stays in its epoch: the
//     resolver counted it in its barrier ack).
//
// Either way both disks apply the overlapping writes in the same order.
//
// The check runs when the peer write gets its range lock: no write of
// ours to those blocks is in flight on our disk then (it would hold the
// lock), a write of ours queued behind it comes after it on both nodes,
// and one we issued before is in the peer's hands and still unanswered
// (netPending) or already on the peer's disk.
//
// ACKS BEFORE LATER WRITES: acks travel on the meta socket, writes on the
// data socket, so a write the peer sent after acknowledging one of ours
// can overtake that ack and look concurrent with our write when it was
// not. Every P_DATA and every block ack carries the sender's next
// sequence number (DRBD's packet_seq); the resolver checks a peer write
// only once it has seen every number before it (wait_for_and_update_peer_seq),
// and drops the connection if an ack stays missing for ping-timeout.

// seqGreater reports whether a is newer than b, with 32-bit wrap-around.
func seqGreater(a, b uint32) bool { return int32(a-b) > 0 }

// nextSeq numbers the next P_DATA, P_TRIM, P_ZEROES or block ack we send.
func (pr *peer) nextSeq() uint32 {
	pr.packetSeq++
	return pr.packetSeq
}

// sendAck sends a block ack on the meta socket with the next sequence
// number (DRBD's _drbd_send_ack).
func (n *Node) sendAck(a *protocol.BlockAck) {
	if n.peer == nil || !n.peer.socketsUp {
		return
	}
	a.SeqNum = n.peer.nextSeq()
	n.send(MetaStream, a)
}

// needPeerSeq: we order peer writes after the peer's acks (two primaries
// allowed and we resolve conflicts).
func (n *Node) needPeerSeq() bool {
	return n.cfg.AllowTwoPrimaries && n.peer != nil && n.peer.resolveConflicts
}

// seenPeerSeq records the sequence number of a block ack from the peer.
func (n *Node) seenPeerSeq(seq uint32) {
	pr := n.peer
	if !n.needPeerSeq() || !pr.socketsUp {
		return
	}
	if seqGreater(seq, pr.peerSeq) {
		pr.peerSeq = seq
	}
	n.advanceSeqGate()
}

// gatePeerWrite queues a peer write (in the order received) until every
// packet the peer numbered before it was seen.
func (n *Node) gatePeerWrite(w *peerWrite) {
	if !n.needPeerSeq() {
		w.seqOK = true
		return
	}
	r := &n.peer.recv
	if len(r.gate) == 0 {
		r.gateSince = n.peer.now
	}
	r.gate = append(r.gate, w)
	n.advanceSeqGate()
}

// advanceSeqGate lets through the gated writes whose predecessors were all
// seen, in order, and rechecks the writes waiting for them.
func (n *Node) advanceSeqGate() {
	pr := n.peer
	r := &pr.recv
	moved := false
	for len(r.gate) > 0 {
		w := r.gate[0]
		if seqGreater(w.seq-1, pr.peerSeq) {
			break
		}
		if seqGreater(w.seq, pr.peerSeq) {
			pr.peerSeq = w.seq
		}
		w.seqOK = true
		r.gate[0] = nil
		r.gate = r.gate[1:]
		moved = true
	}
	if moved {
		r.gateSince = pr.now
		n.recheckConflicts()
	}
}

// seqGateExpired: a gated write has waited longer than ping-timeout for
// the acks before it.
func (n *Node) seqGateExpired() bool {
	r := &n.peer.recv
	return len(r.gate) > 0 && n.peer.now-r.gateSince > int64(n.cfg.PingTimeoutTicks)
}

type conflictVerdict uint8

const (
	verdictGo         conflictVerdict = iota // no conflict (or only retried writes): apply it
	verdictWait                              // wait for the resolver's answer to our write
	verdictSuperseded                        // resolver: ours covers it, answer P_SUPERSEDED
	verdictRetry                             // resolver: answer P_RETRY_WRITE
)

// peerWriteConflict decides what to do with a peer write that got its
// range lock (see CONFLICTING WRITES). On the resolver it only runs once
// the write passed the sequence gate.
func (n *Node) peerWriteConflict(w *peerWrite) conflictVerdict {
	pr := n.peer
	if pr.resolveConflicts && !w.seqOK {
		return verdictWait
	}
	off := int64(w.sector) * 512
	end := off + w.size
	overlapping := n.reqsWhere(func(req *request) bool {
		return req.epoch != nil && req.netPending && !req.remoteRead && req.Op != OpRead && req.Op != OpFlush &&
			req.Offset < end && off < req.Offset+req.Length
	})
	if len(overlapping) == 0 {
		return verdictGo
	}
	first := overlapping[0]
	equal := first.Offset == off && first.Length == w.size
	if pr.resolveConflicts {
		superseded := false
		for _, req := range overlapping {
			if req.Offset <= off && end <= req.Offset+req.Length {
				superseded = true
				break
			}
		}
		if !equal {
			who := "remote"
			if superseded {
				who = "local"
			}
			n.logf(LevelWarn, "Concurrent writes detected: local=%ds +%d, remote=%ds +%d, assuming %s came first",
				first.sector, first.Length, w.sector, w.size, who)
		}
		if superseded {
			return verdictSuperseded
		}
		return verdictRetry
	}
	if !equal && !w.conflictLogged {
		w.conflictLogged = true
		n.logf(LevelWarn, "Concurrent writes detected: local=%ds +%d, remote=%ds +%d", first.sector, first.Length, w.sector, w.size)
	}
	for _, req := range overlapping {
		if req.localPending || !req.postponed {
			return verdictWait
		}
	}
	// Only writes the resolver told us to retry: apply the peer's write,
	// then issue ours again (after the peer write's ack, so the resolver
	// sees ours as the later one).
	w.restart = true
	return verdictGo
}

// recheckConflicts gives the peer writes waiting for an answer (or for
// the sequence gate) another look.
func (n *Node) recheckConflicts() {
	if n.peer == nil {
		return
	}
	r := &n.peer.recv
	if len(r.conflictWait) == 0 {
		return
	}
	ws := r.conflictWait
	r.conflictWait = nil
	for _, w := range ws {
		w.resume()
	}
}

// dropConflictWaiters releases the range locks of peer writes that were
// waiting for a conflict to resolve when the connection went away. They
// are not applied: the peer marked them out of sync (no barrier ack), and
// so do we.
func (n *Node) dropConflictWaiters(ws []*peerWrite) {
	for _, w := range ws {
		if n.ldev != nil {
			n.setOutOfSync(int64(w.sector)*512, w.size)
		}
		w.done = true
		w.data = nil
		n.unlockRange(w.lk)
	}
}

// postponeWrite handles P_RETRY_WRITE for one of our writes: it stays in
// flight until the resolver's conflicting write, on its way to us, was
// applied here; then it is issued again (restartPostponed).
func (n *Node) postponeWrite(req *request) error {
	if !req.netPending || req.postponed {
		return n.protocolError("P_RETRY_WRITE for write %#x not waiting for an answer", req.ID)
	}
	req.postponed = true
	if !n.localUsableForWrite() {
		// Without a disk we apply no peer write to wait for: go again at
		// once. (Should the resolver's write still be unanswered, it
		// answers retry once more.)
		n.restartPostponed(req.Offset, req.Length)
	}
	return nil
}

// restartPostponed issues again our postponed writes that overlap a peer
// write just applied (DRBD's restart_conflicting_writes). The old request
// stays in its epoch (the resolver counted it) but no longer answers to
// the application: a new request with the same ID takes its place.
func (n *Node) restartPostponed(off, size int64) {
	restart := n.reqsWhere(func(req *request) bool {
		return req.postponed && !req.localPending && req.Offset < off+size && off < req.Offset+req.Length
	})
	for _, old := range restart {
		old.postponed = false
		old.netPending = false
		old.netDone = true
		old.completed = true // its replacement reports the completion
		nr := &request{Request: old.Request, sector: old.sector}
		n.reqs[old.ID] = nr
		n.startWrite(nr) // takes its own AL reference first
		if !old.inTL {
			// Its epoch was acked while it waited: its AL reference
			// went with nothing.
			n.alComplete(old)
		}
	}
}

// failPostponed ends the postponed writes when the connection is lost
// (tlClear): they are on our disk only, out of sync, and complete with
// the local result. Those whose epoch the resolver already acked are no
// longer in the transfer log, so tlClear does not see them.
func (n *Node) failPostponed() {
	for _, req := range n.reqsWhere(func(req *request) bool { return req.postponed }) {
		req.postponed = false
		req.netPending = false
		req.netDone = true
		n.setOutOfSync(req.Offset, req.Length)
		n.finishRequest(req) // drops its AL reference once complete
	}
}

// reqsWhere returns the requests in flight that keep says, in ID order:
// the core's output must not depend on map order.
func (n *Node) reqsWhere(keep func(*request) bool) []*request {
	var out []*request
	for _, req := range n.reqs {
		if keep(req) {
			out = append(out, req)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// forget drops a finished request from the request table, unless a
// restarted request with the same ID replaced it there.
func (n *Node) forget(req *request) {
	if n.reqs[req.ID] == req {
		delete(n.reqs, req.ID)
	}
}

// errConnectionGone: a peer write not applied because its connection went
// away while it waited for a conflict to resolve.
var errConnectionGone = errors.New("replication: connection gone")
