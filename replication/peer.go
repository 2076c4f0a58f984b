package replication

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/gdrbd/gdrbd/protocol"
)

// challengeLen is the size of a cram-hmac challenge (DRBD: 64 bytes).
const challengeLen = 64

// hsStage is where the connection handshake stands.
type hsStage uint8

const (
	hsFeatures  hsStage = 1 + iota // P_CONNECTION_FEATURES sent, waiting for the peer's
	hsChallenge                    // our challenge sent, waiting for the peer's
	hsResponse                     // our response sent, waiting for the peer's
	hsParams                       // parameters sent, waiting for the peer's state
	hsDone                         // Connected (or beyond)
)

// peer is one connection to the peer node: DRBD's connection and peer
// device.
type peer struct {
	socketsUp        bool
	resolveConflicts bool // we accepted the meta socket (DRBD's RESOLVE_CONFLICTS)
	stage            hsStage
	dialect          protocol.Dialect
	myChallenge      []byte
	stateSent        bool

	// What the peer told us.
	gotProtocol bool
	gotParams   bool
	gotSizes    bool
	gotUUIDs    bool
	uuids       genUUIDs
	dirtyBits   uint64
	uuidFlags   uint64
	peerSize    uint64 // the peer's backing disk size (sectors)
	peerUSize   uint64
	peerCSize   uint64
	peerMaxBIO  uint32
	peerDiscard bool // the peer asked us to discard our data (CF_DISCARD_MY_DATA)

	// Timers, in ticks.
	now          int64
	lastRecv     int64 // anything received on the meta socket
	lastMetaSend int64
	lastDataSend int64
	pingSent     int64 // when the outstanding P_PING was sent, 0 if none

	// The sequence number of the last P_DATA, P_TRIM or block ack we sent
	// (DRBD's packet_seq), and the newest we saw from the peer (peer_seq;
	// kept by the resolver with two primaries: CONFLICTING WRITES).
	packetSeq uint32
	peerSeq   uint32
	// Remote reads in flight (P_DATA_REQUEST sent).
	pendingReads int

	recv receiver // the Secondary side: epochs being applied
	rs   resync   // resync / verify bookkeeping
}

// Connect configures the network and starts connecting (drbdadm connect).
// discardMyData marks this node as the split-brain victim for this
// connection attempt.
func (n *Node) Connect(discardMyData bool) error {
	if n.st.Conn != StandAlone {
		return fmt.Errorf("replication: already connecting or connected (%s)", n.st.Conn)
	}
	n.netConfigured = true
	n.discardMyData = discardMyData
	if err := n.changeState(StateMask{Conn: true}, State{Conn: Unconnected}, csHard); err != nil {
		return err
	}
	n.peer = &peer{}
	n.enterWFConnection()
	return nil
}

func (n *Node) enterWFConnection() {
	_ = n.changeState(StateMask{Conn: true}, State{Conn: WFConnection}, csHard)
	n.ready.Net = NetConnect
}

// Disconnect tears the connection down and goes StandAlone (drbdadm
// disconnect).
//
// A connected peer is told first (P_CONN_ST_CHG_REQ conn:Disconnecting,
// the cluster-wide request DRBD sends), so it tears down cleanly instead
// of seeing a network failure; the sockets close right after the request
// is handed to them (Ready's Net follows its Messages).
func (n *Node) Disconnect() error {
	if n.st.Conn == StandAlone {
		return ErrAlreadyStandAlone
	}
	if n.peer != nil && n.peer.socketsUp && n.st.Conn >= Connected {
		n.send(DataStream, &protocol.StateChgReq{Cmd: protocol.CmdConnStChgReq,
			Mask: StateMask{Conn: true}.Pack(), Val: State{Conn: Disconnecting}.Pack()})
	}
	n.dropConnection(Disconnecting, "disconnect requested")
	return nil
}

// Connected tells the node that both sockets to the peer are established
// (the first packets P_INITIAL_DATA / P_INITIAL_META were exchanged).
// resolveConflicts is true on the node that accepted the meta socket. The
// node starts the DRBD handshake: features, authentication, parameters.
func (n *Node) Connected(resolveConflicts bool) {
	if n.peer == nil || n.st.Conn != WFConnection {
		n.logf(LevelWarn, "connection established in state %s; dropping it", n.st.Conn)
		n.ready.Net = n.netCmdForState()
		return
	}
	now := n.peer.now
	n.connects++
	n.peer = &peer{socketsUp: true, resolveConflicts: resolveConflicts, stage: hsFeatures, now: now, lastRecv: now}
	n.peer.recv.init()
	n.send(DataStream, &protocol.ConnectionFeatures{
		ProtocolMin:  protocol.ProtocolMin,
		FeatureFlags: n.cfg.Features,
		ProtocolMax:  protocol.ProtocolMax,
	})
}

func (n *Node) netCmdForState() NetCmd {
	if n.st.Conn == StandAlone || n.st.Conn == Disconnecting {
		return NetDisconnect
	}
	return NetReconnect
}

