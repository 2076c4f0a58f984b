package replication

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"

	"github.com/gdrbd/gdrbd/protocol"
)

// Resync: after the UUID handshake picked a direction, both sides exchange
// bitmaps (OR-merged), the sync source sends P_SYNC_UUID, and the sync
// target pulls every out-of-sync block with P_RS_DATA_REQUEST (or
// P_CSUM_RS_REQUEST when csums-alg is set) at the configured rate. Bits
// are cleared on the target when the block is written, on the source when
// P_RS_WRITE_ACK / P_RS_IS_IN_SYNC arrives; the bitmap is written out as
// it shrinks, so an interrupted resync resumes where it stopped.
//
// Resync and application writes never overlap in flight: on the source a
// resync read waits for overlapping application writes and holds back new
// ones until its data is queued for sending; on the target a block is not
// requested while a write to it is in flight, and writes wait for an
// overlapping request until its data is written. The data socket is
// ordered, so the target always applies overlapping writes in the order
// the source produced them.

// Special block IDs (DRBD's ID_IN_SYNC, ID_OUT_OF_SYNC).
const (
	idInSync    uint64 = 4711
	idOutOfSync uint64 = 4712
)

// resync is the per-connection resync and verify bookkeeping.
type resync struct {
	considerResync bool
	lastDecision   string

	// bitmap exchange
	bmSent     bool
	bmRecvBit  uint64 // next bit expected from the peer
	bmRecvDone bool
	bmPackets  [2]int

	// progress
	total     uint64 // bits to sync at start
	failed    uint64
	startTick int64
	doneBits  uint64
	sameCsum  uint64
	cursor    uint64 // next bit to look at (target)

	// the ping that orders our last acks before our final state
	finishPingSent, finishPinged bool

	// c-min-rate throttle: application I/O seen at the last tick
	lastIOSectors uint64
	throttled     uint64 // ticks the resync gave way to the application
	avgKiB        int64  // recent resync speed

	// rate control (target)
	inFlightSect int64 // sectors requested, not yet written
	sectIn       int64 // sectors that came in since the last tick
	plan         []int64
	planTotal    int64
	rateKiB      int // current rate, for status

	// requests in flight, by sector (target: resync requests; source: reads)
	pending map[uint64]*rsReq

	// verify
	ovPos   uint64 // next sector to verify (VerifyS)
	ovLeft  uint64 // blocks left
	ovFound uint64 // out-of-sync blocks found
	ovTotal uint64
}

// rsReq is a resync or verify request in flight.
type rsReq struct {
	sector uint64
	size   int64
	lock   *rangeLock
	// writing: the target's resync write is on the disk. Its lock stays
	// until the write completes, also when the connection drops
	// (orphan: resyncClear left the unlock to the completion), so that
	// no newer write of the same blocks runs beside it and lands first.
	writing, orphan bool
}

func (r *resync) reset() {
	keep := r.lastDecision
	*r = resync{lastDecision: keep, pending: map[uint64]*rsReq{}}
}

// resyncClear forgets the resync state when the connection drops. Bits
// that were not confirmed stay set: the next connect resumes.
func (n *Node) resyncClear() {
	if n.peer == nil {
		return
	}
	keys := make([]uint64, 0, len(n.peer.rs.pending))
	for k := range n.peer.rs.pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		q := n.peer.rs.pending[k]
		if q.writing {
			// Its write is still on the disk: the lock goes when it
			// completes. Meanwhile it is a write like any other, also to
			// the next connection's resync of the same blocks (resync
			// locks do not conflict with each other; rangeBusy skips
			// the range).
			q.orphan = true
			if q.lock != nil {
				q.lock.kind = lockWrite
			}
			continue
		}
		if q.lock != nil {
			n.unlockRange(q.lock)
		}
	}
	n.peer.rs.reset()
	if n.ldev != nil {
		n.ldev.writeDirtyBitmap(n, nil)
	}
}

// ---- bitmap exchange ----

// sendBitmap sends our whole bitmap in chunks, as DRBD's send_bitmap:
// with use-rle a P_COMPRESSED_BITMAP chunk whenever RLE is shorter than
// plain words, else a P_BITMAP chunk of plain words. Each chunk fits the
// 4 KiB socket buffer with its header.
func (n *Node) sendBitmap() {
	if n.peer == nil || !n.peer.socketsUp || n.ldev == nil {
		return
	}
	bm := n.ldev.bm
	hdr := n.peer.dialect.HeaderSize()
	wordsPer := (protocol.BitmapPacketMax - hdr) / 8
	nbits := bm.Len()
	rs := &n.peer.rs
	if nbits == 0 {
		n.send(DataStream, &protocol.Bitmap{})
		return
	}
	code := make([]byte, protocol.BitmapPacketMax-hdr-1)
	for off := uint64(0); off < nbits; {
		if n.cfg.UseRLE && n.peer.dialect.Version >= 90 {
			enc, cn, next := bm.EncodeRLE(code, off)
			if cn > 0 {
				n.send(DataStream, &protocol.CompressedBitmap{Encoding: enc, Code: append([]byte(nil), code[:cn]...)})
				rs.bmPackets[0]++
				off = next
				continue
			}
			off = next / 64 * 64
		}
		w := int(off / 64)
		words := make([]uint64, wordsPer)
		c := bm.CopyWords(words, w)
		n.send(DataStream, &protocol.Bitmap{Words: words[:c]})
		rs.bmPackets[1]++
		off = min(uint64(w+c)*64, nbits)
	}
	rs.bmSent = true
}

