package sim

import (
	"fmt"
	"sort"

	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
)

// ---- the model of what the application was promised ----

// model tracks what the application was promised, per 4 KiB block, with
// block-device semantics: an acknowledged write is visible to later reads;
// it is durable only once a FLUSH completed after it (or it was written
// with FUA). A power cut may roll a block back to any version written
// since its last durable one. The workload never has two writes to one
// block in flight.
type model struct {
	acked    map[int64]uint64
	inflight map[int64]uint64
	reading  map[int64]int // reads in flight per block
	// mayHave: versions a block may hold after crashes: its durable
	// version and every version written since.
	mayHave map[int64]map[uint64]bool
	// order: the versions of mayHave in the order they were written.
	order map[int64][]uint64
	// inflightAtCrash: versions in flight when the Primary crashed (the
	// survivor may or may not have them).
	inflightAtCrash map[int64]uint64
	version         uint64
	crashed         bool // any node lost its volatile cache so far
}

func newModel(size int64) *model {
	return &model{acked: map[int64]uint64{}, inflight: map[int64]uint64{}, reading: map[int64]int{}, mayHave: map[int64]map[uint64]bool{}, order: map[int64][]uint64{}, inflightAtCrash: map[int64]uint64{}}
}

// written records a write being issued.
func (m *model) written(b int64, v uint64) {
	m.inflight[b] = v
	if m.mayHave[b] == nil {
		m.mayHave[b] = map[uint64]bool{m.acked[b]: true}
		m.order[b] = []uint64{m.acked[b]}
	}
	m.mayHave[b][v] = true
	m.order[b] = append(m.order[b], v)
}

// durable records that version v of block b is durable: the block can no
// longer roll back to a version written before v. Order of issue, not the
// version numbers, decides what is older: a write-zeroes is version 0 and
// may come after any other write. (Version 0 can be written more than
// once; its first write counts, which keeps more versions allowed, never
// fewer.)
func (m *model) durable(b int64, v uint64) {
	order := m.order[b]
	at := -1
	for i, x := range order {
		if x == v {
			at = i
			break
		}
	}
	if at < 0 {
		m.mayHave[b] = map[uint64]bool{v: true}
		m.order[b] = []uint64{v}
		return
	}
	order = order[at:]
	set := map[uint64]bool{}
	for _, x := range order {
		set[x] = true
	}
	m.mayHave[b] = set
	m.order[b] = order
}

// flushed: a FLUSH completed; every write acknowledged before it was
// issued (the caller passes those blocks and versions) is durable.
func (m *model) flushed(blocks map[int64]uint64) {
	for b, v := range blocks {
		m.durable(b, v)
	}
}

// allowed reports whether block b may hold version v now.
func (m *model) allowed(b int64, v uint64) bool {
	if v == m.acked[b] {
		return true
	}
	if !m.crashed {
		return false
	}
	set, ok := m.mayHave[b]
	return ok && set[v]
}

// app is the application on the Primary: random reads, writes (some FUA),
// flushes, trims, up to QueueDepth in flight.
type app struct {
	// sinceFlush: blocks acknowledged since the last flush was issued,
	// with the version acknowledged.
	sinceFlush map[int64]uint64
	nextID     uint64
	inflight   map[uint64]*appReq
	stopped    bool
}

type appReq struct {
	op      replication.Op
	off     int64
	length  int64
	version uint64
	data    []byte
	// connected: replicated to an UpToDate peer when issued.
	connected bool
	fua       bool
	// covers: for a flush, the blocks (and versions) acknowledged before
	// it was issued.
	covers map[int64]uint64
}

func (s *Sim) startApp(nd *node) {
	nd.app = &app{inflight: map[uint64]*appReq{}, sinceFlush: map[int64]uint64{}}
	s.appTick(nd)
}