// Disconnected tells the node that a socket to the peer failed or closed
// (reason for the log: "broken pipe", "timeout", ...).
func (n *Node) Disconnected(reason string) {
	if n.peer == nil || !n.peer.socketsUp {
		return
	}
	n.logf(LevelWarn, "connection lost: %s", reason)
	n.dropConnection(NetworkFailure, reason)
}

// protocolError drops the connection because the peer sent something we
// cannot accept. Nothing of the offending packet was applied.
func (n *Node) protocolError(format string, a ...any) error {
	err := fmt.Errorf("replication: protocol error: %s", fmt.Sprintf(format, a...))
	n.logf(LevelError, "%v", err)
	n.dropConnection(ProtocolError, err.Error())
	return err
}

// dropConnection closes the sockets and cleans up everything that
// depended on them (DRBD's drbd_disconnected / conn_disconnect). via is
// the transient state to pass through: NetworkFailure, ProtocolError,
// Timeout, BrokenPipe, TearDown (reconnect afterwards) or Disconnecting
// (go StandAlone).
func (n *Node) dropConnection(via ConnState, reason string) {
	wasUp := n.peer != nil && n.peer.socketsUp
	if n.peer != nil {
		n.peer.socketsUp = false
	}
	os := n.st
	// Requests that depended on the peer complete now; their blocks are
	// out of sync.
	n.tlClear()
	n.recvClear()
	n.resyncClear()
	_ = n.changeState(StateMask{Conn: true}, State{Conn: via}, csHard)
	n.abortPendingAdmin()
	if via == Disconnecting {
		_ = n.changeState(StateMask{Conn: true}, State{Conn: StandAlone}, csHard)
		n.peer = nil
		n.netConfigured = false
		n.ready.Net = NetDisconnect
		n.updateMDFlags()
		if wasUp {
			n.fenceLostPeer(os)
		}
		return
	}
	_ = n.changeState(StateMask{Conn: true}, State{Conn: Unconnected}, csHard)
	now := int64(0)
	if n.peer != nil {
		now = n.peer.now
	}
	n.peer = &peer{now: now}
	_ = n.changeState(StateMask{Conn: true}, State{Conn: WFConnection}, csHard)
	if wasUp || os.Conn > WFConnection {
		n.ready.Net = NetReconnect
	} else {
		n.ready.Net = NetConnect
	}
	if wasUp {
		n.fenceLostPeer(os)
	}
}

// Receive handles one packet from the peer on stream s. A packet that
// breaks the protocol drops the connection and returns the error; nothing
// of it is applied.
func (n *Node) Receive(s Stream, msg protocol.Message) error {
	p := n.peer
	if p == nil || !p.socketsUp {
		return nil // late packet from a connection already dropped
	}
	if s == MetaStream {
		p.lastRecv = p.now
	}
	if msg.Volume != uint16(n.cfg.Volume) && p.dialect.Version >= 100 {
		if _, ok := msg.Packet.(*protocol.ConnectionFeatures); !ok {
			return n.protocolError("packet %#x for unknown volume %d", msg.Packet.Command(), msg.Volume)
		}
	}
	switch p.stage {
	case hsFeatures:
		f, ok := msg.Packet.(*protocol.ConnectionFeatures)
		if !ok || s != DataStream {
			return n.protocolError("expected ConnectionFeatures packet, received: %#04x", msg.Packet.Command())
		}
		return n.receiveFeatures(f)
	case hsChallenge:
		a, ok := msg.Packet.(*protocol.Auth)
		if !ok || a.Cmd != protocol.CmdAuthChallenge || s != DataStream {
			return n.protocolError("expected AuthChallenge packet, received: %#04x", msg.Packet.Command())
		}
		return n.receiveChallenge(a.Data)
	case hsResponse:
		a, ok := msg.Packet.(*protocol.Auth)
		if !ok || a.Cmd != protocol.CmdAuthResponse || s != DataStream {
			return n.protocolError("expected AuthResponse packet, received: %#04x", msg.Packet.Command())
		}
		return n.receiveResponse(a.Data)
	}
	if s == MetaStream {
		return n.receiveMeta(msg.Packet)
	}
	return n.receiveData(msg.Packet)
}

func (n *Node) receiveFeatures(f *protocol.ConnectionFeatures) error {
	ours := protocol.ConnectionFeatures{ProtocolMin: protocol.ProtocolMin, ProtocolMax: protocol.ProtocolMax, FeatureFlags: n.cfg.Features}
	d, err := protocol.Agree(ours, *f)
	if err != nil {
		n.logf(LevelError, "incompatible DRBD dialects: %v", err)
		n.dropConnection(Disconnecting, "incompatible dialects")
		return err
	}
	p := n.peer
	p.dialect = d
	n.ready.Dialect = &d
	n.logf(LevelInfo, "Handshake successful: Agreed network protocol version %d", d.Version)
	n.logf(LevelInfo, "Feature flags enabled on protocol level: %#x", d.Features)
	if n.cfg.CramHMACAlg != "" {
		p.myChallenge = make([]byte, challengeLen)
		for i := 0; i < challengeLen; i += 8 {
			v := n.rand()
			for j := 0; j < 8; j++ {
				p.myChallenge[i+j] = byte(v >> (8 * j))
			}
		}
		p.stage = hsChallenge
		n.send(DataStream, &protocol.Auth{Cmd: protocol.CmdAuthChallenge, Data: p.myChallenge})
		return nil
	}
	n.sendParams()
	return nil
}