// receiveBitmap merges one P_BITMAP / P_COMPRESSED_BITMAP chunk; after
// the last chunk the sync target answers with its own bitmap and waits for
// the sync UUID, the source starts the resync.
func (n *Node) receiveBitmap(words []uint64, c *protocol.CompressedBitmap) error {
	if n.st.Conn != WFBitMapS && n.st.Conn != WFBitMapT {
		return n.protocolError("bitmap packet in state %s", n.st.Conn)
	}
	if n.ldev == nil {
		return n.protocolError("bitmap packet while diskless")
	}
	rs := &n.peer.rs
	bm := n.ldev.bm
	nbits := bm.Len()
	if c != nil {
		next, err := bm.MergeRLE(c.Encoding, c.Code, rs.bmRecvBit)
		if err != nil {
			return n.protocolError("compressed bitmap: %v", err)
		}
		rs.bmRecvBit = next
		rs.bmPackets[0]++
	} else {
		// After a compressed chunk that ended mid-word the sender goes on
		// from the start of that word (DRBD's send_bitmap_rle_or_plain;
		// bm_xfer_ctx_bit_to_word_offset): the bits both cover are ORed
		// twice.
		w := rs.bmRecvBit / 64
		if uint64(len(words)) > uint64(bm.WordCount())-min(w, uint64(bm.WordCount())) {
			return n.protocolError("bitmap packet beyond %d words", bm.WordCount())
		}
		if len(words) == 0 && nbits != 0 {
			return n.protocolError("empty bitmap packet")
		}
		if _, err := bm.MergeWords(int(w), words); err != nil {
			return n.protocolError("bitmap: %v", err)
		}
		rs.bmRecvBit = min((w+uint64(len(words)))*64, nbits)
		rs.bmPackets[1]++
	}
	if rs.bmRecvBit < nbits {
		return nil
	}
	rs.bmRecvDone = true
	n.logf(LevelInfo, "receive bitmap stats: %d compressed and %d plain packets", rs.bmPackets[0], rs.bmPackets[1])
	n.ldev.writeDirtyBitmap(n, nil)
	if n.st.Conn == WFBitMapT {
		n.sendBitmap()
		_ = n.changeState(StateMask{Conn: true}, State{Conn: WFSyncUUID}, csHard)
		return nil
	}
	n.startResync(SyncSource)
	return nil
}

// receiveOutOfSync handles P_OUT_OF_SYNC (a peer in Ahead mode).
func (n *Node) receiveOutOfSync(p *protocol.BlockDesc) error {
	if err := n.checkPeerRange(p.Sector, int64(p.BlockSize)); err != nil {
		return err
	}
	n.setOutOfSync(int64(p.Sector)*512, int64(p.BlockSize))
	return nil
}

// ---- start and finish ----

// startResync enters SyncSource or SyncTarget (DRBD's drbd_start_resync).
func (n *Node) startResync(side ConnState) {
	if n.ldev == nil {
		return
	}
	rs := &n.peer.rs
	if side == SyncTarget {
		n.runHandler("before-resync-target", false)
	}
	rs.total = n.ldev.bm.Count()
	rs.failed = 0
	rs.doneBits = 0
	rs.startTick = n.peer.now
	rs.cursor = 0
	rs.plan = make([]int64, max(n.cfg.CPlanAhead, 0))
	rs.planTotal = 0
	rs.inFlightSect = 0
	rs.sectIn = 0
	if rs.pending == nil {
		rs.pending = map[uint64]*rsReq{}
	}
	ns := State{Conn: side}
	mask := StateMask{Conn: true}
	if side == SyncTarget {
		ns.Disk = Inconsistent
		mask.Disk = true
	} else {
		ns.PDsk = Inconsistent
		mask.PDsk = true
	}
	if err := n.changeState(mask, ns, csHard); err != nil {
		n.logf(LevelError, "could not start resync: %v", err)
		return
	}
	n.logf(LevelInfo, "Began resync as %s (will sync %d KB [%d bits set]).", n.st.Conn, rs.total*4, rs.total)
	if rs.total == 0 {
		// Nothing to do: finish at once (DRBD does the same).
		if side == SyncTarget || n.peer.dialect.Version < 95 {
			n.resyncFinished()
		}
	}
}

