package replication

import (
	"errors"
	"fmt"

	"github.com/gdrbd/gdrbd/protocol"
)

// Errors returned to application requests and admin commands.
var (
	ErrNotPrimary      = errors.New("replication: not primary")
	ErrNoData          = errors.New("replication: no accessible UpToDate data")
	ErrOutOfRange      = errors.New("replication: request beyond end of device")
	ErrBadRequest      = errors.New("replication: malformed request")
	ErrIOError         = errors.New("replication: I/O error")
	ErrNotAttached     = errors.New("replication: no disk attached")
	ErrAlreadyAttached = errors.New("replication: disk already attached")
	ErrDuplicateID     = errors.New("replication: request id already in flight")
	ErrBusy            = errors.New("replication: another state change is in progress")
)

// Options are the Node's injected dependencies.
type Options struct {
	// Rand returns random 64-bit values (generation UUIDs, auth
	// challenges). It must be set; the simulator passes a seeded source.
	Rand func() uint64
}

// Node is the replication state machine of one resource volume on one
// node: DRBD's device, peer device and connection in one value.
//
// A Node is pure: it does no I/O, starts no goroutines and reads no clock.
// The caller feeds it inputs (application requests, disk completions,
// packets, ticks, admin commands), then collects the resulting work with
// Ready, carries it out in the documented order, and calls Advance.
//
// A Node is not safe for concurrent use: one goroutine (the driver's
// event loop) owns it.
type Node struct {
	cfg  Config
	rand func() uint64

	st    State
	ready Ready
	seq   uint64 // IDs for disk ops, metadata writes, handlers, tokens

	// The attached local disk; nil while Diskless.
	ldev *ldev
	// attachedBefore remembers that a disk was configured (so the peer is
	// told Diskless, not Attaching, after a detach).
	netConfigured bool
	// discardMyData is the one-shot flag of "connect --discard-my-data".
	discardMyData bool

	// The connection to the peer; nil while StandAlone.
	peer *peer

	// Application requests in flight, by their ID.
	reqs map[uint64]*request
	// Operations on the local disk in flight, by DiskOp ID.
	diskOps map[uint64]diskWaiter
	// Metadata writes in flight, by MetaWrite ID.
	metaOps map[uint64]func(error)
	// Tokens of sent packets the caller reports with Sent.
	tokens map[uint64]func()

	// openCount is how many users hold the exported device open (NBD
	// clients, the kernel device); Secondary is refused while > 0.
	openCount int

	// pendingAdmin is the admin command waiting for the peer's answer to
	// a cluster-wide state change (at most one at a time).
	pendingAdmin *adminWait

	// Transfer log (Primary side): epochs of replicated writes not yet
	// acknowledged by a P_BARRIER_ACK.
	tl transferLog

	// Range locks between resync and writes (see locks.go).
	locks []*rangeLock

	// ioSectors counts application and peer I/O issued to the local disk
	// (for the resync's c-min-rate throttle).
	ioSectors uint64

	// handlerWaiters: handlers run with Wait, by Handler ID.
	handlerWaiters map[uint64]func(exitCode int)
	// connects counts the connections established (Connected), so a
	// fence-peer result that outlived its connection is ignored.
	connects uint64

	stats stats
}

// diskWaiter is called when a DiskOp completes.
type diskWaiter func(err error, data []byte)

// NewNode returns a Node for cfg, Diskless and StandAlone, Secondary.
func NewNode(cfg Config, opts Options) *Node {
	if opts.Rand == nil {
		panic("replication: Options.Rand is required")
	}
	if cfg.MaxEpochSize <= 0 || cfg.MaxBuffers <= 0 || cfg.Protocol == 0 {
		panic(fmt.Sprintf("replication: invalid config: protocol %v, max-epoch-size %d, max-buffers %d",
			cfg.Protocol, cfg.MaxEpochSize, cfg.MaxBuffers))
	}
	n := &Node{
		cfg:     cfg,
		rand:    opts.Rand,
		reqs:    make(map[uint64]*request),
		diskOps: make(map[uint64]diskWaiter),
		metaOps: make(map[uint64]func(error)),
		tokens:  make(map[uint64]func()),
	}
	n.st = State{Role: RoleSecondary, Peer: RoleUnknown, Conn: StandAlone, Disk: Diskless, PDsk: DUnknown}
	n.tl.init()
	return n
}

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// State returns the current state.
func (n *Node) State() State { return n.st }

// HasReady reports whether Ready would return work.
func (n *Node) HasReady() bool { return !n.ready.Empty() }