// appTick issues new requests and reschedules itself.
func (s *Sim) appTick(nd *node) {
	a := nd.app
	if a == nil || a.stopped || !nd.alive || nd.core.State().Role != replication.RolePrimary {
		return
	}
	if s.dual != nil && s.dualQuietPhase() {
		s.dualQuietCheck()
		s.on(nd, s.lat(500, 5000), func() { s.appTick(nd) })
		return
	}
	for len(a.inflight) < s.opt.QueueDepth {
		if !s.issue(nd) {
			break
		}
	}
	s.on(nd, s.lat(500, 5000), func() { s.appTick(nd) })
}

func (s *Sim) issue(nd *node) bool {
	if s.dual != nil {
		return s.issueDual(nd)
	}
	a := nd.app
	m := s.model
	blocks := int64(s.dataSectors) * 512 / blk
	r := s.rng.Intn(100)
	var q *appReq
	switch {
	case r < 10:
		q = &appReq{op: replication.OpFlush}
	case r < 25:
		n := int64(1 + s.rng.Intn(16))
		off := s.rng.Int63n(blocks-n) * blk
		for b := off / blk; b < off/blk+n; b++ {
			if _, busy := m.inflight[b]; busy {
				return false
			}
		}
		q = &appReq{op: replication.OpRead, off: off, length: n * blk, data: make([]byte, n*blk)}
		for b := off / blk; b < off/blk+n; b++ {
			m.reading[b]++
		}
	default:
		n := int64(1 + s.rng.Intn(8))
		// Writes cluster in a few extents to make the AL hot, plus some
		// random ones to force evictions.
		var off int64
		if s.rng.Intn(4) == 0 {
			off = s.rng.Int63n(blocks-n) * blk
		} else {
			ext := int64(s.rng.Intn(4))
			off = min(ext*(replication.ExtentSize/blk)+s.rng.Int63n(replication.ExtentSize/blk), blocks-n) * blk
		}
		for b := off / blk; b < off/blk+n; b++ {
			if _, busy := m.inflight[b]; busy || m.reading[b] > 0 {
				return false
			}
		}
		m.version++
		q = &appReq{op: replication.OpWrite, off: off, length: n * blk, version: m.version}
		if s.rng.Intn(10) == 0 {
			q.op = replication.OpWriteZeroes
			q.version = 0
		}
		for b := off / blk; b < off/blk+n; b++ {
			m.written(b, q.version)
		}
	}
	a.nextID++
	id := a.nextID
	req := replication.Request{ID: id, Op: q.op, Offset: q.off, Length: q.length}
	switch q.op {
	case replication.OpWrite:
		q.data = pattern(q.version, q.length)
		req.Data = q.data
		req.FUA = s.rng.Intn(8) == 0
		q.fua = req.FUA
		s.res.Writes++
	case replication.OpRead:
		req.Data = q.data
		s.res.Reads++
	case replication.OpFlush:
		s.res.Flushes++
		q.covers = a.sinceFlush
		a.sinceFlush = map[int64]uint64{}
	}
	st := nd.core.State()
	q.connected = st.Conn >= replication.Connected && st.PDsk == replication.UpToDate
	if err := nd.core.Propose(req); err != nil {
		s.logf("%s: propose %v: %v", nd.name, q.op, err)
		s.unmarkInflight(q)
		return false
	}
	a.inflight[id] = q
	s.logf("%s: app %v id=%d blocks %d..%d v%d", nd.name, q.op, id, q.off/blk, (q.off+q.length)/blk-1, q.version)
	s.pump(nd)
	return true
}

func (s *Sim) unmarkInflight(q *appReq) {
	if q.op == replication.OpRead {
		for b := q.off / blk; b < (q.off+q.length)/blk; b++ {
			if s.model.reading[b]--; s.model.reading[b] <= 0 {
				delete(s.model.reading, b)
			}
		}
		return
	}
	if q.op != replication.OpWrite && q.op != replication.OpWriteZeroes {
		return
	}
	for b := q.off / blk; b < (q.off+q.length)/blk; b++ {
		delete(s.model.inflight, b)
	}
}