// startResyncSource generates and sends the sync UUID when we become the
// sync source (DRBD's drbd_gen_and_send_sync_uuid).
func (n *Node) startResyncSource() {
	l := n.ldev
	if l == nil || n.peer == nil {
		return
	}
	uuid := l.uuids[uiBitmap]
	if uuid != 0 && uuid != uuidJustCreated {
		uuid += uuidNewBMOffset
	} else {
		uuid = n.rand()
	}
	// drbd_uuid_set: the old bitmap UUID moves to history.
	if l.uuids[uiBitmap] != 0 {
		l.uuids[uiHistory1] = l.uuids[uiHistory0]
		l.uuids[uiHistory0] = l.uuids[uiBitmap]
	}
	// Stored and sent as is (__drbd_uuid_set masks only the current
	// UUID): bit 0 of a bitmap UUID taken from a Primary's current UUID
	// is what discard-younger/older-primary read after a split brain.
	l.uuids[uiBitmap] = uuid
	n.logf(LevelInfo, "updated sync UUID %s", l.uuids)
	n.writeSuperblock(nil)
	n.send(DataStream, &protocol.SyncUUID{UUID: l.uuids[uiBitmap]})
}

// receiveSyncUUID handles P_SYNC_UUID on the sync target.
func (n *Node) receiveSyncUUID(p *protocol.SyncUUID) error {
	if n.st.Conn != WFSyncUUID && n.st.Conn != Behind {
		return n.protocolError("P_SYNC_UUID in state %s", n.st.Conn)
	}
	if n.ldev == nil {
		n.logf(LevelError, "Ignoring SyncUUID packet!")
		return nil
	}
	n.setCurrentUUID(p.UUID)
	n.ldev.uuids[uiBitmap] = 0
	n.logf(LevelInfo, "updated sync uuid %s", n.ldev.uuids)
	n.writeSuperblock(nil)
	n.startResync(SyncTarget)
	return nil
}

// maybeResyncDone finishes the resync when every bit is done.
func (n *Node) maybeResyncDone() {
	if n.peer == nil || n.ldev == nil {
		return
	}
	c := n.st.Conn
	if c != SyncSource && c != SyncTarget && c != PausedSyncS && c != PausedSyncT {
		return
	}
	rs := &n.peer.rs
	if len(rs.pending) > 0 {
		return
	}
	if n.ldev.bm.Count() <= rs.failed {
		n.resyncFinished()
	}
}

// resyncFinished ends a resync or verify (DRBD's drbd_resync_finished):
// states to Connected / UpToDate and the generation UUIDs handed over.
//
// PING BEFORE FINISH: like DRBD's drbd_resync_finished (ping_peer), the
// node first pings the peer and finishes when the ack arrives. Our acks
// and our final P_STATE travel on different sockets; a DRBD 8.4 sync
// source (protocol > 95) finishes only on that P_STATE and only if every
// P_RS_WRITE_ACK was processed before it, else it waits forever. The
// P_PING_ACK comes back after the peer processed every meta packet sent
// before the ping.
func (n *Node) resyncFinished() {
	if n.peer == nil || n.ldev == nil {
		return
	}
	os := n.st
	if os.Conn <= Connected {
		return
	}
	rs := &n.peer.rs
	if !rs.finishPinged {
		if rs.finishPingSent {
			return // already waiting for the ack
		}
		rs.finishPingSent = true
		n.peer.pingSent = n.peer.now
		n.send(MetaStream, &protocol.Empty{Cmd: protocol.CmdPing})
		return
	}
	rs.finishPinged, rs.finishPingSent = false, false
	l := n.ldev
	verify := os.Conn == VerifyS || os.Conn == VerifyT
	dt := (n.peer.now - rs.startTick) * int64(n.cfg.TickMillis) / 1000
	if dt <= 0 {
		dt = 1
	}
	what := "Resync"
	if verify {
		what = "Online verify"
	}
	n.logf(LevelInfo, "%s done (total %d sec; %d K/sec)", what, dt, int64(rs.total)*4/dt)
	ns := os
	ns.Conn = Connected
	if verify {
		if rs.ovFound > 0 {
			n.logf(LevelWarn, "Online verify found %d 4k block out of sync!", rs.ovFound)
			n.runHandler("out-of-sync", false)
		}
	} else {
		if os.Conn == SyncTarget || os.Conn == PausedSyncT {
			n.runHandler("after-resync-target", false)
		}
		if n.cfg.CsumsAlg != "" && rs.total > 0 {
			n.logf(LevelInfo, "%d %% had equal checksums, eliminated: %dK; transferred %dK total %dK",
				rs.sameCsum*100/rs.total, rs.sameCsum*4, (rs.total-rs.sameCsum)*4, rs.total*4)
		}
	}
	if !verify && rs.failed > 0 {
		n.logf(LevelWarn, "            %d failed blocks", rs.failed)
		if os.Conn == SyncTarget || os.Conn == PausedSyncT {
			ns.Disk, ns.PDsk = Inconsistent, UpToDate
		} else {
			ns.Disk, ns.PDsk = UpToDate, Inconsistent
		}
	} else if !verify {
		ns.Disk, ns.PDsk = UpToDate, UpToDate
		if os.Conn == SyncTarget || os.Conn == PausedSyncT {
			pu := n.peer.uuids
			for i := uiBitmap; i <= uiHistory1; i++ {
				l.uuids[i] = pu[i]
			}
			// drbd_uuid_set(BITMAP, current): old bitmap to history.
			if l.uuids[uiBitmap] != 0 {
				l.uuids[uiHistory1] = l.uuids[uiHistory0]
				l.uuids[uiHistory0] = l.uuids[uiBitmap]
			}
			l.uuids[uiBitmap] = l.uuids[uiCurrent] &^ 1
			n.setCurrentUUID(pu[uiCurrent])
		}
		n.setBitmapUUID(0)
		n.logf(LevelInfo, "updated UUIDs %s", l.uuids)
		n.peer.uuids = l.uuids
	}
	if verify {
		ns.Disk, ns.PDsk = os.Disk, os.PDsk
	}
	ns = sanitizeState(n.ruleEnv(), os, ns)
	if err := n.setState(os, ns, csHard); err != nil {
		n.logf(LevelError, "resync finish: %v", err)
	}
	rs.total, rs.failed = 0, 0
	n.writeSuperblock(nil)
}