// Ready returns the accumulated work. The slices stay valid until Advance.
func (n *Node) Ready() Ready { return n.ready }

// Advance tells the node the last Ready was handed off. The caller must
// have started (not necessarily finished) everything in it.
func (n *Node) Advance() {
	n.ready = Ready{
		MetaWrites:  n.ready.MetaWrites[:0],
		DiskOps:     n.ready.DiskOps[:0],
		Messages:    n.ready.Messages[:0],
		Completions: n.ready.Completions[:0],
		Handlers:    n.ready.Handlers[:0],
		Events:      n.ready.Events[:0],
	}
}

func (n *Node) nextID() uint64 {
	n.seq++
	return n.seq
}

func (n *Node) logf(l Level, format string, a ...any) {
	n.ready.Events = append(n.ready.Events, Event{Level: l, Msg: fmt.Sprintf(format, a...)})
}

// submitDisk queues a DiskOp and registers done for its completion.
func (n *Node) submitDisk(op DiskOp, done diskWaiter) {
	op.ID = n.nextID()
	n.diskOps[op.ID] = done
	n.ready.DiskOps = append(n.ready.DiskOps, op)
}

// DiskDone reports the completion of a DiskOp. For reads with a nil
// DiskOp.Data, data holds what was read.
func (n *Node) DiskDone(id uint64, err error, data []byte) {
	w, ok := n.diskOps[id]
	if !ok {
		panic(fmt.Sprintf("replication: DiskDone for unknown op %d", id))
	}
	delete(n.diskOps, id)
	w(err, data)
}

// writeMeta queues a MetaWrite and registers done for its completion.
func (n *Node) writeMeta(off int64, data []byte, what string, done func(error)) {
	id := n.nextID()
	n.metaOps[id] = done
	n.ready.MetaWrites = append(n.ready.MetaWrites, MetaWrite{ID: id, Offset: off, Data: data, What: what})
}

// MetaDone reports that a MetaWrite is durable (or failed).
func (n *Node) MetaDone(id uint64, err error) {
	w, ok := n.metaOps[id]
	if !ok {
		panic(fmt.Sprintf("replication: MetaDone for unknown write %d", id))
	}
	delete(n.metaOps, id)
	w(err)
}

// Sent reports that the packet sent with token was handed to its socket.
func (n *Node) Sent(token uint64) {
	if f, ok := n.tokens[token]; ok {
		delete(n.tokens, token)
		f()
	}
}

// send queues a packet for the peer. It is a no-op without a connection
// that can carry it (the packet is dropped, as DRBD drops it on a dead
// socket).
func (n *Node) send(s Stream, p protocol.Packet) {
	if n.peer == nil || !n.peer.socketsUp {
		return
	}
	n.ready.Messages = append(n.ready.Messages, Send{Stream: s, Msg: protocol.Message{Volume: uint16(n.cfg.Volume), Packet: p}})
	if s == DataStream {
		n.peer.lastDataSend = n.peer.now
	} else {
		n.peer.lastMetaSend = n.peer.now
	}
}

// sendWithToken queues a packet whose hand-off to the socket the caller
// reports with Sent.
func (n *Node) sendWithToken(s Stream, p protocol.Packet, onSent func()) bool {
	if n.peer == nil || !n.peer.socketsUp {
		return false
	}
	tok := n.nextID()
	n.tokens[tok] = onSent
	n.ready.Messages = append(n.ready.Messages, Send{Stream: s, Msg: protocol.Message{Volume: uint16(n.cfg.Volume), Packet: p}, Token: tok})
	return true
}

// SetOpenCount tells the node how many users hold the exported device
// open. While it is above zero, Secondary is refused ("Device is held open
// by someone").
func (n *Node) SetOpenCount(c int) { n.openCount = c }

// OpenCount returns what SetOpenCount last set.
func (n *Node) OpenCount() int { return n.openCount }

func (n *Node) ruleEnv() ruleEnv {
	return ruleEnv{
		twoPrimaries:  n.cfg.AllowTwoPrimaries,
		haveNetConf:   n.netConfigured,
		fencing:       n.cfg.Fencing,
		openCount:     n.openCount,
		verifyAlg:     n.cfg.VerifyAlg != "",
		agreedVersion: n.agreedVersion(),
		stateSent:     n.peer != nil && n.peer.stateSent && n.st.Conn == WFReportParams,
	}
}

func (n *Node) agreedVersion() int {
	if n.peer == nil {
		return 0
	}
	return n.peer.dialect.Version
}

// changeFlags select how a state change is checked.
type changeFlags uint8