// completed checks and records an application completion.
func (a *app) completed(s *Sim, nd *node, c replication.Completion) {
	q, ok := a.inflight[c.ID]
	if !ok {
		s.fail("%s: completion for unknown request %d", nd.name, c.ID)
		return
	}
	delete(a.inflight, c.ID)
	s.logf("%s: app done id=%d %v blocks %d..%d v%d err=%v", nd.name, c.ID, q.op, q.off/blk, (q.off+q.length)/blk-1, q.version, c.Err)
	if s.dual != nil {
		s.dualCompleted(nd, c.ID, q, c.Err)
		return
	}
	m := s.model
	switch q.op {
	case replication.OpWrite, replication.OpWriteZeroes:
		s.unmarkInflight(q)
		if c.Err != nil {
			s.logf("%s: write %d failed: %v", nd.name, c.ID, c.Err)
			return
		}
		for b := q.off / blk; b < (q.off+q.length)/blk; b++ {
			m.acked[b] = q.version
			a.sinceFlush[b] = q.version
			if q.fua {
				m.durable(b, q.version)
			}
		}
		// ACK AFTER BOTH DISKS: under protocol C, a write acknowledged
		// while the peer is connected and UpToDate is on the peer's disk.
		st := nd.core.State()
		peer := s.other(nd)
		if s.opt.Protocol == replication.ProtocolC && q.connected && st.Conn >= replication.Connected && st.PDsk == replication.UpToDate && peer.alive {
			got := peer.disk.read(q.off, q.length)
			for i := int64(0); i < q.length; i += blk {
				if v, ok := versionOf(got[i : i+blk]); !ok || v != q.version {
					s.fail("%s: write v%d at block %d acknowledged, but the peer's disk has v%d", nd.name, q.version, (q.off+i)/blk, v)
					return
				}
			}
		}
	case replication.OpFlush:
		if c.Err == nil {
			m.flushed(q.covers)
		}
	case replication.OpRead:
		s.unmarkInflight(q)
		if c.Err != nil {
			return
		}
		for i := int64(0); i < q.length; i += blk {
			b := (q.off + i) / blk
			v, ok := versionOf(q.data[i : i+blk])
			if !ok || !m.allowed(b, v) {
				s.fail("%s: read of block %d returned v%d (ok=%v), acked v%d", nd.name, b, v, ok, m.acked[b])
				return
			}
		}
	}
}

// ---- epoch order on the receiving node ----

// epochTracker follows the P_DATA and P_BARRIER packets a node receives
// and checks that its disk writes respect epoch order: no write of epoch
// n+1 is issued before every write of epoch n completed and (the sim's
// nodes run with disk-flushes) a flush issued after the last of them
// completed.
type epochTracker struct {
	gen       int
	minEpoch  int
	epoch     int
	byOffset  map[int64][]*trackedWrite
	perEpoch  map[int]int // writes not yet completed per epoch
	issuedMap map[uint64]*trackedWrite
	// Flushes are numbered 1, 2, ... as issued; a flush covers the writes
	// completed before it was issued. lastDone[e] is the number of flushes
	// issued when epoch e's latest write completed: e is durable once a
	// flush numbered above that completed (flushedUpTo is the highest).
	flushes     int
	flushedUpTo int
	lastDone    map[int]int
}

type trackedWrite struct {
	epoch int
	off   int64
	key   string // offset, length and first bytes: tells it from a resync write
	gen   int    // the connection it came over
}

func writeKey(off int64, data []byte) string {
	head := data
	if len(head) > 8 {
		head = head[:8]
	}
	return fmt.Sprintf("%d/%d/%x", off, len(data), head)
}

func newEpochTracker() *epochTracker {
	return &epochTracker{byOffset: map[int64][]*trackedWrite{}, perEpoch: map[int]int{}, issuedMap: map[uint64]*trackedWrite{}, lastDone: map[int]int{}}
}

func (t *epochTracker) sent(d *protocol.Data, gen int) {
	if gen != t.gen {
		t.newConnection(gen)
	}
	w := &trackedWrite{epoch: t.epoch, off: int64(d.Sector) * 512, gen: gen, key: writeKey(int64(d.Sector)*512, d.Payload)}
	t.byOffset[w.off] = append(t.byOffset[w.off], w)
	t.perEpoch[t.epoch]++
}