func (n *Node) receiveChallenge(peerCh []byte) error {
	p := n.peer
	if len(peerCh) < challengeLen || len(peerCh) > 2*challengeLen {
		return n.protocolError("AuthChallenge payload of %d bytes", len(peerCh))
	}
	if bytes.Equal(peerCh[:challengeLen], p.myChallenge) {
		n.logf(LevelError, "Peer presented the same challenge!")
		n.dropConnection(Disconnecting, "peer presented the same challenge")
		return errors.New("replication: peer presented the same challenge")
	}
	resp, err := protocol.Response(n.cfg.CramHMACAlg, n.cfg.SharedSecret, peerCh)
	if err != nil {
		n.logf(LevelError, "cram-hmac-alg %q: %v", n.cfg.CramHMACAlg, err)
		n.dropConnection(Disconnecting, "unsupported cram-hmac-alg")
		return err
	}
	p.stage = hsResponse
	n.send(DataStream, &protocol.Auth{Cmd: protocol.CmdAuthResponse, Data: resp})
	return nil
}

// ErrAuthFailed is returned (and logged) when the peer's answer to our
// challenge shows it does not know the shared secret.
var ErrAuthFailed = errors.New("replication: authentication of peer failed")

func (n *Node) receiveResponse(resp []byte) error {
	p := n.peer
	want, err := protocol.Response(n.cfg.CramHMACAlg, n.cfg.SharedSecret, p.myChallenge)
	if err != nil {
		return n.protocolError("cram-hmac-alg: %v", err)
	}
	if len(resp) != len(want) {
		// DRBD: "expected AuthResponse payload of wrong size", try again.
		n.logf(LevelError, "expected AuthResponse payload of wrong size")
		n.logf(LevelError, "Authentication of peer failed, trying again.")
		n.dropConnection(NetworkFailure, "authentication failed")
		return ErrAuthFailed
	}
	if !hmacEqual(resp, want) {
		// The peer does not know the secret: no point in trying again
		// (DRBD's drbd_do_auth returns -1, the receiver discards the
		// network configuration and goes StandAlone).
		n.logf(LevelError, "Authentication of peer failed")
		n.logf(LevelWarn, "Discarding network configuration.")
		n.dropConnection(Disconnecting, "authentication failed")
		return ErrAuthFailed
	}
	n.logf(LevelInfo, "Peer authenticated using %d bytes HMAC", len(want))
	n.sendParams()
	return nil
}