// verifyFinished ends an online verify on the verify target.
func (n *Node) verifyFinished() { n.resyncFinished() }

// ---- rate control and requests (sync target, verify source) ----

// resyncTick issues the requests allowed in this tick.
func (n *Node) resyncTick() {
	c := n.st.Conn
	if c != SyncTarget && c != VerifyS {
		return
	}
	rs := &n.peer.rs
	if n.ldev == nil {
		return
	}
	sectIn := rs.sectIn
	rs.sectIn = 0
	var blocks int64
	tick := int64(n.cfg.TickMillis)
	if len(rs.plan) > 0 {
		sect := n.rsController(sectIn)
		blocks = sect / sectorsPerBlock
		rs.rateKiB = int(blocks * 4 * 1000 / tick)
	} else {
		rs.rateKiB = n.cfg.ResyncRate
		blocks = int64(n.cfg.ResyncRate) * tick / 1000 / 4
	}
	// C-MIN-RATE: while the application does I/O here (its own requests,
	// or the peer's writes of the application running there), a resync
	// faster than c-min-rate gives way: this tick it only asks for
	// c-min-rate's share (DRBD's drbd_rs_c_min_rate_throttle; 64 sectors
	// of other I/O count as activity).
	appIO := n.ioSectors - rs.lastIOSectors
	rs.lastIOSectors = n.ioSectors
	// The resync's speed is averaged over about a second (DRBD averages
	// over its sync marks), so a throttled tick does not count as slow.
	curKiB := sectIn / 2 * 1000 / tick
	rs.avgKiB = (rs.avgKiB*7 + curKiB) / 8
	if minKiB := int64(n.cfg.CMinRate); minKiB > 0 && appIO > 64 && rs.avgKiB > minKiB {
		blocks = min(blocks, max(minKiB*tick/1000/4, 1))
		rs.throttled++
	}
	// Never more than max-buffers/2 in flight.
	maxInFlight := int64(n.cfg.MaxBuffers/2) * sectorsPerBlock
	if c == SyncTarget {
		n.makeResyncRequests(blocks, maxInFlight)
	} else {
		n.makeVerifyRequests(blocks, maxInFlight)
	}
}

// rsController is DRBD's dynamic resync-rate controller: it plans ahead
// c-plan-ahead ticks to keep c-fill-target sectors (or c-delay-target
// worth of data) in flight, never above c-max-rate. It returns the
// sectors to request in this tick.
func (n *Node) rsController(sectIn int64) int64 {
	rs := &n.peer.rs
	steps := int64(len(rs.plan))
	tick := int64(n.cfg.TickMillis)
	var want int64
	if rs.inFlightSect+sectIn == 0 {
		want = int64(n.cfg.ResyncRate) * 2 * tick / 1000 * steps
	} else if n.cfg.CFillTarget > 0 {
		want = int64(n.cfg.CFillTarget)
	} else {
		want = sectIn * int64(n.cfg.CDelayTarget)
	}
	correction := want - rs.inFlightSect - rs.planTotal
	cps := correction / steps
	for i := range rs.plan {
		rs.plan[i] += cps
	}
	rs.planTotal += cps * steps
	curr := rs.plan[0]
	copy(rs.plan, rs.plan[1:])
	rs.plan[len(rs.plan)-1] = 0
	rs.planTotal -= curr
	req := sectIn + curr
	if req < 0 {
		req = 0
	}
	if maxSect := int64(n.cfg.CMaxRate) * 2 * tick / 1000; req > maxSect {
		req = maxSect
	}
	return req
}