func (t *epochTracker) barrier(*protocol.Barrier) { t.epoch++ }

// newConnection forgets the writes of an earlier connection that were
// never issued: the receiver dropped them with the connection. Epochs are
// only ordered within one connection.
func (t *epochTracker) newConnection(gen int) {
	t.gen = gen
	t.epoch++
	for off, ws := range t.byOffset {
		for _, w := range ws {
			t.perEpoch[w.epoch]--
			if t.perEpoch[w.epoch] == 0 {
				delete(t.perEpoch, w.epoch)
			}
		}
		delete(t.byOffset, off)
	}
	t.minEpoch = t.epoch
}

func (t *epochTracker) issued(s *Sim, nd *node, op replication.DiskOp) {
	if op.Op != replication.OpWrite || nd.core.State().Role == replication.RolePrimary {
		return
	}
	ws := t.byOffset[op.Offset]
	k := writeKey(op.Offset, op.Data)
	idx := -1
	for i, x := range ws {
		if x.key == k {
			idx = i
			break
		}
	}
	if idx < 0 {
		return // a resync write
	}
	w := ws[idx]
	t.byOffset[op.Offset] = append(ws[:idx:idx], ws[idx+1:]...)
	for e := range t.perEpoch {
		if e >= t.minEpoch && e < w.epoch && t.perEpoch[e] > 0 {
			var pend []string
			for off, ws := range t.byOffset {
				for _, x := range ws {
					if x.epoch == e {
						pend = append(pend, fmt.Sprintf("block %d (not issued)", off/blk))
					}
				}
			}
			for id, x := range t.issuedMap {
				if x.epoch == e {
					pend = append(pend, fmt.Sprintf("block %d (op %d)", x.off/blk, id))
				}
			}
			s.fail("%s: write of epoch %d (block %d) issued while epoch %d has %d writes in flight: %v", nd.name, w.epoch, op.Offset/blk, e, t.perEpoch[e], pend)
		}
	}
	for e, k := range t.lastDone {
		if e >= t.minEpoch && e < w.epoch && k >= t.flushedUpTo {
			s.fail("%s: write of epoch %d (block %d) issued before epoch %d was flushed (its last write completed after %d flushes were issued, %d completed)", nd.name, w.epoch, op.Offset/blk, e, k, t.flushedUpTo)
		}
	}
	t.issuedMap[op.ID] = w
}

func (t *epochTracker) completed(nd *node, op replication.DiskOp) {
	if w, ok := t.issuedMap[op.ID]; ok {
		delete(t.issuedMap, op.ID)
		if !op.FUA {
			t.lastDone[w.epoch] = t.flushes
		}
		t.perEpoch[w.epoch]--
		if t.perEpoch[w.epoch] == 0 {
			delete(t.perEpoch, w.epoch)
		}
	}
}

// flushIssued numbers a flush issued on the node.
func (t *epochTracker) flushIssued() int {
	t.flushes++
	return t.flushes
}

// flushDone: flush k completed; epochs it covers are durable.
func (t *epochTracker) flushDone(k int) {
	t.flushedUpTo = max(t.flushedUpTo, k)
	for e, last := range t.lastDone {
		if last < t.flushedUpTo {
			delete(t.lastDone, e)
		}
	}
}

// ---- the run ----

