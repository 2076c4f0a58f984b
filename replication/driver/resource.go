package driver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/nbd"
	"github.com/gdrbd/gdrbd/replication"
)

// ErrDown is returned by calls on a Resource whose event loop has stopped
// (after Down).
var ErrDown = errors.New("driver: resource is down")

// inboxSize bounds the completions and packets waiting for the loop; a
// goroutine that finds it full waits (the loop never does).
const inboxSize = 1024

// Resource runs one resource (its single volume) on this node.
//
// The core (replication.Node) is single-threaded: one event-loop
// goroutine owns it and every field marked loop-owned below. Everything
// else talks to the loop through its inbox:
//
//	admin calls ──┐                       ┌─► metadata writer ─┐
//	NBD requests ─┤                       ├─► disk workers ────┤
//	socket readers┼─► inbox ─► loop ─► Ready ─► socket writers ─┤
//	disk, meta,   │     ▲      (Node)     ├─► NBD completions   │
//	writers, tick ┘     └─────────────────┴─────────────────────┘
//
// A Resource is safe for concurrent use: every method may be called from
// any goroutine. Admin commands are serialised.
type Resource struct {
	opts   Options
	set    settings
	log    *zap.Logger
	devDir string // where LinkDRBD makes /dev/drbdN links ("/dev")
	// diskHook, when set before Attach (tests only), runs before every
	// DiskOp in the disk worker.
	diskHook func(replication.DiskOp)

	startOnce sync.Once
	quitOnce  sync.Once
	inbox     chan func()
	// loopMu is held while the core runs: by the loop goroutine, or by a
	// goroutine with a hot input that found nothing queued (runInline).
	// queued counts inputs posted and not yet run; running is set while
	// the loop goroutine exists (under loopMu).
	loopMu     sync.Mutex
	queued     atomic.Int64
	running    bool
	inlineRuns atomic.Int64 // inputs run by runInline (tests)
	// reaperPump: the AIO reaper runs this pump from its done callback
	// (set by the input, cleared at the pump's end; under loopMu): disk
	// ops go in with SubmitFromDone, so that an epoch's flush is run by
	// the reaper itself (blockdev: FLUSHES SUBMITTED FROM DONE).
	reaperPump bool
	// wokeWaiter: a pump completed a synchronous call (a goroutine waits
	// for it); the AIO reaper, having run that pump, yields to it.
	wokeWaiter atomic.Bool
	quit       chan struct{} // closed to stop the loop
	done       chan struct{} // closed when the loop has exited

	admin sync.Mutex // serialises admin commands (DRBD's state mutex)

	pool blockdev.BufferPool // payloads read from the peer, disk reads

	// Loop-owned.
	node         *replication.Node
	rand         func() uint64
	disk         *disk
	conn         *peerConn
	connector    *connector
	lastConnDone <-chan struct{}
	calls        map[uint64]*ioCall
	writes       map[uint64]replication.Request // writes proposed, not completed
	deferred     []piece                        // writes waiting for an overlapping one
	nextReq      uint64
	peerBufs     map[*byte]struct{}
	mdFlags      uint32
	lastError    string
	kernelInUse  bool
	autoTearing  bool
	usageProbe   bool
	ticks        uint64
	scratch      readyCopy

	// Shared with the socket readers and the NBD server.
	backlog     atomic.Int64
	resume      chan struct{}
	pauses      atomic.Int64 // times the data reader waited for max-buffers
	exportSize  atomic.Int64
	srv         atomic.Pointer[nbd.Server]
	kernelConns atomic.Int32

	// Calls started through nbd.AsyncBackend and not ended yet.
	asyncMu     sync.Mutex
	async       map[*ioCall]struct{}
	asyncClosed bool

	mu      sync.Mutex // guards changed, export, final
	changed chan struct{}
	export  *export
	final   *Status
}

