package sim

import (
	"sort"

	"github.com/gdrbd/gdrbd/replication"
)

// ---- two Primaries (Options.TwoPrimaries) ----
//
// Both nodes are Primary (allow-two-primaries) and both applications
// write a small hot region at once, so writes of the two nodes to the
// same blocks cross on the wire all the time (CONFLICTING WRITES in the
// replication package). No faults: two Primaries cut apart are a split
// brain by construction. The checks:
//
//   - PEERS CONVERGE BYTE FOR BYTE: after the workload both disks are
//     identical, UpToDate, nothing out of sync (checkConverged);
//   - LAST WRITER WINS: every block holds the version of a write to it
//     that no other write to it followed, i.e. a write W such that no
//     write to the block was issued after W completed. A lost update (an
//     older write applied over a newer one on either disk) fails it;
//   - no torn blocks.
//
// Later writes would paper over a divergence before the end, so the
// applications alternate bursts of writes with quiet phases (dualPhase
// each): once nothing is in flight in a quiet phase, both disks are
// compared and LAST WRITER WINS is checked on them right then.

// dualHot is the number of 4 KiB blocks both applications write.
const dualHot = 48

// dualPhase is the length of a burst and of a quiet phase (microseconds).
const dualPhase = 20_000

func (s *Sim) dualQuietPhase() bool { return (s.now/dualPhase)%2 == 1 }

// dualQuietCheck compares the disks once per quiet phase, as soon as no
// request is in flight on either node.
func (s *Sim) dualQuietCheck() {
	d := s.dual
	phase := s.now / dualPhase
	if d.checkedPhase == phase {
		return
	}
	for _, nd := range s.nodes {
		if !nd.alive || nd.app == nil || len(nd.app.inflight) > 0 {
			return
		}
		st := nd.core.Stats()
		if st.LO != 0 || st.PE != 0 || st.UA != 0 || st.AP != 0 || !upToDate(nd) {
			return
		}
	}
	d.checkedPhase = phase
	d.checks++
	a, b := s.nodes[0], s.nodes[1]
	for blkNr := s.opt.DualBase; blkNr < s.opt.DualBase+dualHot; blkNr++ {
		x, y := a.disk.read(blkNr*blk, blk), b.disk.read(blkNr*blk, blk)
		if string(x) != string(y) {
			vx, _ := versionOf(x)
			vy, _ := versionOf(y)
			s.fail("quiet point %d: disks differ at block %d: %s has v%d, %s has v%d", d.checks, blkNr, a.name, vx, b.name, vy)
			return
		}
	}
	s.checkLastWriter()
	s.logf("quiet point %d: disks identical, last writers on disk", d.checks)
}

// dualWrite is one application write to a block, for the final check.
type dualWrite struct {
	version   uint64
	node      int
	issued    uint64 // dualClock at Propose
	completed uint64 // dualClock at its completion, 0 while in flight
	failed    bool
}

// dualState is what the two-Primaries run records.
type dualState struct {
	clock  uint64
	writes map[int64][]*dualWrite // per block
	byReq  map[[2]uint64][]*dualWrite
	busy   [2]map[int64]bool // blocks each node has a write in flight to
	// checkedPhase: the quiet phase last checked; checks: how many.
	checkedPhase int64
	checks       int
}

func newDualState() *dualState {
	return &dualState{writes: map[int64][]*dualWrite{}, byReq: map[[2]uint64][]*dualWrite{}, busy: [2]map[int64]bool{{}, {}}}
}

// promoteSecond makes the second node Primary too once both are UpToDate.
func (s *Sim) promoteSecond() error {
	a, b := s.nodes[0], s.nodes[1]
	s.runUntil(s.now+60_000_000, func() bool { return upToDate(a) && upToDate(b) })
	if s.err != nil {
		return s.err
	}
	s.admin(b, func(done func(error)) { b.core.Primary(false, done) })
	s.runUntil(s.now+2_000_000, func() bool { return b.core.State().Role == replication.RolePrimary })
	if b.core.State().Role != replication.RolePrimary && s.err == nil {
		s.fail("%s did not become the second primary: %s", b.name, b.core.State())
	}
	return s.err
}