const (
	// csHard: a fact imposed by the environment (disk broke, network
	// broke); only hard transition rules apply.
	csHard changeFlags = 1 << iota
	// csLocalOnly: never ask the peer (used while answering the peer).
	csLocalOnly
)

// changeState applies the masked change after DRBD's checks, without
// asking the peer (DRBD's _drbd_set_state after drbd_change_state). It
// returns nil on success or when nothing changes.
func (n *Node) changeState(mask StateMask, val State, f changeFlags) error {
	os := n.st
	ns := sanitizeState(n.ruleEnv(), os, mask.apply(os, val))
	return n.setState(os, ns, f)
}

func (n *Node) setState(os, ns State, f changeFlags) error {
	if ns == os {
		return nil
	}
	env := n.ruleEnv()
	if err := isValidTransition(os, ns); err != nil && err != errNothingToDo {
		return err
	}
	if f&csHard == 0 {
		err := isValidState(env, ns)
		if err != nil {
			// An already invalid state may stay invalid in the same way.
			if old := isValidState(env, os); old == err {
				err = isValidSoftTransition(env, os, ns)
			}
		} else {
			err = isValidSoftTransition(env, os, ns)
		}
		if err != nil {
			return err
		}
	}
	n.st = ns
	o, nn := os, ns
	n.ready.Events = append(n.ready.Events, Event{Level: LevelInfo, Msg: "state change", Old: &o, New: &nn})
	n.afterStateChange(os, ns)
	return nil
}

// isClusterWide reports whether DRBD would ask the peer before making the
// change (cl_wide_st_chg).
func isClusterWide(os, ns State) bool {
	return (os.Conn >= Connected && ns.Conn >= Connected &&
		((os.Role != RolePrimary && ns.Role == RolePrimary) ||
			(os.Conn != StartingSyncT && ns.Conn == StartingSyncT) ||
			(os.Conn != StartingSyncS && ns.Conn == StartingSyncS) ||
			(os.Disk != Failed && ns.Disk == Failed))) ||
		(os.Conn >= Connected && ns.Conn == Disconnecting) ||
		(os.Conn == Connected && ns.Conn == VerifyS) ||
		(os.Conn == Connected && ns.Conn == WFReportParams)
}

// requestState is a user-requested state change (DRBD's drbd_req_state):
// checked as a soft transition, and when it is cluster-wide, first
// proposed to the peer with P_STATE_CHG_REQ. done is called with the
// result, possibly later (after the peer's P_STATE_CHG_REPLY).
func (n *Node) requestState(mask StateMask, val State, done func(error)) {
	os := n.st
	ns := sanitizeState(n.ruleEnv(), os, mask.apply(os, val))
	if err := isValidTransition(os, ns); err != nil && err != errNothingToDo {
		done(err)
		return
	}
	if isClusterWide(os, ns) && n.peer != nil && n.peer.socketsUp {
		env := n.ruleEnv()
		if err := isValidState(env, ns); err != nil {
			done(err)
			return
		}
		if err := isValidSoftTransition(env, os, ns); err != nil {
			done(err)
			return
		}
		if n.pendingAdmin != nil {
			done(ErrConcurrentStChg)
			return
		}
		cmd := protocol.CmdStateChgReq
		if mask.Conn {
			cmd = protocol.CmdConnStChgReq
		}
		n.pendingAdmin = &adminWait{mask: mask, val: val, done: done, conn: cmd == protocol.CmdConnStChgReq}
		n.send(DataStream, &protocol.StateChgReq{Cmd: cmd, Mask: mask.Pack(), Val: val.Pack()})
		return
	}
	done(n.setState(os, ns, 0))
}

// adminWait is a cluster-wide state change waiting for the peer's reply.
type adminWait struct {
	mask StateMask
	val  State
	conn bool
	done func(error)
}

// peerStateReply handles P_STATE_CHG_REPLY / P_CONN_ST_CHG_REPLY.
func (n *Node) peerStateReply(code int32) {
	w := n.pendingAdmin
	if w == nil {
		n.logf(LevelWarn, "unexpected state change reply %d", code)
		return
	}
	n.pendingAdmin = nil
	if code < ssSuccess {
		n.logf(LevelWarn, "State change failed: %v (refused by peer)", StateErr(code))
		w.done(ErrCWFailedByPeer)
		return
	}
	os := n.st
	ns := sanitizeState(n.ruleEnv(), os, w.mask.apply(os, w.val))
	w.done(n.setState(os, ns, 0))
}