// readyCopy holds what the loop took out of a Ready before Advance.
type readyCopy struct {
	metas []replication.MetaWrite
	ops   []replication.DiskOp
	msgs  []replication.Send
	comps []replication.Completion
	hs    []replication.Handler
	evs   []replication.Event
	// packets of this Ready per socket, until flushMsgs
	dataOut, metaOut []wItem
	sent             []uint64 // tokens of packets written inline
}

// New checks the configuration and returns a Resource. Nothing is opened
// or started until the first method call; Down releases everything.
func New(opts Options) (*Resource, error) {
	set, err := deriveSettings(opts.Config)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("resource", set.core.Resource), zap.Int("volume", set.core.Volume))
	if oc := opts.Config.Net.OnCongestion; oc != 0 && oc != config.CongestionBlock {
		// Parsed as drbdadm does, not acted on: say so rather than let a
		// user believe the Primary pulls ahead of a slow link.
		log.Warn("on-congestion is not implemented: writes wait for the link as with on-congestion block",
			zap.Stringer("on_congestion", oc))
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = cryptoRand
	}
	r := &Resource{
		opts:     opts,
		set:      set,
		log:      log,
		devDir:   "/dev",
		inbox:    make(chan func(), inboxSize),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		rand:     rnd,
		calls:    map[uint64]*ioCall{},
		async:    map[*ioCall]struct{}{},
		writes:   map[uint64]replication.Request{},
		peerBufs: map[*byte]struct{}{},
		nextReq:  1,
		resume:   make(chan struct{}, 1),
		changed:  make(chan struct{}),
	}
	r.node = replication.NewNode(set.core, replication.Options{Rand: rnd})
	return r, nil
}

func cryptoRand() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("driver: crypto/rand: %v", err))
	}
	return binary.LittleEndian.Uint64(b[:])
}

// ---- the event loop ----

func (r *Resource) ensureLoop() {
	r.startOnce.Do(func() { go r.run() })
}

// run is the event loop: one input at a time, then everything the core
// asks for is carried out (pump).
func (r *Resource) run() {
	defer close(r.done)
	t := time.NewTicker(tickMillis * time.Millisecond)
	defer t.Stop()
	r.loopMu.Lock()
	r.running = true
	r.loopMu.Unlock()
	for {
		select {
		case f := <-r.inbox:
			r.loopMu.Lock()
			f()
			r.queued.Add(-1)
			// Take everything else already waiting before pumping: the
			// core accumulates one Ready over several inputs, so a burst of
			// completions and packets costs one pump (one batch per writer
			// and per disk queue) instead of one each.
			for drained := false; !drained; {
				select {
				case f := <-r.inbox:
					f()
					r.queued.Add(-1)
				default:
					drained = true
				}
			}
		case <-t.C:
			r.loopMu.Lock()
			r.tick()
		case <-r.quit:
			r.loopMu.Lock()
			r.running = false
			st := r.snapshot()
			r.loopMu.Unlock()
			r.mu.Lock()
			r.final = &st
			r.mu.Unlock()
			return
		}
		r.pump()
		r.loopMu.Unlock()
	}
}

// post hands f to the loop; false when the loop is gone. true does not
// promise that f runs: a stop racing the post can end the loop with f
// still queued (the loop never runs inputs after it ended). An input
// that hands resources over goes through handOver.
func (r *Resource) post(f func()) bool {
	r.queued.Add(1)
	select {
	case r.inbox <- f:
		return true
	case <-r.done:
		r.queued.Add(-1)
		return false
	}
}

// handOver posts f, which takes ownership of something (the connector's
// sockets), and waits until the loop ran it or ended: when the loop ended
// without running it, release runs instead, so nothing is left open with
// nobody owning it.
func (r *Resource) handOver(f, release func()) {
	ran := make(chan struct{})
	if !r.post(func() { close(ran); f() }) {
		release()
		return
	}
	select {
	case <-ran:
	case <-r.done:
		select {
		case <-ran: // f ran before the loop ended
		default:
			release()
		}
	}
}