// makeResyncRequests asks the sync source for up to `blocks` 4 KiB blocks,
// merging adjacent out-of-sync blocks into requests of up to 1 MiB.
func (n *Node) makeResyncRequests(blocks, maxInFlight int64) {
	rs := &n.peer.rs
	bm := n.ldev.bm
	bits := bm.Len()
	maxBlocks := uint64(protocol.MaxBIOSize / BlockSize)
	if n.peer.peerMaxBIO != 0 && uint64(n.peer.peerMaxBIO)/BlockSize < maxBlocks {
		maxBlocks = max(uint64(n.peer.peerMaxBIO)/BlockSize, 1)
	}
	sizeBlocks := (n.ldev.sizeSectors + sectorsPerBlock - 1) / sectorsPerBlock
	limit := min(bits, sizeBlocks)
	wrapped := false
	for blocks > 0 && rs.inFlightSect < maxInFlight {
		b, ok := bm.NextSet(rs.cursor)
		if !ok || b >= limit {
			rs.cursor = 0
			if first, ok := bm.NextSet(0); !ok || first >= limit || len(rs.pending) > 0 {
				if len(rs.pending) == 0 {
					n.maybeResyncDone()
				}
				return
			}
			if wrapped {
				// Every remaining block has a write in flight: try again
				// next tick.
				return
			}
			wrapped = true
			b, _ = bm.NextSet(0)
		}
		end, ok := bm.NextClear(b)
		if !ok {
			end = bits
		}
		end = min(end, b+maxBlocks, b+uint64(blocks), sizeBlocks)
		off := int64(b) * BlockSize
		length := int64(end-b) * BlockSize
		if last := int64(n.ldev.sizeSectors) * 512; off+length > last {
			length = last - off
		}
		if length <= 0 {
			rs.cursor = end
			continue
		}
		sector := uint64(off) / 512
		if _, busy := rs.pending[sector]; busy || n.rangeBusy(off, length) || n.alBusy(off, length) {
			rs.cursor = end
			if rs.cursor >= bits {
				rs.cursor = 0
				return
			}
			continue
		}
		lock := n.lockRange(off, length, lockResync, nil)
		q := &rsReq{sector: sector, size: length, lock: lock}
		rs.pending[sector] = q
		rs.inFlightSect += length / 512
		blocks -= int64(end - b)
		rs.cursor = end
		if n.cfg.CsumsAlg != "" && n.peer.dialect.Version >= 89 {
			// Checksum first: read our copy, send its digest.
			n.ldev.inFlight++
			n.submitDisk(DiskOp{Op: OpRead, Offset: off, Length: length}, func(err error, data []byte) {
				n.ldev.inFlight--
				defer n.maybeFinishDetach()
				if n.peer == nil || !n.peer.socketsUp || n.peer.rs.pending[sector] != q {
					return
				}
				if err != nil {
					n.diskError("read", err)
					n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdRSDataRequest, Sector: sector, BlockID: idSyncer, BlockSize: uint32(length)})
					return
				}
				d, derr := Digest(n.cfg.CsumsAlg, data)
				if derr != nil {
					n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdRSDataRequest, Sector: sector, BlockID: idSyncer, BlockSize: uint32(length)})
					return
				}
				n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdCsumRSRequest, Sector: sector, BlockID: idSyncer, BlockSize: uint32(length), Digest: d})
			})
			continue
		}
		n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdRSDataRequest, Sector: sector, BlockID: idSyncer, BlockSize: uint32(length)})
	}
}

// receiveRSDataReply writes resync data on the sync target.
func (n *Node) receiveRSDataReply(p *protocol.Data) error {
	rs := &n.peer.rs
	q, ok := rs.pending[p.Sector]
	if !ok || int64(len(p.Payload)) != q.size {
		return n.protocolError("P_RS_DATA_REPLY for sector %d that was not requested", p.Sector)
	}
	n.stats.nr += uint64(len(p.Payload))
	if n.ldev == nil || n.ldev.detaching {
		// No disk to write it to: the source counts the blocks as failed
		// (DRBD answers P_NEG_ACK here too) instead of waiting for them.
		n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: p.Sector, BlockID: idSyncer, BlockSize: uint32(q.size)})
		n.rsRequestDone(q, false)
		return nil
	}
	l := n.ldev
	l.inFlight++
	off := int64(p.Sector) * 512
	q.writing = true
	n.submitDisk(DiskOp{Op: OpWrite, Offset: off, Length: q.size, Data: p.Payload}, func(err error, _ []byte) {
		l.inFlight--
		n.stats.dw += uint64(q.size)
		q.writing = false
		if q.orphan {
			// Its connection is gone (resyncClear kept the lock for us):
			// the bits stay set, the next resync redoes it.
			if q.lock != nil {
				n.unlockRange(q.lock)
				q.lock = nil
			}
			n.maybeFinishDetach()
			return
		}
		if n.peer == nil || !n.peer.socketsUp || n.peer.rs.pending[p.Sector] != q {
			// Connection gone: the bits stay set, the next resync redoes it.
			n.maybeFinishDetach()
			return
		}
		if err != nil {
			n.diskError("resync write", err)
			n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdNegAck, Sector: p.Sector, BlockID: idSyncer, BlockSize: uint32(q.size)})
			n.rsRequestDone(q, false)
		} else {
			n.setInSync(off, q.size)
			n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdRSWriteAck, Sector: p.Sector, BlockID: idSyncer, BlockSize: uint32(q.size)})
			n.rsRequestDone(q, true)
		}
		n.maybeFinishDetach()
	})
	return nil
}

