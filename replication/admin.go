package replication

import (
	"errors"
	"fmt"
)

// Admin commands (drbdadm verbs). Each takes a done callback that the
// node calls exactly once with the result, possibly during a later Step
// when the peer must agree first. done must not call back into the Node.

// ErrConnectedNetConf is DRBD's ERR_CONNECTED ("Device has a net-config
// (use disconnect first)").
var ErrConnectedNetConf = errors.New("replication: device has a net-config (use disconnect first)")

// Primary promotes this node (drbdadm primary [--force]), following
// DRBD's drbd_set_role: with force, Inconsistent or Outdated data is
// declared UpToDate; a promotion without a connected peer starts a new
// data generation so the peer resyncs only what changes.
func (n *Node) Primary(force bool, done func(error)) {
	n.tryPrimary(force, 0, StateMask{Role: true}, State{Role: RolePrimary}, false, done)
}

const maxRoleTries = 4

func (n *Node) tryPrimary(force bool, try int, mask StateMask, val State, forced bool, done func(error)) {
	if n.st.Role == RolePrimary && !mask.Disk && !mask.PDsk {
		done(nil)
		return
	}
	n.requestState(mask, val, func(err error) {
		if err == nil {
			n.promoted(forced)
			done(nil)
			return
		}
		if try+1 >= maxRoleTries {
			done(err)
			return
		}
		switch {
		case err == ErrNoUpToDateDisk && force && n.st.Disk < UpToDate && n.st.Disk >= Inconsistent && !mask.Disk:
			mask.Disk, val.Disk = true, UpToDate
			n.tryPrimary(force, try+1, mask, val, true, done)
			return
		case err == ErrNoUpToDateDisk && n.st.Disk == Consistent && !mask.PDsk:
			n.tryOutdatePeer(func(ok bool) {
				if ok {
					mask.Disk, val.Disk = true, UpToDate
				}
				n.tryPrimary(force, try+1, mask, val, forced, done)
			})
			return
		case err == ErrPrimaryNop && !mask.PDsk:
			n.tryOutdatePeer(func(ok bool) {
				if !ok && force {
					n.logf(LevelWarn, "Forced into split brain situation!")
					mask.PDsk, val.PDsk = true, Outdated
				}
				n.tryPrimary(force, try+1, mask, val, forced, done)
			})
			return
		}
		done(err)
	})
}

// promoted finishes a promotion (the tail of DRBD's drbd_set_role).
func (n *Node) promoted(forced bool) {
	if forced {
		n.logf(LevelWarn, "Forced to consider local data as UpToDate!")
	}
	n.discardMyData = false
	if l := n.ldev; l != nil {
		if ((n.st.Conn < Connected || n.st.PDsk <= Failed) && l.uuids[uiBitmap] == 0) || forced {
			n.newCurrentUUID()
		}
		l.uuids[uiCurrent] |= 1
	}
	if n.st.Conn >= WFReportParams {
		if forced {
			n.sendUUIDs()
		}
		n.sendState()
	}
	n.updateMDFlags()
	n.writeSuperblock(nil)
}

// Secondary demotes this node (drbdadm secondary). It is refused while
// the device is open ("Device is held open by someone") and while
// application requests are in flight: a write still waiting for its
// activity log or a range lock would reach the peer after we are
// Secondary, when the peer may already be Primary and writing the same
// blocks (DRBD's drbd_set_role waits for ap_pending_cnt to reach 0; the
// driver fences and drains its export first).
func (n *Node) Secondary(done func(error)) {
	if n.st.Role == RoleSecondary {
		done(nil)
		return
	}
	if n.stats.ap > 0 {
		done(fmt.Errorf("%w: %d application requests in flight", ErrDeviceInUse, n.stats.ap))
		return
	}
	n.requestState(StateMask{Role: true}, State{Role: RoleSecondary}, func(err error) {
		if err != nil {
			done(err)
			return
		}
		if l := n.ldev; l != nil {
			l.uuids[uiCurrent] &^= 1
		}
		if n.st.Conn >= WFReportParams {
			n.sendState()
		}
		n.updateMDFlags()
		if n.ldev != nil {
			n.writeSuperblock(done)
			return
		}
		done(nil)
	})
}

