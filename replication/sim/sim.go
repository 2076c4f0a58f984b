package sim

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"math/rand"
	"sort"
	"strings"

	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/protocol"
	"github.com/gdrbd/gdrbd/replication"
)

// Options select one simulated run. Everything random in a run comes from
// Seed: the same Options reproduce the same run, event for event.
type Options struct {
	Seed     int64
	Protocol replication.Protocol
	// DiskSize of each node's data disk (bytes, a multiple of 4 KiB).
	DiskSize int64
	// ALExtents is the activity log size (small values exercise eviction).
	ALExtents int
	// Duration of the workload phase in simulated microseconds.
	Duration int64
	// Faults enables network resets, partitions and node crashes.
	Faults bool
	// SkipInitialSync starts with new-current-uuid --clear-bitmap instead
	// of primary --force and a full initial sync.
	SkipInitialSync bool
	// QueueDepth is how many application requests are in flight at most.
	QueueDepth int
	// Trace keeps a log of every event (printed when a run fails).
	Trace bool
	// Tweak, when set, adjusts each node's configuration (scenario tests).
	Tweak func(node int, c *replication.Config)
	// TwoPrimaries: allow-two-primaries, both nodes Primary and writing
	// the same blocks (dual.go); protocol C, no faults. DualBase is the
	// first block of the hot region; DualOverlap lets one node have
	// several writes in flight to a block.
	TwoPrimaries bool
	DualBase     int64
	DualOverlap  bool
}

// Result summarises a run.
type Result struct {
	Writes, Reads, Flushes int
	Crashes, Partitions    int
	Failovers              int
	Resyncs                int
	TicksRun               int64
	// Superseded, Retried: P_SUPERSEDED / P_RETRY_WRITE answers sent
	// (two Primaries).
	Superseded, Retried int
}

// Sim is one simulated two-node cluster. Not safe for concurrent use.
type Sim struct {
	opt   Options
	rng   *rand.Rand
	now   int64 // microseconds
	q     eventQueue
	seq   uint64
	nodes [2]*node
	model *model
	res   Result
	err   error
	trace []string

	connGen     int  // incarnation of the connection between the nodes
	drainGen    int  // a connection closed by its sender: still delivers
	connUp      bool // both sockets established
	partitioned bool
	healing     bool  // faults stopped: converge
	rsBytes     int64 // resync payload bytes sent (P_RS_DATA_REPLY)
	events      int   // events processed
	// handlerExit is the exit code each drbd.conf handler returns.
	handlerExit map[string]int
	// allowSplitBrain: a scenario promotes both sides of a partition.
	allowSplitBrain bool
	layout          metadata.Layout
	dataSectors     uint64
	// streamTail is the delivery time of the last packet per node and
	// stream, so streams stay in order.
	streamTail [4]int64
	dual       *dualState // Options.TwoPrimaries
	// fenced models the cluster manager's fencing (DRBD's fencing
	// resource-only with crm-fence-peer / crm-unfence-peer): a node is
	// fenced from the moment a Primary runs without it connected and
	// UpToDate (it may miss acknowledged writes) until both nodes are
	// connected and UpToDate again. The cluster never promotes a fenced
	// node: doing so after the Primary also fails would be a double
	// failure turned into a split brain.
	fenced [2]bool
}

const tickUS = 100_000 // one core tick (100 ms) in microseconds

// node is one simulated machine: the core plus the driver's bookkeeping.
type node struct {
	id       int
	name     string
	core     *replication.Node
	disk     *simDisk
	md       *metaDev
	gen      int // incarnation; events of a dead incarnation are dropped
	alive    bool
	trying   bool // the core asked to connect
	app      *app
	received *epochTracker
}