// hmacEqual compares in constant time.
func hmacEqual(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// sendParams sends P_PROTOCOL and the per-volume parameters, then moves to
// WFReportParams (DRBD's drbd_send_protocol + drbd_connected).
func (n *Node) sendParams() {
	p := n.peer
	p.stage = hsParams
	var cf uint32
	if n.discardMyData {
		cf |= protocol.CFDiscardMyData
	}
	two := uint32(0)
	if n.cfg.AllowTwoPrimaries {
		two = 1
	}
	n.send(DataStream, &protocol.Protocol{
		Cmd:          protocol.CmdProtocol,
		Protocol:     n.cfg.Protocol.Wire(),
		AfterSB0P:    n.cfg.AfterSB0Pri.Wire(),
		AfterSB1P:    n.cfg.AfterSB1Pri.Wire(),
		AfterSB2P:    n.cfg.AfterSB2Pri.Wire(),
		ConnFlags:    cf,
		TwoPrimaries: two,
		IntegrityAlg: n.cfg.IntegrityAlg,
	})
	n.send(DataStream, &protocol.SyncParam{
		ResyncRate:   uint32(n.cfg.ResyncRate),
		VerifyAlg:    n.cfg.VerifyAlg,
		CsumsAlg:     n.cfg.CsumsAlg,
		CPlanAhead:   uint32(n.cfg.CPlanAhead),
		CDelayTarget: uint32(n.cfg.CDelayTarget),
		CFillTarget:  uint32(n.cfg.CFillTarget),
		CMaxRate:     uint32(n.cfg.CMaxRate),
	})
	n.sendSizes()
	n.sendUUIDs()
	p.stateSent = true
	n.sendState()
	_ = n.changeState(StateMask{Conn: true}, State{Conn: WFReportParams}, csHard)
}

func (n *Node) sendSizes() {
	var d, u, c uint64
	if n.ldev != nil {
		d = n.ldev.maxSectors
		u = n.ldev.userSectors
		c = n.ldev.sizeSectors
	}
	s := &protocol.Sizes{DiskSize: d, UserSize: u, CurrentSize: c, MaxBIOSize: protocol.MaxBIOSize}
	if n.peer.dialect.Features&protocol.FeatureWSame != 0 {
		s.QueueLimits = &protocol.QueueLimits{PhysicalBlockSize: 4096, LogicalBlockSize: 512, IOMin: 4096, IOOpt: 4096, DiscardEnabled: 1, DiscardZeroesData: 1}
	}
	n.send(DataStream, s)
}

func (n *Node) sendUUIDs() { n.sendUUIDsWith(0) }

// sendUUIDsWith sends P_UUIDS with extra UUID flags (8: skip the initial
// sync).
func (n *Node) sendUUIDsWith(extra uint64) {
	if n.peer == nil || !n.peer.socketsUp || n.peer.stage < hsParams {
		return
	}
	u := &protocol.UUIDs{Flags: extra}
	if n.ldev != nil {
		u.Current = n.ldev.uuids[uiCurrent]
		u.Bitmap = n.ldev.uuids[uiBitmap]
		u.History = [2]uint64{n.ldev.uuids[uiHistory0], n.ldev.uuids[uiHistory1]}
		u.DirtyBits = n.ldev.bm.Count()
		if n.discardMyData {
			u.Flags |= protocol.UUIDFlagDiscardMyData
		}
		if n.ldev.crashedPrimary {
			u.Flags |= protocol.UUIDFlagCrashedPrimary
		}
		if n.st.Disk == Inconsistent {
			u.Flags |= protocol.UUIDFlagInconsistent
		}
	}
	n.send(DataStream, u)
}

func (n *Node) sendState() {
	if n.peer == nil || !n.peer.socketsUp || n.peer.stage < hsParams {
		return
	}
	n.send(DataStream, &protocol.State{State: n.st.Pack()})
}

// receiveData dispatches a packet from the data socket.
func (n *Node) receiveData(pk protocol.Packet) error {
	switch p := pk.(type) {
	case *protocol.Protocol:
		return n.receiveProtocol(p)
	case *protocol.SyncParam:
		return n.receiveSyncParam(p)
	case *protocol.Sizes:
		return n.receiveSizes(p)
	case *protocol.UUIDs:
		return n.receiveUUIDs(p)
	case *protocol.State:
		return n.receiveState(p)
	case *protocol.StateChgReq:
		return n.receiveStateChgReq(p)
	case *protocol.Data:
		switch p.Cmd {
		case protocol.CmdData:
			return n.receivePeerWrite(p)
		case protocol.CmdDataReply:
			return n.receiveDataReply(p)
		case protocol.CmdRSDataReply:
			return n.receiveRSDataReply(p)
		}
	case *protocol.Trim:
		return n.receivePeerTrim(p)
	case *protocol.Barrier:
		return n.receiveBarrier(p)
	case *protocol.BlockReq:
		return n.receiveBlockReq(p)
	case *protocol.BlockDesc:
		if p.Cmd == protocol.CmdOutOfSync {
			return n.receiveOutOfSync(p)
		}
	case *protocol.Bitmap:
		return n.receiveBitmap(p.Words, nil)
	case *protocol.CompressedBitmap:
		return n.receiveBitmap(nil, p)
	case *protocol.SyncUUID:
		return n.receiveSyncUUID(p)
	case *protocol.Empty:
		if p.Cmd == protocol.CmdUnplugRemote {
			return nil
		}
	case *protocol.DelayProbe, *protocol.Unknown:
		return nil
	}
	return n.protocolError("unexpected packet %#04x on the data socket in state %s", pk.Command(), n.st.Conn)
}

// receiveMeta dispatches a packet from the meta socket.
func (n *Node) receiveMeta(pk protocol.Packet) error {
	switch p := pk.(type) {
	case *protocol.Empty:
		switch p.Cmd {
		case protocol.CmdPing:
			n.send(MetaStream, &protocol.Empty{Cmd: protocol.CmdPingAck})
			return nil
		case protocol.CmdPingAck:
			n.peer.pingSent = 0
			if rs := &n.peer.rs; rs.finishPingSent {
				rs.finishPinged = true
				n.resyncFinished()
			}
			return nil
		}
	case *protocol.StateChgReply:
		n.peerStateReply(p.RetCode)
		return nil
	case *protocol.BlockAck:
		if err := n.receiveBlockAck(p); err != nil {
			return err
		}
		n.seenPeerSeq(p.SeqNum)
		n.recheckConflicts()
		return nil
	case *protocol.BarrierAck:
		return n.receiveBarrierAck(p)
	case *protocol.DelayProbe, *protocol.Unknown:
		return nil
	}
	return n.protocolError("unexpected packet %#04x on the meta socket", pk.Command())
}

func (n *Node) receiveProtocol(p *protocol.Protocol) error {
	if p.Cmd == protocol.CmdProtocolUpdate {
		return nil
	}
	incompatible := func(what string) error {
		n.logf(LevelError, "incompatible %s settings", what)
		n.dropConnection(Disconnecting, "incompatible "+what)
		return fmt.Errorf("replication: incompatible %s settings with the peer", what)
	}
	if p.Protocol != n.cfg.Protocol.Wire() {
		return incompatible("protocol")
	}
	for i, pair := range [][2]uint32{{p.AfterSB0P, n.cfg.AfterSB0Pri.Wire()}, {p.AfterSB1P, n.cfg.AfterSB1Pri.Wire()}, {p.AfterSB2P, n.cfg.AfterSB2Pri.Wire()}} {
		if convertAfterSB(pair[0]) != pair[1] {
			return incompatible(fmt.Sprintf("after-sb-%dpri", i))
		}
	}
	peerDiscard := p.ConnFlags&protocol.CFDiscardMyData != 0
	if peerDiscard && n.discardMyData {
		return incompatible("discard-my-data")
	}
	if (p.TwoPrimaries != 0) != n.cfg.AllowTwoPrimaries {
		return incompatible("allow-two-primaries")
	}
	if p.IntegrityAlg != n.cfg.IntegrityAlg {
		return incompatible("data-integrity-alg")
	}
	n.peer.peerDiscard = peerDiscard
	n.peer.gotProtocol = true
	return nil
}

// convertAfterSB maps the peer's after-sb policy to ours: its
// discard-remote is our discard-local and vice versa.
func convertAfterSB(v uint32) uint32 {
	switch v {
	case ASBDiscardRemote.Wire():
		return ASBDiscardLocal.Wire()
	case ASBDiscardLocal.Wire():
		return ASBDiscardRemote.Wire()
	}
	return v
}

func (n *Node) receiveSyncParam(p *protocol.SyncParam) error {
	if n.st.Conn == WFReportParams {
		if p.VerifyAlg != n.cfg.VerifyAlg {
			n.logf(LevelError, "Different verify-alg settings. me=%q peer=%q", n.cfg.VerifyAlg, p.VerifyAlg)
			n.dropConnection(Disconnecting, "different verify-alg")
			return errors.New("replication: different verify-alg settings")
		}
		if p.CsumsAlg != n.cfg.CsumsAlg {
			n.logf(LevelError, "Different csums-alg settings. me=%q peer=%q", n.cfg.CsumsAlg, p.CsumsAlg)
			n.dropConnection(Disconnecting, "different csums-alg")
			return errors.New("replication: different csums-alg settings")
		}
	}
	n.peer.gotParams = true
	return nil
}

func (n *Node) receiveSizes(p *protocol.Sizes) error {
	pr := n.peer
	pr.peerSize, pr.peerUSize, pr.peerCSize, pr.peerMaxBIO = p.DiskSize, p.UserSize, p.CurrentSize, p.MaxBIOSize
	pr.gotSizes = true
	if n.ldev == nil {
		return nil
	}
	l := n.ldev
	newSize := l.maxSectors
	if p.DiskSize != 0 && p.DiskSize < newSize {
		newSize = p.DiskSize
	}
	if l.userSectors != 0 && l.userSectors < newSize {
		newSize = l.userSectors
	}
	if p.UserSize != 0 && p.UserSize < newSize {
		newSize = p.UserSize
	}
	cur := l.sizeSectors
	if newSize < cur && n.st.Disk >= Outdated && (n.st.Conn < Connected || n.st.PDsk == Diskless) {
		n.logf(LevelError, "The peer's disk size is too small! (%d < %d sectors)", newSize, cur)
		n.dropConnection(Disconnecting, "peer's disk too small")
		return fmt.Errorf("replication: the peer's disk size is too small (%d < %d sectors)", newSize, cur)
	}
	if newSize < cur || cur == 0 {
		// Only shrink data that is not usable, or set the first size.
		l.setSize(newSize)
		n.logf(LevelInfo, "size = %d sectors", newSize)
		n.writeSuperblock(nil)
	}
	return nil
}

func (n *Node) receiveUUIDs(p *protocol.UUIDs) error {
	pr := n.peer
	pr.uuids = genUUIDs{p.Current, p.Bitmap, p.History[0], p.History[1]}
	pr.dirtyBits = p.DirtyBits
	pr.uuidFlags = p.Flags
	pr.gotUUIDs = true
	// Skip the initial sync: the peer created a new current UUID with
	// --clear-bitmap while we are both fresh (flag 8).
	if n.ldev != nil && n.st.Conn == Connected && pr.dialect.Version >= 90 &&
		n.ldev.uuids[uiCurrent] == uuidJustCreated && p.Flags&8 != 0 {
		n.logf(LevelInfo, "Accepted new current UUID, preparing to skip initial sync")
		n.ldev.bm.ClearAll()
		n.ldev.uuids[uiCurrent] = p.Current &^ 1
		n.ldev.uuids[uiBitmap] = 0
		_ = n.changeState(StateMask{Disk: true, PDsk: true}, State{Disk: UpToDate, PDsk: UpToDate}, csHard)
		n.ldev.writeAllBitmap(n, nil)
		n.writeSuperblock(nil)
		// Tell the peer at once: it may have seen our Inconsistent state
		// from the handshake after it declared both sides UpToDate.
		n.sendState()
	}
	return nil
}

// receiveState handles P_STATE: during the handshake it decides the sync
// direction (DRBD's receive_state + drbd_sync_handshake); later it tracks
// the peer's role and disk.
func (n *Node) receiveState(p *protocol.State) error {
	ps, err := UnpackState(p.State)
	if err != nil {
		return n.protocolError("%v", err)
	}
	pr := n.peer
	os := n.st
	if os.Conn <= TearDown {
		return nil
	}
	realPeerDisk := ps.Disk
	if ps.Disk == Negotiating {
		realPeerDisk = Consistent
		if pr.uuidFlags&protocol.UUIDFlagInconsistent != 0 {
			realPeerDisk = Inconsistent
		}
	}
	if (os.PDsk == Inconsistent || os.PDsk == Consistent) && realPeerDisk == UpToDate && os.Conn > Connected && os.Disk == UpToDate {
		if ps.Conn > Connected && ps.Conn < SyncSource {
			realPeerDisk = Inconsistent
		} else if os.Conn >= SyncSource && ps.Conn == Connected {
			if n.ldev != nil && n.ldev.bm.Count() <= pr.rs.failed {
				n.resyncFinished()
			}
			return nil
		}
	}
	if os.Conn == VerifyT && os.Disk == UpToDate && ps.Conn == Connected && realPeerDisk == UpToDate {
		n.verifyFinished()
		return nil
	}
	if os.PDsk == UpToDate && realPeerDisk == Inconsistent && os.Conn == Connected && ps.Conn > SyncSource {
		realPeerDisk = UpToDate
	}

	ns := os
	if ns.Conn == WFReportParams {
		ns.Conn = Connected
	}
	if ps.Conn == Ahead {
		ns.Conn = Behind
	}
	if pr.gotUUIDs && ps.Disk >= Negotiating && n.ldev != nil {
		consider := os.Conn < Connected
		consider = consider || (os.Conn == Connected && (ps.Disk == Negotiating || os.Disk == Negotiating))
		consider = consider || pr.rs.considerResync
		consider = consider || (os.Conn == Connected && ps.Conn >= StartingSyncS && ps.Conn <= WFBitMapT)
		if consider {
			c, ok := n.syncHandshake(ps.Role, realPeerDisk)
			if !ok {
				// As DRBD's receive_state: a peer attaching late (kernel
				// DRBD; gdrbd attaches only while unconnected) stays
				// connected without its disk; any other failed handshake,
				// also on a connection already up (a forced primary, the
				// peer starting a resync), ends the connection instead of
				// going on as if the data were the same.
				if os.Conn != WFReportParams && ps.Disk == Negotiating {
					n.logf(LevelError, "Disk attach process on the peer node was aborted.")
					realPeerDisk = Diskless
					ns.Conn = Connected
				} else {
					n.dropConnection(Disconnecting, "sync handshake failed")
					return errors.New("replication: sync handshake failed")
				}
			} else {
				ns.Conn = c
			}
		}
	}
	pr.rs.considerResync = false
	ns.Peer = ps.Role
	ns.PDsk = realPeerDisk
	ns.PeerISP = ps.AftrISP || ps.UserISP
	f := changeFlags(0)
	if !(os.Conn < Connected && ns.Conn >= Connected) {
		f = csHard
	}
	ns = sanitizeState(n.ruleEnv(), os, ns)
	if os.Conn == WFReportParams && ns.Conn >= Connected {
		pr.stage = hsDone
	}
	if err := n.setState(os, ns, f); err != nil {
		n.logf(LevelError, "State change failed: %v", err)
		n.dropConnection(Disconnecting, "state change failed")
		return err
	}
	if os.Conn > WFReportParams && n.st.Conn > Connected && ps.Conn <= Connected && ps.Disk != Negotiating {
		// We want a resync the peer has not decided yet (forced primary).
		n.sendUUIDs()
		n.sendState()
	}
	n.discardMyData = false
	n.writeSuperblock(nil)
	return nil
}

// syncHandshake decides, after the UUID exchange, whether and in which
// direction to resync (DRBD's drbd_sync_handshake). ok is false when the
// connection must be dropped (unrelated data, unresolved split brain, ...).
func (n *Node) syncHandshake(peerRole Role, peerDisk DiskState) (ConnState, bool) {
	l, pr := n.ldev, n.peer
	myDisk := n.st.Disk
	c := uuidCompare{
		self: l.uuids, peer: pr.uuids, peerFlags: pr.uuidFlags,
		selfCrashedPrimary: l.crashedPrimary, selfRole: n.st.Role, peerRole: peerRole,
		resolveConflicts: pr.resolveConflicts, agreedVersion: pr.dialect.Version,
		agreedFeatures: pr.dialect.Features,
	}
	n.logf(LevelInfo, "drbd_sync_handshake:")
	n.logf(LevelInfo, "self %s bits:%d flags:0", l.uuids, l.bm.Count())
	n.logf(LevelInfo, "peer %s bits:%d flags:%X", pr.uuids, pr.dirtyBits, pr.uuidFlags)
	hg, rule := c.compare()
	for _, s := range c.log {
		n.logf(LevelInfo, "%s", s)
	}
	l.uuids, pr.uuids = c.self, c.peer
	n.logf(LevelInfo, "uuid_compare()=%d by rule %d", hg, rule)

	if hg == hgUnrelated {
		n.logf(LevelError, "Unrelated data, aborting!")
		pr.rs.lastDecision = "unrelated data"
		return 0, false
	}
	if hg < -0x10000 {
		n.logf(LevelError, "To resolve this both sides have to support at least protocol %d and feature flags %#x", (-hg)&0xff, ((-hg)>>8)&0xff)
		return 0, false
	}
	if hg < -1000 {
		n.logf(LevelError, "To resolve this both sides have to support at least protocol %d", -hg-1000)
		return 0, false
	}
	if (myDisk == Inconsistent && peerDisk > Inconsistent) || (peerDisk == Inconsistent && myDisk > Inconsistent) {
		f := hg == -100 || hg == 2 || hg == -2
		if myDisk > Inconsistent {
			hg = 1
		} else {
			hg = -1
		}
		if f {
			hg *= 2
		}
		dir := "target"
		if hg > 0 {
			dir = "source"
		}
		n.logf(LevelInfo, "Becoming sync %s due to disk states.", dir)
	}
	if hg == 100 || hg == -100 {
		n.runHandler("initial-split-brain", false)
	}
	if hg == 100 {
		in := splitBrainInput{
			selfBitmapPrimaryBit: l.uuids[uiBitmap]&1 == 1,
			peerBitmapPrimaryBit: pr.uuids[uiBitmap]&1 == 1,
			selfChanges:          l.bm.Count(),
			peerChanges:          pr.dirtyBits,
			resolveConflicts:     pr.resolveConflicts,
			selfRole:             n.st.Role,
			after0:               n.cfg.AfterSB0Pri, after1: n.cfg.AfterSB1Pri, after2: n.cfg.AfterSB2Pri,
		}
		pcount := 0
		if n.st.Role == RolePrimary {
			pcount++
		}
		if peerRole == RolePrimary {
			pcount++
		}
		var demote bool
		switch pcount {
		case 0:
			hg = in.recover0p()
		case 1:
			hg, demote = in.recover1p()
		case 2:
			hg, demote = in.recover2p()
		}
		if demote {
			if err := n.changeState(StateMask{Role: true}, State{Role: RoleSecondary}, 0); err != nil {
				n.runHandler("pri-lost-after-sb", false)
				hg = -100
			} else {
				n.logf(LevelWarn, "Successfully gave up primary role.")
			}
		}
		if hg != -100 && hg != 100 {
			from := "this"
			if hg < 0 {
				from = "peer"
			}
			n.logf(LevelWarn, "Split-Brain detected, %d primaries, automatically solved. Sync from %s node", pcount, from)
		}
	}
	if hg == -100 {
		if n.discardMyData && pr.uuidFlags&protocol.UUIDFlagDiscardMyData == 0 {
			hg = -1
		}
		if !n.discardMyData && pr.uuidFlags&protocol.UUIDFlagDiscardMyData != 0 {
			hg = 1
		}
		if hg != -100 {
			from := "this"
			if hg < 0 {
				from = "peer"
			}
			n.logf(LevelWarn, "Split-Brain detected, manually solved. Sync from %s node", from)
		}
	}
	if hg == -100 || hg == 100 {
		n.logf(LevelError, "Split-Brain detected but unresolved, dropping connection!")
		n.runHandler("split-brain", false)
		pr.rs.lastDecision = "split brain"
		return 0, false
	}
	if hg > 0 && myDisk <= Inconsistent {
		n.logf(LevelError, "I shall become SyncSource, but I am inconsistent!")
		return 0, false
	}
	if hg < 0 && n.st.Role == RolePrimary && n.st.Disk >= Consistent {
		switch n.cfg.RRConflict {
		case ASBCallHelper:
			n.runHandler("pri-lost", false)
			fallthrough
		case ASBDisconnect:
			n.logf(LevelError, "I shall become SyncTarget, but I am primary!")
			return 0, false
		case ASBViolently:
			n.logf(LevelWarn, "Becoming SyncTarget, violating the stable-data assumption")
		}
	}
	if hg >= 2 || hg <= -2 {
		n.logf(LevelInfo, "Writing the whole bitmap, full sync required after drbd_sync_handshake.")
		l.bm.SetAll()
		l.writeAllBitmap(n, nil)
	}
	switch {
	case hg > 0:
		pr.rs.lastDecision = "sync source"
		return WFBitMapS, true
	case hg < 0:
		pr.rs.lastDecision = "sync target"
		return WFBitMapT, true
	}
	pr.rs.lastDecision = "no resync"
	if c := l.bm.Count(); c != 0 {
		n.logf(LevelInfo, "No resync, but %d bits in bitmap!", c)
	}
	return Connected, true
}

// receiveStateChgReq answers a cluster-wide state change the peer
// proposes (P_STATE_CHG_REQ / P_CONN_ST_CHG_REQ), from our point of view.
func (n *Node) receiveStateChgReq(p *protocol.StateChgReq) error {
	reply := protocol.CmdStateChgReply
	if p.Cmd == protocol.CmdConnStChgReq {
		reply = protocol.CmdConnStChgReply
	}
	if n.pendingAdmin != nil && n.peer.resolveConflicts {
		n.send(MetaStream, &protocol.StateChgReply{Cmd: reply, RetCode: ErrConcurrentStChg.Code()})
		return nil
	}
	mask := UnpackMask(p.Mask)
	val, err := UnpackState(p.Val & mask.Pack())
	if err != nil {
		return n.protocolError("%v", err)
	}
	mask, val = convertState(mask, val)
	code := ssSuccess
	if err := n.changeState(mask, val, csLocalOnly); err != nil {
		var se StateErr
		if errors.As(err, &se) {
			code = se.Code()
		} else {
			code = ErrInTransientState.Code()
		}
	} else if mask.Conn && val.Conn == TearDown {
		// The peer disconnects gracefully.
		n.send(MetaStream, &protocol.StateChgReply{Cmd: reply, RetCode: code})
		n.dropConnection(NetworkFailure, "peer disconnected")
		return nil
	}
	n.send(MetaStream, &protocol.StateChgReply{Cmd: reply, RetCode: code})
	n.writeSuperblock(nil)
	return nil
}

// convertState turns the peer's view of a state change into ours (DRBD's
// convert_state): roles and disks swap, some connection states mirror.
func convertState(m StateMask, v State) (StateMask, State) {
	cm := m
	cm.Role, cm.Peer = m.Peer, m.Role
	cm.Disk, cm.PDsk = m.PDsk, m.Disk
	cm.PeerISP = m.AftrISP || m.UserISP
	cm.AftrISP, cm.UserISP = false, false
	cv := v
	cv.Role, cv.Peer = v.Peer, v.Role
	cv.Disk, cv.PDsk = v.PDsk, v.Disk
	cv.PeerISP = v.AftrISP || v.UserISP
	switch v.Conn {
	case StartingSyncS:
		cv.Conn = StartingSyncT
	case StartingSyncT:
		cv.Conn = StartingSyncS
	case Disconnecting:
		cv.Conn = TearDown
	case VerifyS:
		cv.Conn = VerifyT
	}
	return cm, cv
}

// Tick advances the node's clock by one tick: pings, timeouts, resync
// pacing.
func (n *Node) Tick() {
	n.stats.ticks++
	p := n.peer
	if p == nil {
		return
	}
	p.now++
	if !p.socketsUp {
		return
	}
	if p.stage < hsParams {
		// DRBD allows 4x ping-timeout for the first exchange.
		if p.now-p.lastRecv > int64(4*n.cfg.PingTimeoutTicks) && p.now-p.lastDataSend > int64(4*n.cfg.PingTimeoutTicks) {
			n.logf(LevelWarn, "handshake timed out")
			n.dropConnection(Timeout, "handshake timeout")
		}
		return
	}
	if p.pingSent != 0 {
		if p.now-p.pingSent > int64(n.cfg.PingTimeoutTicks) {
			n.logf(LevelWarn, "PingAck did not arrive in time.")
			n.dropConnection(NetworkFailure, "ping timeout")
			return
		}
	} else if p.now-p.lastRecv >= int64(n.cfg.PingIntTicks) {
		p.pingSent = p.now
		n.send(MetaStream, &protocol.Empty{Cmd: protocol.CmdPing})
	}
	if n.seqGateExpired() {
		n.logf(LevelError, "Timed out waiting for missing ack packets; disconnecting")
		n.dropConnection(Timeout, "missing ack packets")
		return
	}
	if since, waiting := n.oldestPeerWait(); waiting && n.cfg.KoCount > 0 {
		if age := p.now - since; age > int64(n.cfg.TimeoutTicks*n.cfg.KoCount) {
			n.logf(LevelWarn, "Remote failed to finish a request within ko-count * timeout")
			n.dropConnection(Timeout, "request timeout")
			return
		}
	}
	n.resyncTick()
}