// NewCurrentUUID starts a new data generation (drbdadm new-current-uuid).
// With clearBitmap on a connected pair of fresh disks it skips the initial
// sync: both sides become UpToDate without copying anything.
func (n *Node) NewCurrentUUID(clearBitmap bool, done func(error)) {
	l := n.ldev
	if l == nil {
		done(ErrNotAttached)
		return
	}
	skip := false
	if n.st.Conn == Connected && n.agreedVersion() >= 90 && l.uuids[uiCurrent] == uuidJustCreated && clearBitmap {
		n.logf(LevelInfo, "Preparing to skip initial sync")
		skip = true
	} else if n.st.Conn != StandAlone {
		done(ErrConnectedNetConf)
		return
	}
	n.setBitmapUUID(0)
	n.newCurrentUUID()
	if clearBitmap {
		l.bm.ClearAll()
		l.writeAllBitmap(n, nil)
		if skip {
			n.sendUUIDsWith(8)
			l.uuids[uiBitmap] = 0
			n.logf(LevelInfo, "cleared bitmap UUID %s", l.uuids)
			_ = n.changeState(StateMask{Disk: true, PDsk: true}, State{Disk: UpToDate, PDsk: UpToDate}, csHard)
		}
	}
	n.writeSuperblock(done)
}

// Invalidate discards the local data and resyncs all of it from the peer
// (drbdadm invalidate).
func (n *Node) Invalidate(done func(error)) {
	if n.ldev == nil {
		done(ErrIsDiskless)
		return
	}
	if n.st.Conn < Connected {
		// Not connected: mark everything out of sync, Inconsistent.
		if err := n.changeState(StateMask{Disk: true}, State{Disk: Inconsistent}, 0); err != nil {
			done(err)
			return
		}
		n.ldev.bm.SetAll()
		n.ldev.writeAllBitmap(n, nil)
		n.writeSuperblock(done)
		return
	}
	n.startFullSync(StartingSyncT, done)
}

// InvalidateRemote resyncs all data to the peer (drbdadm invalidate-remote).
func (n *Node) InvalidateRemote(done func(error)) {
	if n.ldev == nil {
		done(ErrIsDiskless)
		return
	}
	if n.st.Conn < Connected {
		if err := n.changeState(StateMask{PDsk: true}, State{PDsk: Inconsistent}, 0); err != nil {
			done(err)
			return
		}
		n.ldev.bm.SetAll()
		n.ldev.writeAllBitmap(n, nil)
		n.writeSuperblock(done)
		return
	}
	n.startFullSync(StartingSyncS, done)
}

// startFullSync asks for StartingSyncS/T (cluster-wide: the peer enters
// the mirror state); both sides then set and write every bit and go on as
// DRBD's abw_start_sync does (see afterStateChange).
func (n *Node) startFullSync(c ConnState, done func(error)) {
	n.requestState(StateMask{Conn: true}, State{Conn: c}, done)
}

// startingSync runs on both nodes when they enter StartingSyncS/T: every
// bit set and written, then the target waits for the sync UUID and the
// source starts the resync (which sends it).
func (n *Node) startingSync(c ConnState) {
	l := n.ldev
	if l == nil {
		return
	}
	l.bm.SetAll()
	l.writeAllBitmap(n, func(err error) {
		if n.st.Conn != c {
			return
		}
		if err != nil {
			n.logf(LevelError, "Writing the bitmap failed not starting resync.")
			_ = n.changeState(StateMask{Conn: true}, State{Conn: Connected}, csHard)
			return
		}
		if c == StartingSyncT {
			_ = n.changeState(StateMask{Conn: true}, State{Conn: WFSyncUUID}, csHard)
			return
		}
		n.startResync(SyncSource)
	})
}

// PauseSync sets the user sync-pause bit (drbdadm pause-sync).
func (n *Node) PauseSync() error {
	if n.st.UserISP {
		return errors.New("replication: resync already paused")
	}
	return n.changeState(StateMask{UserISP: true}, State{UserISP: true}, 0)
}

// ResumeSync clears the user sync-pause bit (drbdadm resume-sync).
func (n *Node) ResumeSync() error {
	if !n.st.UserISP {
		return errors.New("replication: resync is not paused by the user")
	}
	return n.changeState(StateMask{UserISP: true}, State{UserISP: false}, 0)
}

// Outdate marks the local data Outdated (drbdadm outdate).
func (n *Node) Outdate() error {
	if n.ldev == nil {
		return ErrIsDiskless
	}
	if err := n.changeState(StateMask{Disk: true}, State{Disk: Outdated}, 0); err != nil {
		return err
	}
	n.writeSuperblock(nil)
	return nil
}

// String summarises the node for logs.
func (n *Node) String() string {
	return fmt.Sprintf("%s/%d %s", n.cfg.Resource, n.cfg.Volume, n.st)
}