// New builds a cluster for opt.
func New(opt Options) *Sim {
	if opt.DiskSize == 0 {
		opt.DiskSize = 64 << 20
	}
	if opt.ALExtents == 0 {
		opt.ALExtents = metadata.ALExtentsMin
	}
	if opt.Protocol == 0 {
		opt.Protocol = replication.ProtocolC
	}
	if opt.Duration == 0 {
		opt.Duration = 20_000_000
	}
	if opt.QueueDepth == 0 {
		opt.QueueDepth = 8
	}
	if opt.TwoPrimaries {
		opt.Protocol = replication.ProtocolC
		opt.Faults = false
	}
	s := &Sim{opt: opt, rng: rand.New(rand.NewSource(opt.Seed))}
	if opt.TwoPrimaries {
		s.dual = newDualState()
	}
	s.model = newModel(opt.DiskSize)
	layout, err := metadata.ComputeLayout(metadata.Internal(), opt.DiskSize, 1, 8)
	if err != nil {
		panic(err)
	}
	s.layout = layout
	s.dataSectors = uint64(layout.MDOffset+int64(layout.BMOffset)*512) / 512
	s.dataSectors &^= 7 // whole 4 KiB blocks keep the model simple
	for i := range s.nodes {
		s.nodes[i] = &node{id: i, name: fmt.Sprintf("n%d", i), disk: newSimDisk(opt.DiskSize), md: newMetaDev()}
		s.nodes[i].md.format(layout)
	}
	return s
}

func (s *Sim) cfg(nd *node) replication.Config {
	c := replication.DefaultConfig()
	c.Resource = "r0"
	c.Protocol = s.opt.Protocol
	c.ALExtents = s.opt.ALExtents
	c.ResyncRate = 100 << 10 // KiB/s
	c.CPlanAhead = 0
	c.MaxBuffers = 256
	c.MaxEpochSize = 16
	c.PingIntTicks = 10
	c.PingTimeoutTicks = 5
	c.Features = protocol.FeatureTrim | protocol.FeatureWZeroes
	c.AllowTwoPrimaries = s.opt.TwoPrimaries
	if s.opt.Tweak != nil {
		s.opt.Tweak(nd.id, &c)
	}
	return c
}

func (s *Sim) logf(format string, a ...any) {
	if s.opt.Trace {
		s.trace = append(s.trace, fmt.Sprintf("%10d %s", s.now, fmt.Sprintf(format, a...)))
	}
}

func (s *Sim) fail(format string, a ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("seed %d at t=%dus: %s", s.opt.Seed, s.now, fmt.Sprintf(format, a...))
		s.logf("INVARIANT VIOLATED: %v", s.err)
	}
}

// Trace returns the event log (Options.Trace).
func (s *Sim) Trace() string { return strings.Join(s.trace, "\n") }

// ---- event queue ----