// abortPendingAdmin resolves a cluster-wide change whose peer went away:
// the change is retried locally, as DRBD does after the connection loss
// (it is no longer cluster-wide).
func (n *Node) abortPendingAdmin() {
	w := n.pendingAdmin
	if w == nil {
		return
	}
	n.pendingAdmin = nil
	n.requestState(w.mask, w.val, w.done)
}

// afterStateChange carries out what a state change implies (DRBD's
// after_state_ch and the flag bookkeeping of __drbd_set_state).
func (n *Node) afterStateChange(os, ns State) {
	// The peer was forced UpToDate and Primary while both of us were
	// Inconsistent: consider a resync (DRBD's CONSIDER_RESYNC).
	if os.Disk == Inconsistent && os.PDsk == Inconsistent && os.Peer == RoleSecondary && ns.Peer == RolePrimary && n.peer != nil {
		n.peer.rs.considerResync = true
	}
	if (os.Disk != UpToDate || os.PDsk != UpToDate) && ns.Disk == UpToDate && ns.PDsk == UpToDate {
		if n.ldev != nil {
			n.ldev.crashedPrimary = false
		}
		if n.peer != nil {
			n.peer.uuidFlags &^= protocol.UUIDFlagCrashedPrimary
		}
	}
	if !(os.Role == RolePrimary && os.Disk < UpToDate && os.PDsk < UpToDate) &&
		(ns.Role == RolePrimary && ns.Disk < UpToDate && ns.PDsk < UpToDate) {
		n.runHandler("pri-on-incon-degr", false)
	}

	// Became sync source: send the sync UUID before any state.
	if os.Conn != SyncSource && os.Conn != PausedSyncS && (ns.Conn == SyncSource || ns.Conn == PausedSyncS) {
		n.startResyncSource()
	}
	if os.Conn != WFBitMapS && ns.Conn == WFBitMapS {
		n.sendBitmap()
	}
	// invalidate / invalidate-remote: both sides set every bit.
	if (os.Conn != StartingSyncT && ns.Conn == StartingSyncT) || (os.Conn != StartingSyncS && ns.Conn == StartingSyncS) {
		n.startingSync(ns.Conn)
	}

	// Lost contact to the peer's copy of the data: a Primary starts a new
	// data generation so the next connect resyncs what changed.
	if lostContactToPeerData(os.PDsk, ns.PDsk) && n.ldev != nil {
		if (ns.Role == RolePrimary || ns.Peer == RolePrimary) && n.ldev.uuids[uiBitmap] == 0 && ns.Disk >= UpToDate {
			n.newCurrentUUID()
			n.sendUUIDs()
		}
	}
	if ns.PDsk < Inconsistent && n.ldev != nil {
		if os.Peer != RolePrimary && ns.Peer == RolePrimary && n.ldev.uuids[uiBitmap] == 0 && ns.Disk >= UpToDate {
			n.newCurrentUUID()
			n.sendUUIDs()
		}
	}
	// Demote: write out every changed bitmap page.
	if os.Role == RolePrimary && ns.Role == RoleSecondary && n.ldev != nil {
		n.ldev.writeDirtyBitmap(n, nil)
	}
	if ns.Conn >= Connected && (os.AftrISP != ns.AftrISP || os.UserISP != ns.UserISP) {
		n.sendState()
	}
	if os.Conn == WFReportParams && ns.Conn >= Connected {
		n.sendState()
	}
	// Local disk failed: tell the peer, then go Diskless.
	if os.Disk != Failed && ns.Disk == Failed {
		if n.cfg.OnIOError == IOErrorCallHelper && n.ldev != nil && n.ldev.wasIOError {
			n.runHandler("local-io-error", false)
		}
		if ns.Conn >= Connected {
			n.sendState()
		}
		n.finishDetach()
	}
	if os.Disk != Diskless && ns.Disk == Diskless && ns.Conn >= Connected {
		n.sendState()
	}
	if os.Disk == UpToDate && ns.Disk == Inconsistent && ns.Conn >= Connected {
		n.sendState()
	}
	// A resync finished or stopped.
	if os.Conn.IsSyncing() && ns.Conn <= Connected {
		if os.Disk < UpToDate && ns.Conn == Connected {
			n.sendState()
		}
		if n.ldev != nil {
			n.ldev.writeDirtyBitmap(n, nil)
		}
	}
	if os.Conn == VerifyS && ns.Conn == Connected {
		n.sendState()
	}
	n.updateMDFlags()
}

// lostContactToPeerData is DRBD's lost_contact_to_peer_data.
func lostContactToPeerData(os, ns DiskState) bool {
	if (os >= Inconsistent && os != DUnknown && os != Outdated) &&
		(ns < Inconsistent || ns == DUnknown || ns == Outdated) {
		return true
	}
	return os == DUnknown && (ns == Diskless || ns == Failed || ns == Outdated)
}

