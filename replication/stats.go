package replication

import "github.com/gdrbd/gdrbd/protocol"

// Stats are the counters /proc/drbd shows for a device.
type Stats struct {
	NS  uint64 // network send, KiB
	NR  uint64 // network receive, KiB
	DW  uint64 // disk write, KiB
	DR  uint64 // disk read, KiB
	AL  uint64 // activity log transactions
	BM  uint64 // bitmap writes
	LO  int    // local I/O pending
	PE  int    // requests sent to the peer, not answered
	UA  int    // requests received from the peer, not answered
	AP  int    // application requests in flight
	EP  int    // epochs (barriers sent)
	OOS uint64 // out of sync, KiB
}

// stats are the raw counters (bytes where /proc/drbd shows KiB).
type stats struct {
	ns, nr, dw, dr uint64
	al, bm         uint64
	ap             int
	ticks          uint64
}

// Stats returns the /proc/drbd counters.
func (n *Node) Stats() Stats {
	s := Stats{
		NS: n.stats.ns / 1024, NR: n.stats.nr / 1024, DW: n.stats.dw / 1024, DR: n.stats.dr / 1024,
		AL: n.stats.al, BM: n.stats.bm, AP: n.stats.ap, EP: 1,
	}
	if n.ldev != nil {
		s.LO = n.ldev.inFlight
		s.OOS = n.ldev.bm.Count() * 4
	}
	for _, e := range n.tl.epochs {
		for _, r := range e.writes {
			if r.netPending {
				s.PE++
			}
		}
	}
	if pr := n.peer; pr != nil {
		// pe: our requests the peer has not answered (writes above,
		// remote reads, our resync requests); ua: the peer's requests we
		// have not answered (its writes waiting for our ack, the resync
		// reads we serve), counted in requests as DRBD's unacked_cnt;
		// ep: the epochs we are receiving (tconn->epochs, 1 when idle).
		s.PE += pr.pendingReads
		for key := range pr.rs.pending {
			if key&(1<<63) != 0 {
				s.UA++ // a source read: keyed with the top bit
			} else {
				s.PE++
			}
		}
		for _, e := range pr.recv.epochs {
			for _, w := range e.writes {
				if !w.done && (w.flags&protocol.DPSendWriteAck != 0 || w.flags&protocol.DPSendReceiveAck != 0 && !w.issued) {
					s.UA++
				}
			}
		}
		s.EP = max(len(pr.recv.epochs), 1)
	}
	return s
}

// SyncProgress describes a running resync or verify.
type SyncProgress struct {
	Running   bool
	TotalKiB  uint64 // to sync at start
	LeftKiB   uint64 // still out of sync
	RateKiB   int    // current target rate (KiB/s)
	ElapsedMs int64
	Verify    bool
	Decision  string // what the last handshake decided
}

// Progress returns the resync/verify progress.
func (n *Node) Progress() SyncProgress {
	var p SyncProgress
	if n.peer == nil {
		return p
	}
	rs := &n.peer.rs
	p.Decision = rs.lastDecision
	c := n.st.Conn
	if !c.IsSyncing() {
		return p
	}
	p.Running = true
	p.Verify = c == VerifyS || c == VerifyT
	p.TotalKiB = rs.total * 4
	if p.Verify {
		p.LeftKiB = rs.ovLeft * 4
	} else if n.ldev != nil {
		p.LeftKiB = n.ldev.bm.Count() * 4
	}
	p.RateKiB = rs.rateKiB
	p.ElapsedMs = (n.peer.now - rs.startTick) * int64(n.cfg.TickMillis)
	return p
}