// Run executes the scenario and returns the first invariant violation.
func (s *Sim) Run() (Result, error) {
	a, b := s.nodes[0], s.nodes[1]
	s.boot(a)
	s.boot(b)
	s.runUntil(s.now+2_000_000, func() bool { return s.connUp && bothConnected(a, b) })
	if s.err != nil {
		return s.res, s.err
	}
	if !bothConnected(a, b) {
		return s.res, fmt.Errorf("seed %d: nodes did not connect: %s / %s", s.opt.Seed, a.core.State(), b.core.State())
	}
	if s.opt.SkipInitialSync {
		s.admin(a, func(done func(error)) { a.core.NewCurrentUUID(true, done) })
		s.runUntil(s.now+2_000_000, func() bool { return upToDate(a) && upToDate(b) })
		s.admin(a, func(done func(error)) { a.core.Primary(false, done) })
	} else {
		s.admin(a, func(done func(error)) { a.core.Primary(true, done) })
	}
	s.runUntil(s.now+2_000_000, func() bool { return a.core.State().Role == replication.RolePrimary })
	if s.err != nil {
		return s.res, s.err
	}
	if a.core.State().Role != replication.RolePrimary {
		return s.res, fmt.Errorf("seed %d: %s did not become primary: %s", s.opt.Seed, a.name, a.core.State())
	}
	s.startApp(a)
	if s.opt.TwoPrimaries {
		if err := s.promoteSecond(); err != nil {
			return s.res, err
		}
		s.startApp(b)
	}
	end := s.now + s.opt.Duration
	if s.opt.Faults {
		s.scheduleFaults(end)
	}
	s.after(end-s.now, func() { s.stopApp() })
	s.runUntil(end, func() bool { return false })
	if s.err != nil {
		return s.res, s.err
	}
	// Heal and converge.
	s.healing = true
	s.heal()
	s.runUntil(s.now+600_000_000, func() bool { return s.converged() })
	if s.err != nil {
		return s.res, s.err
	}
	if !s.converged() {
		return s.res, fmt.Errorf("seed %d: did not converge: %s / %s (oos %d / %d)", s.opt.Seed,
			s.state(a), s.state(b), a.core.OutOfSync(), b.core.OutOfSync())
	}
	s.checkConverged()
	s.res.TicksRun = s.now / tickUS
	return s.res, s.err
}

func (s *Sim) state(nd *node) string {
	if !nd.alive {
		return "dead"
	}
	return nd.core.State().String()
}

func bothConnected(a, b *node) bool {
	return a.alive && b.alive && a.core.State().Conn >= replication.Connected && b.core.State().Conn >= replication.Connected
}

func upToDate(nd *node) bool {
	st := nd.core.State()
	return st.Disk == replication.UpToDate && st.PDsk == replication.UpToDate && st.Conn == replication.Connected
}

// admin runs an admin command and fails the run if it fails.
func (s *Sim) admin(nd *node, f func(done func(error))) {
	f(func(err error) {
		if err != nil {
			s.fail("%s: admin command failed: %v", nd.name, err)
		}
	})
	s.pump(nd)
}

// runUntil processes events until cond holds or the time limit passes.
// Ticks are delivered to both nodes every 100 ms.
func (s *Sim) runUntil(limit int64, cond func() bool) {
	for s.err == nil && !cond() {
		if len(s.q) == 0 || s.q[0].at > limit {
			// Advance to the next tick.
			next := (s.now/tickUS + 1) * tickUS
			if next > limit {
				return
			}
			s.now = next
			s.tick()
			continue
		}
		e := heapPop(&s.q)
		nextTick := (s.now/tickUS + 1) * tickUS
		if e.at >= nextTick {
			s.now = nextTick
			s.tick()
			// put e back
			s.pushEvent(e)
			continue
		}
		s.now = e.at
		e.fn()
		if s.events++; s.events > maxEvents {
			s.fail("runaway: more than %d events (livelock?)", maxEvents)
		}
	}
}

// maxEvents bounds one run: a livelock fails the seed instead of hanging.
const maxEvents = 20_000_000

func (s *Sim) tick() {
	for _, nd := range s.nodes {
		if nd.alive {
			nd.core.Tick()
			s.pump(nd)
		}
	}
}

func (s *Sim) stopApp() {
	for _, nd := range s.nodes {
		if nd.app != nil {
			nd.app.stopped = true
		}
	}
}

// scheduleFaults plans network failures and crashes during the workload.
func (s *Sim) scheduleFaults(end int64) {
	n := 1 + s.rng.Intn(3)
	for i := 0; i < n; i++ {
		at := s.rng.Int63n(end - s.now)
		switch s.rng.Intn(3) {
		case 0:
			dur := s.lat(100_000, 3_000_000)
			s.after(at, func() { s.partition(dur) })
		case 1:
			s.after(at, func() { s.breakConnection("connection reset") })
		case 2:
			victim := s.rng.Intn(2)
			dur := s.lat(500_000, 5_000_000)
			s.after(at, func() { s.crash(s.nodes[victim], dur) })
		}
	}
}

