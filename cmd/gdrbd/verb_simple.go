package main

import "github.com/gdrbd/gdrbd/control"

// The verbs that are one request each, without options of their own.
func init() {
	simpleVerb("detach", "detach the backing disk (continue Diskless, served by the peer)", control.OpDetach)
	simpleVerb("disconnect", "drop the connection to the peer and stop reconnecting (StandAlone)", control.OpDisconnect)
	simpleVerb("secondary", "demote (refused while the NBD device is in use)", control.OpSecondary)
	simpleVerb("invalidate", "discard the local data: full resync from the peer", control.OpInvalidate)
	simpleVerb("invalidate-remote", "discard the peer's data: full resync to the peer", control.OpInvalidateRemote)
	simpleVerb("verify", "start an online verify against the peer (needs verify-alg)", control.OpVerify)
	simpleVerb("pause-sync", "pause the resync", control.OpPauseSync)
	simpleVerb("resume-sync", "resume a paused resync", control.OpResumeSync)
	simpleVerb("outdate", "mark the local data Outdated", control.OpOutdate)
}