// runInline runs the input f and pumps on the calling goroutine, as the
// loop would, when the loop is idle and no input is waiting for it; false
// (f not run) otherwise: the caller posts it. Socket readers and the AIO
// reaper use it for the inputs a replicated write waits on (a packet, a
// disk completion), which saves a hand-off to the loop's thread: on a
// small machine each wake-up of another thread costs tens of
// microseconds, several per write.
//
// Order is kept: an input posted earlier by the same goroutine (still
// counted in queued) makes runInline refuse, so a goroutine's inputs run
// in the order it produced them, inline or not. The core is never run by
// two goroutines at once (loopMu), and never after the loop ended.
// f must not block: it and pump run with loopMu held, which the loop's
// own inputs wait for.
func (r *Resource) runInline(f func()) bool {
	if r.queued.Load() != 0 || !r.loopMu.TryLock() {
		return false
	}
	if !r.running || r.queued.Load() != 0 {
		r.loopMu.Unlock()
		return false
	}
	f()
	r.pump()
	r.loopMu.Unlock()
	r.inlineRuns.Add(1)
	return true
}

// call runs f on the loop and waits for it.
func (r *Resource) call(ctx context.Context, f func()) error {
	r.ensureLoop()
	ch := make(chan struct{})
	r.queued.Add(1)
	select {
	case r.inbox <- func() { f(); close(ch) }:
	case <-r.done:
		r.queued.Add(-1)
		return ErrDown
	case <-ctx.Done():
		r.queued.Add(-1)
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-r.done:
		return ErrDown
	}
}

// callErr runs f on the loop and returns its error.
func (r *Resource) callErr(ctx context.Context, f func() error) error {
	var err error
	if cerr := r.call(ctx, func() { err = f() }); cerr != nil {
		return cerr
	}
	return err
}

// callDone starts a core command that reports through a done callback
// (possibly after the peer answered) and waits for the result.
func (r *Resource) callDone(ctx context.Context, start func(done func(error))) error {
	res := make(chan error, 1)
	if err := r.call(ctx, func() { start(func(err error) { res <- err }) }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrDown
	}
}

func (r *Resource) tick() {
	r.ticks++
	r.node.Tick()
	if s := r.srv.Load(); s != nil {
		n := max(s.Connections()-int(r.kernelConns.Load()), 0)
		if r.kernelInUse {
			n++
		}
		r.node.SetOpenCount(n)
		// Who holds /dev/nbdX is costly to find out: once a second.
		if r.ticks%10 == 0 && !r.usageProbe {
			r.mu.Lock()
			exp := r.export
			r.mu.Unlock()
			if exp != nil && exp.kdev != nil {
				r.usageProbe = true
				path := exp.kdev.Path()
				go func() {
					u, err := nbd.DeviceUsage(path)
					r.post(func() {
						r.usageProbe = false
						r.kernelInUse = err == nil && u.InUse()
					})
				}()
			}
		}
	} else {
		r.kernelInUse = false
		r.node.SetOpenCount(0)
	}
	r.notifyChanged()
}