func (s *Sim) partition(dur int64) {
	if s.healing {
		return
	}
	s.res.Partitions++
	s.logf("network partition for %dus", dur)
	s.partitioned = true
	s.breakConnection("network partition")
	s.after(dur, func() {
		s.partitioned = false
		s.maybeConnect()
	})
}

// crash is a power cut of nd; it reboots after dur. If it was the
// Primary, the survivor is promoted (as Heartbeat would).
func (s *Sim) crash(nd *node, dur int64) {
	if !nd.alive || s.healing {
		return
	}
	peer := s.other(nd)
	if !peer.alive {
		return // keep it to single failures
	}
	s.res.Crashes++
	wasPrimary := nd.core.State().Role == replication.RolePrimary
	s.logf("%s: CRASH (primary=%v)", nd.name, wasPrimary)
	nd.alive = false
	nd.gen++
	nd.disk.crashSorted(s.rng)
	s.model.crashed = true
	s.model.inflightAtCrash = map[int64]uint64{}
	for b, v := range s.model.inflight {
		s.model.inflightAtCrash[b] = v
	}
	if nd.app != nil {
		for _, q := range nd.app.inflight {
			s.unmarkInflight(q)
		}
		nd.app = nil
	}
	st := nd.core.State()
	peerInSync := st.Conn >= replication.Connected && st.PDsk == replication.UpToDate
	s.breakConnection("peer crashed")
	// Fail over only when the survivor had every write (DRBD with
	// resource fencing would refuse otherwise; that is a double failure).
	// A Primary may crash while its peer is not in sync (disconnected, or
	// back from an earlier crash but not resynced): its disk still holds
	// the data, the peer is fenced (Sim.fenced), and the cluster waits for
	// the crashed node instead of promoting the stale one.
	if wasPrimary && peerInSync {
		s.after(s.lat(200_000, 1_000_000), func() { s.failover(peer) })
	}
	s.after(dur, func() {
		if nd.alive {
			return // the heal phase rebooted it already
		}
		s.logf("%s: reboot", nd.name)
		s.boot(nd)
	})
}

// failover promotes the survivor and checks it has every acknowledged
// write: NO SINGLE FAILURE LOSES AN ACKNOWLEDGED WRITE.
func (s *Sim) failover(nd *node) {
	if !nd.alive || s.healing {
		return
	}
	if o := s.other(nd); o.alive && o.core.State().Role == replication.RolePrimary {
		return // the old primary is back and primary again
	}
	st := nd.core.State()
	if st.Disk != replication.UpToDate {
		s.logf("%s: cannot fail over, disk %s", nd.name, st.Disk)
		return
	}
	if s.fenced[nd.id] {
		s.logf("%s: cannot fail over, fenced", nd.name)
		return
	}
	if st.Conn >= replication.Connected {
		return // the old primary is back already
	}
	s.res.Failovers++
	s.checkDurable(nd)
	s.admin(nd, func(done func(error)) { nd.core.Primary(false, done) })
	if nd.core.State().Role == replication.RolePrimary {
		s.startApp(nd)
	}
}

// checkDurable is the failover check: the survivor, which was connected
// and UpToDate when the Primary crashed, holds every acknowledged write
// (in its cache or on disk) or a write that was in flight at the crash.
// NO SINGLE FAILURE LOSES AN ACKNOWLEDGED WRITE.
func (s *Sim) checkDurable(nd *node) {
	if s.opt.Protocol == replication.ProtocolA {
		return // protocol A completes before the peer has the write
	}
	m := s.model
	for _, b := range sortedBlocks(m.acked) {
		v := m.acked[b]
		got, ok := versionOf(nd.disk.read(b*blk, blk))
		if !ok {
			s.fail("%s: block %d torn after failover", nd.name, b)
			return
		}
		if got != v && m.inflightAtCrash[b] != got {
			s.fail("%s: block %d has v%d after failover, acknowledged v%d", nd.name, b, got, v)
			return
		}
	}
}