// runHandler asks the driver to run a drbd.conf handler.
func (n *Node) runHandler(name string, wait bool) uint64 {
	id := n.nextID()
	n.ready.Handlers = append(n.ready.Handlers, Handler{ID: id, Name: name, Wait: wait})
	n.logf(LevelInfo, "helper command: drbdadm %s", name)
	return id
}

// runHandlerWait runs a handler and calls done with its exit code.
func (n *Node) runHandlerWait(name string, done func(exitCode int)) {
	id := n.runHandler(name, true)
	if n.handlerWaiters == nil {
		n.handlerWaiters = map[uint64]func(int){}
	}
	n.handlerWaiters[id] = done
}

// HandlerDone reports the exit code of a handler run with Wait (a handler
// that could not be started reports -1).
func (n *Node) HandlerDone(id uint64, exitCode int) {
	if f, ok := n.handlerWaiters[id]; ok {
		delete(n.handlerWaiters, id)
		f(exitCode)
	}
}

// Exit codes of the fence-peer handler (DRBD's enum drbd_fence_peer... P_*).
const (
	fencePeerInconsistent = 3
	fencePeerOutdated     = 4
	fencePeerDown         = 5
	fencePeerPrimary      = 6
	fencePeerStonithed    = 7
)

// tryOutdatePeer asks the fence-peer handler to outdate an unreachable
// peer (DRBD's conn_try_outdate_peer) and calls done with whether the
// peer's disk is now known to be Outdated or worse.
func (n *Node) tryOutdatePeer(done func(ok bool)) {
	if n.cfg.Fencing == FencingDontCare {
		done(true)
		return
	}
	if n.st.Conn >= WFReportParams {
		n.logf(LevelError, "Expected cstate < C_WF_REPORT_PARAMS")
		done(false)
		return
	}
	connects := n.connects
	n.runHandlerWait("fence-peer", func(code int) {
		if n.connects != connects || n.st.Conn >= WFReportParams {
			// The connection came back while the handler ran: what it
			// found out is about the old one.
			n.logf(LevelInfo, "Ignoring fence-peer exit code")
			done(n.st.PDsk <= Outdated)
			return
		}
		var mask StateMask
		var val State
		what := ""
		switch code {
		case fencePeerInconsistent:
			what, mask.PDsk, val.PDsk = "peer is inconsistent or worse", true, Inconsistent
		case fencePeerOutdated:
			what, mask.PDsk, val.PDsk = "peer was fenced", true, Outdated
		case fencePeerDown:
			if n.st.Disk == UpToDate {
				what, mask.PDsk, val.PDsk = "peer is unreachable, assumed to be dead", true, Outdated
			} else {
				what = "peer unreachable, doing nothing since disk != UpToDate"
			}
		case fencePeerPrimary:
			what, mask.Disk, val.Disk = "peer is active", true, Outdated
			n.logf(LevelWarn, "Peer is primary, outdating myself.")
		case fencePeerStonithed:
			what, mask.PDsk, val.PDsk = "peer was stonithed", true, Outdated
		default:
			n.logf(LevelError, "fence-peer helper broken, returned %d", code)
			done(false)
			return
		}
		n.logf(LevelInfo, "fence-peer helper returned %d (%s)", code, what)
		if mask.PDsk || mask.Disk {
			if val.PDsk != 0 && val.PDsk <= Outdated {
				// The peer is fenced: I/O suspended for the handler
				// (resource-and-stonith) resumes.
				mask.SuspFen, val.SuspFen = true, false
			}
			_ = n.changeState(mask, val, csHard)
			n.writeSuperblock(nil)
		}
		done(n.st.PDsk <= Outdated)
	})
}

// fenceLostPeer runs the fence-peer handler when a Primary loses its
// connection to a peer whose disk may be UpToDate (DRBD's conn_disconnect
// calls conn_try_outdate_peer_async): with fencing resource-only or
// resource-and-stonith, the handler (crm-fence-peer.sh) keeps the cluster
// from promoting the peer, which misses the writes made from now on. The
// peer's disk state follows the handler's exit code unless the
// connection came back meanwhile.
func (n *Node) fenceLostPeer(os State) {
	if n.cfg.Fencing == FencingDontCare || n.st.Role != RolePrimary {
		return
	}
	if os.PDsk != UpToDate && os.PDsk != Consistent && os.PDsk != DUnknown {
		return // the peer is known to be Outdated or worse
	}
	n.tryOutdatePeer(func(bool) {})
}