// notifyChanged wakes every Wait.
func (r *Resource) notifyChanged() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// pump carries out every Ready, in the order the contract asks for.
func (r *Resource) pump() {
	stateChanged := false
	for r.node.HasReady() {
		rd := r.node.Ready()
		c := &r.scratch
		c.metas = append(c.metas[:0], rd.MetaWrites...)
		c.ops = append(c.ops[:0], rd.DiskOps...)
		c.msgs = append(c.msgs[:0], rd.Messages...)
		c.comps = append(c.comps[:0], rd.Completions...)
		c.hs = append(c.hs[:0], rd.Handlers...)
		c.evs = append(c.evs[:0], rd.Events...)
		netCmd, dialect := rd.Net, rd.Dialect
		r.node.Advance()

		for _, e := range c.evs {
			if r.logEvent(e) {
				stateChanged = true
			}
		}
		if dialect != nil && r.conn != nil {
			// The switch sits between the packets already queued and
			// this Ready's: both streams use it from here on.
			d := *dialect
			c.dataOut = append(c.dataOut, wItem{dialect: &d})
			c.metaOut = append(c.metaOut, wItem{dialect: &d})
			r.startMetaReader(r.conn, d)
		}
		// Completions go first when nothing below can still use a
		// request's buffer: no P_DATA in this Ready and no connection
		// change. The client's reply then does not wait for this Ready's
		// other packets (a P_BARRIER, acks), whose loopback writes cost as
		// much as a reply. The core emits a completion only when DRBD's
		// rules allow, whatever the driver does next.
		early := netCmd == 0 && !msgsCarryApp(c.msgs)
		if early {
			for _, cp := range c.comps {
				r.complete(cp)
			}
		}
		for _, m := range c.msgs {
			r.sendMsg(m)
		}
		r.flushMsgs()
		// Net goes after the messages were handed over, and before the
		// completions: a request completed by a connection loss must not
		// hand its buffer back while a writer still sends from it on a
		// socket that stays open.
		switch netCmd {
		case replication.NetConnect:
			if r.conn == nil {
				r.startConnector()
			}
		case replication.NetReconnect:
			r.closeConn()
			r.stopConnector()
			r.startConnector()
		case replication.NetDisconnect:
			r.closeConn()
			r.stopConnector()
		}
		for _, m := range c.metas {
			if m.What == "superblock" {
				if sb, err := metadata.DecodeSuperblock(m.Data); err == nil {
					r.mdFlags = uint32(sb.Flags)
				}
			}
			if r.disk == nil || !r.disk.metas.push(m) {
				r.node.MetaDone(m.ID, replication.ErrNotAttached)
			}
		}
		for _, op := range c.ops {
			j := diskJob{op: op}
			if op.Op == replication.OpWrite && len(op.Data) > 0 {
				if _, ok := r.peerBufs[&op.Data[0]]; ok {
					delete(r.peerBufs, &op.Data[0])
					j.recycle = true
				}
			}
			if r.disk != nil && r.disk.queueAsync(r, j) {
				continue
			}
			if r.disk == nil || !r.disk.ops.push(j) {
				r.node.DiskDone(op.ID, replication.ErrNotAttached, nil)
			}
		}
		if r.disk != nil {
			r.disk.submitAsync(r)
		}
		if !early {
			for _, cp := range c.comps {
				r.complete(cp)
			}
		}
		for _, h := range c.hs {
			r.runHandler(h)
		}
		clear(c.msgs)
		clear(c.ops)
		clear(c.metas)
	}
	r.reaperPump = false
	r.afterPump(stateChanged)
}

// afterPump publishes what other goroutines watch and reacts to changes
// the core made on its own.
func (r *Resource) afterPump(stateChanged bool) {
	b := int64(r.node.RecvBacklog())
	r.backlog.Store(b)
	if b < int64(r.set.core.MaxBuffers) {
		select {
		case r.resume <- struct{}{}:
		default:
		}
	}
	if r.disk != nil {
		if _, attached := r.node.UUIDs(); !attached {
			// Detached (by command or by on-io-error): nothing is in
			// flight any more; close the devices.
			d := r.disk
			r.disk = nil
			go d.shutdown()
		}
	}
	if r.srv.Load() != nil && r.node.State().Role != replication.RolePrimary && !r.autoTearing {
		r.autoTearing = true
		go r.autoTeardown()
	}
	if stateChanged {
		r.notifyChanged()
	}
}

// sendMsg collects a packet for its socket's writer; flushMsgs hands a
// Ready's packets over. Without a connection the packet is dropped and
// its token reported at once (the core already completed what depended
// on it).
func (r *Resource) sendMsg(m replication.Send) {
	if r.conn != nil {
		it := wItem{msg: m.Msg, token: m.Token}
		if m.Stream == replication.MetaStream {
			r.scratch.metaOut = append(r.scratch.metaOut, it)
		} else {
			r.scratch.dataOut = append(r.scratch.dataOut, it)
		}
		return
	}
	if m.Token != 0 {
		r.node.Sent(m.Token)
	}
}