// rsRequestDone ends a resync request on the target.
func (n *Node) rsRequestDone(q *rsReq, ok bool) {
	rs := &n.peer.rs
	delete(rs.pending, q.sector)
	rs.inFlightSect -= q.size / 512
	rs.sectIn += q.size / 512
	if !ok {
		first, last := blockRange(int64(q.sector)*512, q.size)
		rs.failed += last - first + 1
	} else {
		first, last := blockRange(int64(q.sector)*512, q.size)
		rs.doneBits += last - first + 1
	}
	if q.lock != nil {
		n.unlockRange(q.lock)
	}
	n.maybeResyncDone()
}

// receiveBlockReq serves the peer's read requests: application reads of a
// diskless or SyncTarget Primary, resync requests, checksum requests and
// verify requests.
func (n *Node) receiveBlockReq(p *protocol.BlockReq) error {
	size := int64(p.BlockSize)
	if size <= 0 || size > protocol.MaxBIOSize || size%512 != 0 {
		return n.protocolError("%#04x of %d bytes", p.Cmd, size)
	}
	if err := n.checkPeerRange(p.Sector, size); err != nil {
		return err
	}
	off := int64(p.Sector) * 512
	negReply := func(cmd protocol.Cmd) {
		n.sendAck(&protocol.BlockAck{Cmd: cmd, Sector: p.Sector, BlockID: p.BlockID, BlockSize: p.BlockSize})
	}
	switch p.Cmd {
	case protocol.CmdDataRequest:
		if n.st.Disk != UpToDate {
			negReply(protocol.CmdNegDReply)
			return nil
		}
	case protocol.CmdRSDataRequest, protocol.CmdCsumRSRequest:
		if n.st.Disk != UpToDate || n.ldev == nil {
			negReply(protocol.CmdNegRSDReply)
			return nil
		}
	case protocol.CmdOVRequest:
		if n.st.Conn == Connected && n.ldev != nil && n.st.Disk == UpToDate {
			n.beginVerifyTarget(p)
		}
		if n.st.Conn != VerifyT {
			negReply(protocol.CmdNegRSDReply)
			return nil
		}
	case protocol.CmdOVReply:
		return n.receiveOVReply(p)
	default:
		return n.protocolError("unexpected request %#04x", p.Cmd)
	}
	l := n.ldev
	if l == nil || l.detaching {
		negReply(protocol.CmdNegDReply)
		return nil
	}
	read := func() {
		if n.ldev != l || l.detaching {
			// Detached while the read waited for earlier peer writes.
			if p.Cmd == protocol.CmdDataRequest {
				negReply(protocol.CmdNegDReply)
			} else {
				negReply(protocol.CmdNegRSDReply)
			}
			return
		}
		l.inFlight++
		n.submitDisk(DiskOp{Op: OpRead, Offset: off, Length: size}, func(err error, data []byte) {
			l.inFlight--
			n.stats.dr += uint64(size)
			n.serveRead(p, off, size, err, data)
			n.maybeFinishDetach()
		})
	}
	if p.Cmd == protocol.CmdRSDataRequest || p.Cmd == protocol.CmdCsumRSRequest {
		// Do not read while an application write to the range is in
		// flight; hold new ones until the data is queued.
		n.afterPeerWrites(off, size, func() {
			lk := n.lockRange(off, size, lockResync, read)
			rs := &n.peer.rs
			if rs.pending == nil {
				rs.pending = map[uint64]*rsReq{}
			}
			srcKey := p.Sector | 1<<63
			rs.pending[srcKey] = &rsReq{sector: p.Sector, size: size, lock: lk}
		})
		return nil
	}
	n.afterPeerWrites(off, size, read)
	return nil
}