// issueDual issues one request of a two-Primaries application: writes
// (1-3 blocks, some FUA) to the hot region and flushes.
func (s *Sim) issueDual(nd *node) bool {
	a := nd.app
	d := s.dual
	if s.rng.Intn(10) == 0 {
		a.nextID++
		id := a.nextID
		if err := nd.core.Propose(replication.Request{ID: id, Op: replication.OpFlush}); err != nil {
			s.logf("%s: propose flush: %v", nd.name, err)
			return false
		}
		a.inflight[id] = &appReq{op: replication.OpFlush}
		s.res.Flushes++
		s.pump(nd)
		return true
	}
	n := int64(1 + s.rng.Intn(3))
	first := s.opt.DualBase + s.rng.Int63n(dualHot-n+1)
	for b := first; b < first+n; b++ {
		if d.busy[nd.id][b] && !s.opt.DualOverlap {
			return false // one write of this node per block at a time
		}
	}
	s.model.version++
	q := &appReq{op: replication.OpWrite, off: first * blk, length: n * blk, version: s.model.version}
	q.data = pattern(q.version, q.length)
	a.nextID++
	id := a.nextID
	req := replication.Request{ID: id, Op: q.op, Offset: q.off, Length: q.length, Data: q.data, FUA: s.rng.Intn(8) == 0}
	if err := nd.core.Propose(req); err != nil {
		s.logf("%s: propose write: %v", nd.name, err)
		return false
	}
	d.clock++
	var ws []*dualWrite
	for b := first; b < first+n; b++ {
		d.busy[nd.id][b] = true
		w := &dualWrite{version: q.version, node: nd.id, issued: d.clock}
		d.writes[b] = append(d.writes[b], w)
		ws = append(ws, w)
	}
	d.byReq[[2]uint64{uint64(nd.id), id}] = ws
	a.inflight[id] = q
	s.res.Writes++
	s.logf("%s: app write id=%d blocks %d..%d v%d", nd.name, id, first, first+n-1, q.version)
	s.pump(nd)
	return true
}

// dualCompleted records the completion of a two-Primaries request.
func (s *Sim) dualCompleted(nd *node, id uint64, q *appReq, err error) {
	if q.op != replication.OpWrite {
		return
	}
	d := s.dual
	d.clock++
	key := [2]uint64{uint64(nd.id), id}
	for _, w := range d.byReq[key] {
		w.completed = d.clock
		w.failed = err != nil
	}
	delete(d.byReq, key)
	for b := q.off / blk; b < (q.off+q.length)/blk; b++ {
		delete(d.busy[nd.id], b) // (with DualOverlap only a hint)
	}
	if err != nil {
		s.fail("%s: write v%d failed with both nodes up: %v", nd.name, q.version, err)
	}
}

// checkLastWriter: LAST WRITER WINS (see above), on the converged disks.
func (s *Sim) checkLastWriter() {
	d := s.dual
	blocks := make([]int64, 0, len(d.writes))
	for b := range d.writes {
		blocks = append(blocks, b)
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	for _, b := range blocks {
		ws := d.writes[b]
		var lastIssue uint64
		for _, w := range ws {
			lastIssue = max(lastIssue, w.issued)
		}
		got, ok := versionOf(s.nodes[0].disk.read(b*blk, blk))
		if !ok {
			s.fail("block %d torn", b)
			return
		}
		var allowed []uint64
		for _, w := range ws {
			if w.completed == 0 {
				s.fail("block %d: write v%d of n%d never completed", b, w.version, w.node)
				return
			}
			// No write to the block was issued after w completed.
			if w.completed > lastIssue {
				allowed = append(allowed, w.version)
				if w.version == got {
					allowed = nil
					break
				}
			}
		}
		if allowed != nil {
			s.fail("block %d holds v%d, but the last writes to it were %v (a lost update)", b, got, allowed)
			return
		}
	}
}