// flushMsgs hands the collected packets to their sockets' writers, in
// order, one hand-over per socket: written at once when the writer is idle
// and the socket takes them (their tokens reported here), else by the
// writer goroutine, woken once for the batch.
func (r *Resource) flushMsgs() {
	c := &r.scratch
	sent := c.sent[:0]
	if r.conn != nil {
		for _, x := range []struct {
			w   *sockWriter
			its []wItem
		}{{r.conn.dataW, c.dataOut}, {r.conn.metaW, c.metaOut}} {
			var ok bool
			if sent, ok = x.w.send(x.its, sent); ok {
				continue
			}
			for _, it := range x.its {
				if it.token != 0 {
					sent = append(sent, it.token)
				}
			}
		}
	}
	for _, t := range sent {
		r.node.Sent(t)
	}
	c.sent = sent[:0]
	clear(c.dataOut)
	clear(c.metaOut)
	c.dataOut, c.metaOut = c.dataOut[:0], c.metaOut[:0]
}

// diskDone reports a DiskOp's completion to the core (on the loop).
func (r *Resource) diskDone(d *disk, j diskJob, err error, data []byte) {
	if r.disk != d {
		return
	}
	r.node.DiskDone(j.op.ID, err, data)
	if j.recycle {
		// The core forgets a peer write's payload when its write is done.
		r.pool.Put(j.op.Data)
	}
}

// logEvent logs one core event; it reports whether it was a state change.
func (r *Resource) logEvent(e replication.Event) bool {
	if e.New != nil && e.Old != nil {
		o, n := *e.Old, *e.New
		r.log.Info("state change",
			zap.Stringer("old_cs", o.Conn), zap.Stringer("new_cs", n.Conn),
			zap.Stringer("old_role", o.Role), zap.Stringer("new_role", n.Role),
			zap.Stringer("old_peer", o.Peer), zap.Stringer("new_peer", n.Peer),
			zap.Stringer("old_disk", o.Disk), zap.Stringer("new_disk", n.Disk),
			zap.Stringer("old_pdsk", o.PDsk), zap.Stringer("new_pdsk", n.PDsk),
			zap.String("old_flags", o.Flags()), zap.String("new_flags", n.Flags()))
		return true
	}
	lvl := zapcore.InfoLevel
	switch e.Level {
	case replication.LevelDebug:
		lvl = zapcore.DebugLevel
	case replication.LevelWarn:
		lvl = zapcore.WarnLevel
	case replication.LevelError:
		lvl = zapcore.ErrorLevel
		r.lastError = e.Msg
	}
	if ce := r.log.Check(lvl, "replication event"); ce != nil {
		ce.Write(zap.String("event", e.Msg))
	}
	return e.Level == replication.LevelError
}

// snapshot builds the loop-owned part of the Status (on the loop).
func (r *Resource) snapshot() Status {
	s := &r.set
	st := Status{
		Name: s.core.Resource, Volume: s.core.Volume, Minor: s.core.Minor, Device: s.vol.Device,
		State: r.node.State(), Protocol: s.core.Protocol,
		Stats: r.node.Stats(), Progress: r.node.Progress(),
		SizeBytes: r.node.Size(), Flags: r.mdFlags, LastError: r.lastError,
		LocalAddress: s.local.String(),
	}
	st.UUIDs, st.Attached = r.node.UUIDs()
	st.AsyncIO = r.disk != nil && r.disk.aio != nil
	if s.peer != nil {
		st.PeerAddress = s.peer.String()
	}
	return st
}

// ---- the API ----