// serveRead answers a peer read request once our read completed.
func (n *Node) serveRead(p *protocol.BlockReq, off, size int64, err error, data []byte) {
	pr := n.peer
	srcKey := p.Sector | 1<<63
	if pr != nil && pr.rs.pending != nil {
		if q, ok := pr.rs.pending[srcKey]; ok {
			delete(pr.rs.pending, srcKey)
			defer n.unlockRange(q.lock)
		}
	}
	if pr == nil || !pr.socketsUp {
		return
	}
	if err != nil {
		n.diskError("read", err)
		cmd := protocol.CmdNegDReply
		if p.Cmd != protocol.CmdDataRequest {
			cmd = protocol.CmdNegRSDReply
		}
		n.sendAck(&protocol.BlockAck{Cmd: cmd, Sector: p.Sector, BlockID: p.BlockID, BlockSize: p.BlockSize})
		return
	}
	switch p.Cmd {
	case protocol.CmdDataRequest:
		n.stats.ns += uint64(size)
		n.send(DataStream, &protocol.Data{Cmd: protocol.CmdDataReply, Sector: p.Sector, BlockID: p.BlockID, Payload: data})
	case protocol.CmdRSDataRequest:
		n.stats.ns += uint64(size)
		n.send(DataStream, &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: p.Sector, BlockID: p.BlockID, Payload: data})
	case protocol.CmdCsumRSRequest:
		d, derr := Digest(n.cfg.CsumsAlg, data)
		if derr == nil && bytes.Equal(d, p.Digest) {
			n.setInSync(off, size)
			pr.rs.sameCsum += uint64(size / BlockSize)
			n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdRSIsInSync, Sector: p.Sector, BlockID: idInSync, BlockSize: p.BlockSize})
			n.maybeResyncDone()
			return
		}
		n.stats.ns += uint64(size)
		n.send(DataStream, &protocol.Data{Cmd: protocol.CmdRSDataReply, Sector: p.Sector, BlockID: p.BlockID, Payload: data})
	case protocol.CmdOVRequest:
		d, derr := Digest(n.cfg.VerifyAlg, data)
		if derr != nil {
			n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdNegRSDReply, Sector: p.Sector, BlockID: p.BlockID, BlockSize: p.BlockSize})
			return
		}
		n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdOVReply, Sector: p.Sector, BlockID: p.BlockID, BlockSize: p.BlockSize, Digest: d})
	}
}

// receiveResyncAck handles the meta-socket answers about resync blocks.
func (n *Node) receiveResyncAck(p *protocol.BlockAck) error {
	if err := n.checkPeerRange(p.Sector, int64(p.BlockSize)); err != nil {
		return err
	}
	off, size := int64(p.Sector)*512, int64(p.BlockSize)
	switch p.Cmd {
	case protocol.CmdRSWriteAck, protocol.CmdWriteAck:
		// Source: the target wrote the block.
		n.setInSync(off, size)
		if n.peer != nil {
			first, last := blockRange(off, size)
			n.peer.rs.doneBits += last - first + 1
		}
		n.maybeResyncDone()
	case protocol.CmdNegAck:
		if n.peer != nil {
			first, last := blockRange(off, size)
			n.peer.rs.failed += last - first + 1
		}
		n.maybeResyncDone()
	case protocol.CmdRSIsInSync:
		// Target: the checksums matched.
		q, ok := n.peer.rs.pending[p.Sector]
		if !ok {
			return n.protocolError("P_RS_IS_IN_SYNC for sector %d that was not requested", p.Sector)
		}
		n.setInSync(off, q.size)
		n.peer.rs.sameCsum += uint64(q.size / BlockSize)
		n.rsRequestDone(q, true)
	case protocol.CmdNegRSDReply, protocol.CmdRSCancel:
		if n.st.Conn == VerifyS {
			n.ovRequestDone(p.Sector, false)
			return nil
		}
		q, ok := n.peer.rs.pending[p.Sector]
		if !ok {
			return nil
		}
		n.rsRequestDone(q, p.Cmd == protocol.CmdRSCancel)
	case protocol.CmdOVResult:
		return n.receiveOVResult(p)
	}
	return nil
}

// ---- online verify ----

// StartVerify starts an online verify as VerifyS (drbdadm verify).
func (n *Node) StartVerify(done func(error)) {
	n.requestState(StateMask{Conn: true}, State{Conn: VerifyS}, func(err error) {
		if err == nil {
			n.beginVerifySource()
		}
		done(err)
	})
}

func (n *Node) beginVerifySource() {
	rs := &n.peer.rs
	rs.ovPos = 0
	rs.ovFound = 0
	blocks := (n.ldev.sizeSectors + sectorsPerBlock - 1) / sectorsPerBlock
	rs.ovLeft = blocks
	rs.ovTotal = blocks
	rs.total = blocks
	rs.startTick = n.peer.now
	rs.plan = make([]int64, max(n.cfg.CPlanAhead, 0))
	rs.planTotal, rs.inFlightSect, rs.sectIn = 0, 0, 0
	if rs.pending == nil {
		rs.pending = map[uint64]*rsReq{}
	}
	n.logf(LevelInfo, "Starting Online Verify from sector 0")
}