// checkPromises: every block holds a version the application may see:
// the acknowledged one, or after crashes one written since the block's
// last durable version.
func (s *Sim) checkPromises(nd *node) {
	m := s.model
	for _, b := range sortedBlocks(m.acked) {
		got, ok := versionOf(nd.disk.read(b*blk, blk))
		if !ok || !m.allowed(b, got) {
			s.fail("%s: block %d has v%d (whole=%v), acknowledged v%d, durable set %v", nd.name, b, got, ok, m.acked[b], m.mayHave[b])
			return
		}
	}
}

func sortedBlocks(m map[int64]uint64) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// heal ends all faults: reboot dead nodes, reconnect.
func (s *Sim) heal() {
	s.partitioned = false
	for _, nd := range s.nodes {
		if !nd.alive {
			s.boot(nd)
		}
	}
	// Exactly one Primary (the app's).
	a, b := s.nodes[0], s.nodes[1]
	if a.core.State().Role != replication.RolePrimary && b.core.State().Role != replication.RolePrimary {
		// Nobody is primary (failover impossible): promote the one with
		// the data, as the cluster manager does: never a fenced node (it
		// thinks itself UpToDate but misses what the last Primary wrote
		// without it; promoting it would make a split brain of a double
		// failure). With no candidate, nobody is promoted and the nodes
		// sync by their UUIDs.
		for _, nd := range s.nodes {
			if s.fenced[nd.id] {
				s.logf("%s: not promoted, fenced", nd.name)
				continue
			}
			if nd.core.State().Disk == replication.UpToDate {
				s.admin(nd, func(done func(error)) { nd.core.Primary(false, done) })
				break
			}
		}
	}
	s.maybeConnect()
}

func (s *Sim) converged() bool {
	a, b := s.nodes[0], s.nodes[1]
	if !upToDate(a) || !upToDate(b) {
		return false
	}
	for _, nd := range s.nodes {
		if nd.app != nil && len(nd.app.inflight) > 0 {
			return false
		}
		st := nd.core.Stats()
		if st.LO != 0 || st.PE != 0 || st.UA != 0 || st.AP != 0 {
			return false
		}
	}
	return true
}

// checkConverged: PEERS CONVERGE BYTE FOR BYTE, and UpToDate means no
// out-of-sync bits; the data is what the application was promised.
func (s *Sim) checkConverged() {
	a, b := s.nodes[0], s.nodes[1]
	for _, nd := range s.nodes {
		if oos := nd.core.OutOfSync(); oos != 0 {
			s.fail("%s: UpToDate/UpToDate but %d bytes out of sync", nd.name, oos)
			return
		}
	}
	for _, off := range s.touchedBlocks() {
		x, y := a.disk.read(off, blk), b.disk.read(off, blk)
		if string(x) != string(y) {
			vx, _ := versionOf(x)
			vy, _ := versionOf(y)
			s.fail("disks differ at block %d: %s has v%d, %s has v%d", off/blk, a.name, vx, b.name, vy)
			return
		}
	}
	primary := a
	if b.core.State().Role == replication.RolePrimary {
		primary = b
	}
	s.checkPromises(primary)
	if s.dual != nil {
		s.checkLastWriter()
	}
	ua, _ := a.core.UUIDs()
	ub, _ := b.core.UUIDs()
	if ua[0]&^1 != ub[0]&^1 {
		s.fail("current UUIDs differ after convergence: %X / %X", ua[0], ub[0])
	}
}

// touchedBlocks are the byte offsets of blocks either disk ever held.
func (s *Sim) touchedBlocks() []int64 {
	seen := map[int64]bool{}
	for _, nd := range s.nodes {
		for b := range nd.disk.durable {
			seen[b] = true
		}
		for b := range nd.disk.volatile {
			seen[b] = true
		}
	}
	out := make([]int64, 0, len(seen))
	for b := range seen {
		out = append(out, b*blk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