type event struct {
	at  int64
	seq uint64
	fn  func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (s *Sim) after(d int64, fn func()) {
	s.seq++
	heap.Push(&s.q, &event{at: s.now + d, seq: s.seq, fn: fn})
}

// on schedules fn for a node's current incarnation only.
func (s *Sim) on(nd *node, d int64, fn func()) {
	gen := nd.gen
	s.after(d, func() {
		if nd.alive && nd.gen == gen {
			fn()
			s.pump(nd)
		}
	})
}

// ---- the driver ----

// boot starts (or restarts after a crash) a node: attach from its
// metadata, then connect.
func (s *Sim) boot(nd *node) {
	nd.gen++
	nd.alive = true
	nd.trying = false
	p, err := nd.md.load(s.layout, s.dataSectors, s.opt.ALExtents)
	if err != nil {
		s.fail("%s: load metadata: %v", nd.name, err)
		return
	}
	seed := s.rng.Int63()
	r := rand.New(rand.NewSource(seed))
	nd.core = replication.NewNode(s.cfg(nd), replication.Options{Rand: func() uint64 { return r.Uint64() &^ 1 }})
	nd.received = newEpochTracker()
	err = nd.core.Attach(p)
	if err != nil {
		s.fail("%s: attach: %v", nd.name, err)
		return
	}
	if err := nd.core.Connect(false); err != nil {
		s.fail("%s: connect: %v", nd.name, err)
	}
	s.logf("%s: booted %s", nd.name, nd.core.State())
	s.pump(nd)
}

// pump carries out everything the core asked for.
func (s *Sim) pump(nd *node) {
	for nd.alive && nd.core.HasReady() {
		rd := nd.core.Ready()
		metas := append([]replication.MetaWrite(nil), rd.MetaWrites...)
		ops := append([]replication.DiskOp(nil), rd.DiskOps...)
		msgs := append([]replication.Send(nil), rd.Messages...)
		comps := append([]replication.Completion(nil), rd.Completions...)
		handlers := append([]replication.Handler(nil), rd.Handlers...)
		evs := append([]replication.Event(nil), rd.Events...)
		netCmd := rd.Net
		nd.core.Advance()

		for _, e := range evs {
			if e.New != nil {
				s.logf("%s: %s -> %s", nd.name, e.Old, e.New)
				s.checkRoles()
				s.updateFencing()
			} else {
				s.logf("%s: %s", nd.name, e.Msg)
			}
		}
		for _, m := range metas {
			m := m
			s.on(nd, s.lat(20, 200), func() {
				nd.md.write(m.Offset, m.Data)
				nd.core.MetaDone(m.ID, nil)
			})
		}
		for _, op := range ops {
			s.diskOp(nd, op)
		}
		for _, m := range msgs {
			s.sendMsg(nd, m)
		}
		for _, h := range handlers {
			h := h
			s.logf("%s: handler %s", nd.name, h.Name)
			if h.Wait {
				code := s.handlerExit[h.Name]
				s.on(nd, s.lat(1000, 10_000), func() { nd.core.HandlerDone(h.ID, code) })
			}
		}
		for _, c := range comps {
			if nd.app != nil {
				nd.app.completed(s, nd, c)
			}
		}
		switch netCmd {
		case replication.NetConnect:
			nd.trying = true
			s.maybeConnect()
		case replication.NetReconnect:
			s.closeConnection(nd, "reconnect")
			nd.trying = true
			s.maybeConnect()
		case replication.NetDisconnect:
			s.closeConnection(nd, "disconnect")
			nd.trying = false
		}
	}
}

func (s *Sim) lat(lo, hi int) int64 { return int64(lo + s.rng.Intn(hi-lo+1)) }

// diskOp runs a local disk operation with a random latency.
func (s *Sim) diskOp(nd *node, op replication.DiskOp) {
	switch op.Op {
	case replication.OpWrite, replication.OpTrim, replication.OpWriteZeroes:
		data := op.Data
		if op.Op != replication.OpWrite {
			data = make([]byte, op.Length)
		}
		nd.received.issued(s, nd, op)
		if s.opt.Trace && op.Op == replication.OpWrite && len(data) >= blk {
			v, _ := versionOf(data[:blk])
			s.logf("%s: disk write op=%d blocks %d..%d v%d", nd.name, op.ID, op.Offset/blk, (op.Offset+op.Length)/blk-1, v)
		}
		s.on(nd, s.lat(50, 500), func() {
			nd.disk.write(op.Offset, data, op.FUA)
			nd.received.completed(nd, op)
			nd.core.DiskDone(op.ID, nil, nil)
		})
	case replication.OpRead:
		s.on(nd, s.lat(50, 300), func() {
			got := nd.disk.read(op.Offset, op.Length)
			if op.Data != nil {
				copy(op.Data, got)
				nd.core.DiskDone(op.ID, nil, nil)
			} else {
				nd.core.DiskDone(op.ID, nil, got)
			}
		})
	case replication.OpFlush:
		snap := nd.disk.flushSnapshot()
		k := nd.received.flushIssued()
		s.on(nd, s.lat(100, 1000), func() {
			nd.disk.applyFlush(snap)
			nd.received.flushDone(k)
			nd.core.DiskDone(op.ID, nil, nil)
		})
	default:
		s.fail("%s: unknown disk op %v", nd.name, op.Op)
	}
}

func (s *Sim) other(nd *node) *node { return s.nodes[1-nd.id] }

// sendMsg delivers a packet over the simulated connection: in order per
// stream, with latency, dropped if the connection is gone by then. The
// packet goes through the real encoder and decoder.
func (s *Sim) sendMsg(nd *node, m replication.Send) {
	if m.Token != 0 {
		tok := m.Token
		s.on(nd, 1, func() { nd.core.Sent(tok) })
	}
	if !s.connUp {
		return
	}
	peer := s.other(nd)
	gen := s.connGen
	msg := cloneMsg(m.Msg)
	if d, ok := msg.Packet.(*protocol.Data); ok && d.Cmd == protocol.CmdData {
		peer.received.sent(d, gen)
	}
	if d, ok := msg.Packet.(*protocol.Data); ok && d.Cmd == protocol.CmdRSDataReply {
		s.rsBytes += int64(len(d.Payload))
	}
	if b, ok := msg.Packet.(*protocol.Barrier); ok {
		peer.received.barrier(b)
	}
	if a, ok := msg.Packet.(*protocol.BlockAck); ok {
		switch a.Cmd {
		case protocol.CmdSuperseded:
			s.res.Superseded++
		case protocol.CmdRetryWrite:
			s.res.Retried++
		}
	}

	// Per-stream FIFO: deliveries are scheduled in send order with
	// non-decreasing times.
	key := nd.id*2 + int(m.Stream) - 1
	at := max(s.now+s.lat(30, 300), s.streamTail[key])
	s.streamTail[key] = at
	s.after(at-s.now, func() {
		// A connection closed by its sender (not broken) still delivers
		// what was sent before the close, as TCP does before its FIN.
		open := s.connGen == gen && s.connUp
		if (!open && gen != s.drainGen) || !peer.alive {
			return
		}
		if err := peer.core.Receive(m.Stream, msg); err != nil {
			s.logf("%s: receive %T: %v", peer.name, msg.Packet, err)
		}
		s.pump(peer)
	})
}

// cloneMsg copies packet structs (the network copies; the core may keep
// its own). Data payloads are not copied: their buffers stay untouched
// until the request they belong to completes.
func cloneMsg(m protocol.Message) protocol.Message {
	switch p := m.Packet.(type) {
	case *protocol.Data:
		c := *p
		m.Packet = &c
	case *protocol.Bitmap:
		c := *p
		c.Words = append([]uint64(nil), p.Words...)
		m.Packet = &c
	}
	return m
}

// maybeConnect establishes the connection when both nodes want it.
func (s *Sim) maybeConnect() {
	a, b := s.nodes[0], s.nodes[1]
	if s.connUp || s.partitioned || !a.alive || !b.alive || !a.trying || !b.trying {
		return
	}
	gen := s.connGen
	s.after(s.lat(1000, 50_000), func() {
		if s.connUp || s.partitioned || s.connGen != gen || !a.alive || !b.alive || !a.trying || !b.trying {
			return
		}
		s.connGen++
		s.connUp = true
		s.streamTail = [4]int64{}
		a.trying, b.trying = false, false
		// Writes of an earlier connection never delivered are gone.
		a.received.newConnection(s.connGen)
		b.received.newConnection(s.connGen)
		rc := s.rng.Intn(2) == 0
		s.logf("connection %d established", s.connGen)
		a.core.Connected(rc)
		b.core.Connected(!rc)
		s.pump(a)
		s.pump(b)
	})
}

// closeConnection drops the connection; the other node notices after a
// short delay (TCP reset).
func (s *Sim) closeConnection(nd *node, why string) {
	if !s.connUp {
		return
	}
	s.drainGen = s.connGen
	s.connUp = false
	s.connGen++
	peer := s.other(nd)
	s.logf("%s: closes connection (%s)", nd.name, why)
	// The peer sees the FIN after the last packet sent before it.
	last := max(s.streamTail[nd.id*2], s.streamTail[nd.id*2+1], s.now)
	s.on(peer, last-s.now+s.lat(100, 5000), func() { peer.core.Disconnected("connection reset by peer") })
}

// breakConnection drops the connection under both nodes (partition, crash).
func (s *Sim) breakConnection(why string) {
	if !s.connUp {
		return
	}
	s.drainGen = -1
	s.connUp = false
	s.connGen++
	s.logf("connection broken: %s", why)
	for _, nd := range s.nodes {
		nd := nd
		s.on(nd, s.lat(100, 20_000), func() { nd.core.Disconnected(why) })
	}
}

// updateFencing follows the nodes' states (after every state change) and
// sets or lifts the cluster manager's constraint on each node; see
// Sim.fenced.
func (s *Sim) updateFencing() {
	a, b := s.nodes[0], s.nodes[1]
	if upToDate(a) && upToDate(b) {
		for i := range s.fenced {
			if s.fenced[i] {
				s.logf("%s: unfenced (connected and UpToDate)", s.nodes[i].name)
				s.fenced[i] = false
			}
		}
		return
	}
	for _, nd := range s.nodes {
		if !nd.alive {
			continue
		}
		st := nd.core.State()
		peer := s.other(nd)
		if st.Role == replication.RolePrimary && !(st.Conn >= replication.Connected && st.PDsk == replication.UpToDate) && !s.fenced[peer.id] {
			s.logf("%s: fenced (Primary %s runs without it)", peer.name, nd.name)
			s.fenced[peer.id] = true
		}
	}
}

// checkRoles: never two Primaries.
func (s *Sim) checkRoles() {
	a, b := s.nodes[0], s.nodes[1]
	if !a.alive || !b.alive || a.core.State().Role != replication.RolePrimary || b.core.State().Role != replication.RolePrimary {
		return
	}
	// Split brain on purpose (a scenario promotes both sides of a
	// partition) is the admin's doing; two Primaries that know of each
	// other never are, unless allow-two-primaries.
	connected := a.core.State().Conn >= replication.Connected || b.core.State().Conn >= replication.Connected
	if connected && a.core.Config().AllowTwoPrimaries && b.core.Config().AllowTwoPrimaries {
		return // allowed
	}
	if !s.allowSplitBrain || (connected && !a.core.Config().AllowTwoPrimaries) {
		s.fail("two primaries")
	}
}

// ---- helpers for tests ----

func sortedKeys(m map[int64]*version) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// pattern fills a buffer with an identifiable pattern: the write's
// version in every 8 bytes.
func pattern(version uint64, n int64) []byte {
	b := make([]byte, n)
	if n < 8 {
		return b
	}
	binary.LittleEndian.PutUint64(b, version)
	for i := int64(8); i < n; i *= 2 {
		copy(b[i:], b[:i])
	}
	return b
}

// versionOf returns the version stored in a 4 KiB block (0 for zeroes),
// or false if the block is torn (mixed versions).
//
// It samples the first, a middle and the last word: writes are whole
// blocks in this model, so a torn block shows up at one of them.
func versionOf(b []byte) (uint64, bool) {
	v := binary.LittleEndian.Uint64(b)
	n := len(b) &^ 7
	for _, i := range [...]int{n/2 - 8, n - 8} {
		if i > 0 && binary.LittleEndian.Uint64(b[i:]) != v {
			return 0, false
		}
	}
	return v, true
}

var _ = bytes.Equal

func heapPop(q *eventQueue) *event { return heap.Pop(q).(*event) }

func (s *Sim) pushEvent(e *event) { heap.Push(&s.q, e) }