// Status returns a snapshot: the core's state and counters, and the NBD
// export's.
func (r *Resource) Status() Status {
	var st Status
	if err := r.call(context.Background(), func() { st = r.snapshot() }); err != nil {
		r.mu.Lock()
		if r.final != nil {
			st = *r.final
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	exp := r.export
	r.mu.Unlock()
	if exp != nil {
		exp.fill(&st.NBD)
	}
	return st
}

// Wait returns when cond holds for the Status, checking after every state
// change and every tick; ctx bounds the wait.
func (r *Resource) Wait(ctx context.Context, cond func(Status) bool) error {
	r.ensureLoop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond(r.Status()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			if cond(r.Status()) {
				return nil
			}
			return ErrDown
		}
	}
}

// Attach opens the backing disk and its metadata and hands them to the
// core (drbdadm attach). Metadata left unclean by a crash gets its
// activity log applied first.
func (r *Resource) Attach(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	var attached bool
	if err := r.call(ctx, func() { _, attached = r.node.UUIDs() }); err != nil {
		return err
	}
	if attached {
		return replication.ErrAlreadyAttached
	}
	ld, err := loadDisk(&r.set, r.log)
	if err != nil {
		return err
	}
	ld.d.hook = r.diskHook
	err = r.callErr(ctx, func() error {
		r.disk = ld.d
		if err := r.node.Attach(ld.params); err != nil {
			r.disk = nil
			return err
		}
		ld.d.start(r)
		return nil
	})
	if err != nil {
		ld.abandon()
		return err
	}
	return nil
}

// Detach stops using the backing disk (drbdadm detach); it returns once
// the metadata is clean and the devices are closed.
func (r *Resource) Detach(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.detachLocked(ctx)
}

func (r *Resource) detachLocked(ctx context.Context) error {
	var d *disk
	err := r.callDone(ctx, func(done func(error)) {
		d = r.disk
		r.node.Detach(done)
	})
	if err != nil {
		return err
	}
	if d != nil {
		select {
		case <-d.closed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Connect configures the network and keeps trying to reach the peer
// (drbdadm connect); it returns at once. discardMyData makes this node
// the split-brain victim for this connection.
func (r *Resource) Connect(ctx context.Context, discardMyData bool) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	if r.set.peer == nil {
		return fmt.Errorf("driver: connect %s: no peer host section", r.set.core.Resource)
	}
	return r.callErr(ctx, func() error { return r.node.Connect(discardMyData) })
}

// Disconnect drops the connection and goes StandAlone (drbdadm
// disconnect).
func (r *Resource) Disconnect(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callErr(ctx, func() error { return r.node.Disconnect() })
}

// Primary promotes (drbdadm primary [--force]) and then exports the
// device over NBD.
func (r *Resource) Primary(ctx context.Context, force bool) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	if err := r.callDone(ctx, func(done func(error)) { r.node.Primary(force, done) }); err != nil {
		return err
	}
	r.mu.Lock()
	exp := r.export
	r.mu.Unlock()
	if exp != nil {
		return nil
	}
	return r.startExport(ctx)
}

// Secondary demotes (drbdadm secondary). It is refused with
// replication.ErrDeviceInUse while an NBD client other than the kernel's
// own sockets is connected or /dev/nbdX is held open; otherwise the
// export is fenced, drained and closed before the core demotes.
func (r *Resource) Secondary(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.secondaryLocked(ctx)
}

func (r *Resource) secondaryLocked(ctx context.Context) error {
	r.mu.Lock()
	exp := r.export
	r.mu.Unlock()
	if exp != nil {
		if n, why := exp.users(ctx); n > 0 {
			r.log.Info("secondary refused: device held open", zap.Int("users", n), zap.String("by", why))
			_ = r.call(ctx, func() { r.node.SetOpenCount(n) })
			return replication.ErrDeviceInUse
		}
		if err := r.stopExport(ctx, exp, nbd.ErrShutdown); err != nil {
			return err
		}
	}
	err := r.callDone(ctx, func(done func(error)) {
		r.node.SetOpenCount(0)
		r.node.Secondary(done)
	})
	if err != nil && exp != nil {
		// Still Primary: serve again.
		// A deadline of its own, not ctx's: a demotion that failed because
		// ctx ran out must still leave the Primary serving.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		xerr := r.startExport(rctx)
		cancel()
		if xerr != nil {
			r.log.Error("cannot export the device again after a failed demotion", zap.Error(xerr))
		}
	}
	return err
}

// NewCurrentUUID starts a new data generation (drbdadm new-current-uuid
// [--clear-bitmap]).
func (r *Resource) NewCurrentUUID(ctx context.Context, clearBitmap bool) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callDone(ctx, func(done func(error)) { r.node.NewCurrentUUID(clearBitmap, done) })
}

// Invalidate discards the local data and resyncs it from the peer.
func (r *Resource) Invalidate(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callDone(ctx, r.node.Invalidate)
}

// InvalidateRemote resyncs all data to the peer.
func (r *Resource) InvalidateRemote(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callDone(ctx, r.node.InvalidateRemote)
}

// Verify starts an online verify against the peer (needs verify-alg).
func (r *Resource) Verify(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callDone(ctx, r.node.StartVerify)
}

// PauseSync pauses the resync (drbdadm pause-sync).
func (r *Resource) PauseSync(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callErr(ctx, r.node.PauseSync)
}

// ResumeSync resumes a resync paused by PauseSync.
func (r *Resource) ResumeSync(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callErr(ctx, r.node.ResumeSync)
}

// Outdate marks the local data Outdated (drbdadm outdate).
func (r *Resource) Outdate(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	return r.callErr(ctx, r.node.Outdate)
}

// Down is drbdadm down: demote (refused while the device is open),
// disconnect, detach, then stop the event loop. A Resource that is down
// stays down.
func (r *Resource) Down(ctx context.Context) error {
	r.admin.Lock()
	defer r.admin.Unlock()
	select {
	case <-r.done:
		return nil
	default:
	}
	var role replication.Role
	if err := r.call(ctx, func() { role = r.node.State().Role }); err != nil {
		if errors.Is(err, ErrDown) {
			return nil
		}
		return err
	}
	if role == replication.RolePrimary {
		if err := r.secondaryLocked(ctx); err != nil {
			return err
		}
	}
	if err := r.callErr(ctx, r.node.Disconnect); err != nil && !errors.Is(err, replication.ErrAlreadyStandAlone) {
		return err
	}
	if err := r.detachLocked(ctx); err != nil && !errors.Is(err, replication.ErrIsDiskless) {
		return err
	}
	r.stop()
	return nil
}

// stop ends the event loop and releases whatever is still open, without
// any clean shutdown (Down did that before; a simulated crash wants
// none).
func (r *Resource) stop() {
	r.ensureLoop()
	r.quitOnce.Do(func() { close(r.quit) })
	<-r.done
	// The loop is gone: its state is ours now.
	r.stopConnector()
	if c := r.conn; c != nil {
		r.conn = nil
		close(c.stop)
		c.closing.Store(true) // a writer drops P_DATA from here on
		c.closeHard()
		// A writer may still be inside a writev from a request's buffer,
		// which abortAsync below hands back to the NBD server: wait for
		// both (on closed sockets they end at once).
		<-c.dataWDone
		<-c.metaWDone
	}
	if d := r.disk; d != nil {
		r.disk = nil
		d.shutdown()
	}
	r.mu.Lock()
	exp := r.export
	r.mu.Unlock()
	if exp != nil {
		exp.srv.Refuse(nbd.ErrShutdown)
	}
	if r.lastConnDone != nil {
		<-r.lastConnDone
	}
	// No disk or socket uses a request's buffer any more: requests the
	// loop never ended can be answered (and their buffers reused), before
	// the export waits for its connections to drain.
	r.abortAsync()
	if exp != nil {
		r.closeExport(exp)
	}
}

// msgsCarryApp reports whether a packet of ms sends from an application
// buffer (P_DATA).
func msgsCarryApp(ms []replication.Send) bool {
	for _, m := range ms {
		if isAppData(m.Msg) {
			return true
		}
	}
	return false
}