func (n *Node) beginVerifyTarget(p *protocol.BlockReq) {
	if err := n.changeState(StateMask{Conn: true}, State{Conn: VerifyT}, csHard); err != nil {
		return
	}
	rs := &n.peer.rs
	blocks := (n.ldev.sizeSectors + sectorsPerBlock - 1) / sectorsPerBlock
	rs.ovLeft, rs.ovTotal, rs.total, rs.ovFound = blocks, blocks, blocks, 0
	rs.startTick = n.peer.now
}

// makeVerifyRequests sends P_OV_REQUEST for the next blocks.
func (n *Node) makeVerifyRequests(blocks, maxInFlight int64) {
	rs := &n.peer.rs
	end := n.ldev.sizeSectors
	for blocks > 0 && rs.inFlightSect < maxInFlight && rs.ovPos < end {
		size := int64(BlockSize)
		if rem := int64(end-rs.ovPos) * 512; rem < size {
			size = rem
		}
		rs.pending[rs.ovPos] = &rsReq{sector: rs.ovPos, size: size}
		rs.inFlightSect += size / 512
		n.send(DataStream, &protocol.BlockReq{Cmd: protocol.CmdOVRequest, Sector: rs.ovPos, BlockID: idSyncer, BlockSize: uint32(size)})
		rs.ovPos += uint64(size / 512)
		blocks--
	}
}

// receiveOVReply compares the target's digest with ours (VerifyS).
func (n *Node) receiveOVReply(p *protocol.BlockReq) error {
	rs := &n.peer.rs
	q, ok := rs.pending[p.Sector]
	if !ok || n.st.Conn != VerifyS {
		return n.protocolError("P_OV_REPLY for sector %d that was not requested", p.Sector)
	}
	l := n.ldev
	l.inFlight++
	n.submitDisk(DiskOp{Op: OpRead, Offset: int64(p.Sector) * 512, Length: q.size}, func(err error, data []byte) {
		l.inFlight--
		defer n.maybeFinishDetach()
		if n.peer == nil || !n.peer.socketsUp || n.peer.rs.pending[p.Sector] != q {
			return
		}
		eq := false
		if err == nil {
			d, derr := Digest(n.cfg.VerifyAlg, data)
			eq = derr == nil && bytes.Equal(d, p.Digest)
		} else {
			n.diskError("read", err)
		}
		id := idInSync
		if !eq {
			id = idOutOfSync
		}
		n.sendAck(&protocol.BlockAck{Cmd: protocol.CmdOVResult, Sector: p.Sector, BlockID: id, BlockSize: uint32(q.size)})
		n.ovRequestDone(p.Sector, eq)
	})
	return nil
}

// ovRequestDone records one verified block on VerifyS.
func (n *Node) ovRequestDone(sector uint64, eq bool) {
	rs := &n.peer.rs
	q, ok := rs.pending[sector]
	if !ok {
		return
	}
	delete(rs.pending, sector)
	rs.inFlightSect -= q.size / 512
	rs.sectIn += q.size / 512
	if !eq {
		n.setOutOfSync(int64(sector)*512, q.size)
		rs.ovFound++
		n.logf(LevelWarn, "Out of sync: start=%d, size=%d (sectors)", sector, q.size/512)
	}
	if rs.ovLeft > 0 {
		rs.ovLeft--
	}
	rs.doneBits++
	if rs.ovLeft == 0 && len(rs.pending) == 0 {
		n.resyncFinished()
	}
}

// receiveOVResult records the verify source's verdict on VerifyT.
func (n *Node) receiveOVResult(p *protocol.BlockAck) error {
	if n.st.Conn != VerifyT {
		return nil
	}
	rs := &n.peer.rs
	if p.BlockID == idOutOfSync {
		if err := n.checkPeerRange(p.Sector, int64(p.BlockSize)); err != nil {
			return err
		}
		n.setOutOfSync(int64(p.Sector)*512, int64(p.BlockSize))
		rs.ovFound++
	}
	if rs.ovLeft > 0 {
		rs.ovLeft--
	}
	rs.doneBits++
	if rs.ovLeft == 0 {
		n.resyncFinished()
	}
	return nil
}

// ---- digests ----

// Digest computes a csums-alg / verify-alg digest by its kernel crypto
// name (md5, sha1, sha256, sha512, crc32c).
func Digest(alg string, data []byte) ([]byte, error) {
	switch alg {
	case "md5":
		s := md5.Sum(data)
		return s[:], nil
	case "sha1":
		s := sha1.Sum(data)
		return s[:], nil
	case "sha256":
		s := sha256.Sum256(data)
		return s[:], nil
	case "sha512":
		s := sha512.Sum512(data)
		return s[:], nil
	case "crc32c":
		// The kernel's crc32c shash: seed ~0, result inverted, little-endian.
		v := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, v)
		return b, nil
	}
	return nil, fmt.Errorf("replication: unsupported digest algorithm %q", alg)
}
