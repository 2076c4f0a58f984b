package config

import "fmt"

// The enums below take their order from the kernel's enums in linux/drbd.h
// (value = kernel value + 1, so the zero value stays invalid), which lets
// the replication core put them on the wire with Wire(). Their spellings
// are drbdsetup's (config_flags.c). All are plain values, safe for
// concurrent use.

var (
	protocolNames      = []string{"A", "B", "C"}
	onIOErrorNames     = []string{"pass_on", "call-local-io-error", "detach"}
	fencingNames       = []string{"dont-care", "resource-only", "resource-and-stonith"}
	asbNames           = []string{"disconnect", "discard-younger-primary", "discard-older-primary", "discard-zero-changes", "discard-least-changes", "discard-local", "discard-remote", "consensus", "discard-secondary", "call-pri-lost-after-sb", "violently-as0p"}
	asb0Names          = []string{"disconnect", "discard-younger-primary", "discard-older-primary", "discard-zero-changes", "discard-least-changes", "discard-local", "discard-remote"}
	asb1Names          = []string{"disconnect", "", "", "", "", "", "", "consensus", "discard-secondary", "call-pri-lost-after-sb", "violently-as0p"}
	asb2Names          = []string{"disconnect", "", "", "", "", "", "", "", "", "call-pri-lost-after-sb", "violently-as0p"}
	rrConflictNames    = []string{"disconnect", "", "", "", "", "", "", "", "", "call-pri-lost", "violently"}
	onCongestionNames  = []string{"block", "pull-ahead", "disconnect"}
	readBalancingNames = []string{"prefer-local", "prefer-remote", "round-robin", "least-pending", "when-congested-remote", "32K-striping", "64K-striping", "128K-striping", "256K-striping", "512K-striping", "1M-striping"}
	onNoDataNames      = []string{"io-error", "suspend-io"}
)

func enumString(names []string, v int, typ string) string {
	if v >= 1 && v <= len(names) && names[v-1] != "" {
		return names[v-1]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// Protocol is the replication protocol; the values are the wire's
// (DRBD_PROT_A = 1).
type Protocol int

const (
	ProtocolA Protocol = iota + 1 // complete when locally written and sent
	ProtocolB                     // ... and received by the peer
	ProtocolC                     // ... and written by the peer (default)
)

func (p Protocol) String() string { return enumString(protocolNames, int(p), "Protocol") }

// Wire is the value P_PROTOCOL carries.
func (p Protocol) Wire() uint32 { return uint32(p) }

// OnIOError is the disk option on-io-error.
type OnIOError int

const (
	IOErrorPassOn           OnIOError = iota + 1 // report the error upwards
	IOErrorCallLocalIOError                      // run the local-io-error handler
	IOErrorDetach                                // go Diskless, serve I/O from the peer (default)
)

func (e OnIOError) String() string { return enumString(onIOErrorNames, int(e), "OnIOError") }

// Fencing is the disk option fencing.
type Fencing int

const (
	FencingDontCare           Fencing = iota + 1 // default
	FencingResourceOnly                          // call fence-peer when the peer is lost while Primary
	FencingResourceAndStonith                    // ... and freeze I/O until it returns
)

func (f Fencing) String() string { return enumString(fencingNames, int(f), "Fencing") }

// AfterSBPolicy is an automatic split-brain recovery policy (after-sb-0pri,
// after-sb-1pri, after-sb-2pri); each option allows a subset.
type AfterSBPolicy int

const (
	ASBDisconnect            AfterSBPolicy = iota + 1 // default everywhere
	ASBDiscardYoungerPrimary                          // 0pri
	ASBDiscardOlderPrimary                            // 0pri
	ASBDiscardZeroChanges                             // 0pri
	ASBDiscardLeastChanges                            // 0pri
	ASBDiscardLocal                                   // 0pri (also discard-node-<this node>)
	ASBDiscardRemote                                  // 0pri (also discard-node-<peer>)
	ASBConsensus                                      // 1pri
	ASBDiscardSecondary                               // 1pri
	ASBCallPriLostAfterSB                             // 1pri, 2pri
	ASBViolentlyAS0P                                  // 1pri, 2pri
)

func (p AfterSBPolicy) String() string { return enumString(asbNames, int(p), "AfterSBPolicy") }

// Wire is the kernel's enum drbd_after_sb_p value P_PROTOCOL carries.
func (p AfterSBPolicy) Wire() uint32 { return uint32(p - 1) }

// RRConflictPolicy is the net option rr-conflict. Its values follow the
// kernel's enum drbd_after_sb_p, which rr-conflict shares.
type RRConflictPolicy int

const (
	RRConflictDisconnect  RRConflictPolicy = 1  // default
	RRConflictCallPriLost RRConflictPolicy = 10 // run the pri-lost handler
	RRConflictViolently   RRConflictPolicy = 11 // resync anyway
)

func (p RRConflictPolicy) String() string {
	return enumString(rrConflictNames, int(p), "RRConflictPolicy")
}

// Wire is the kernel's value P_PROTOCOL carries.
func (p RRConflictPolicy) Wire() uint32 { return uint32(p - 1) }

// OnCongestion is the net option on-congestion (protocol A only).
type OnCongestion int

const (
	CongestionBlock      OnCongestion = iota + 1 // default
	CongestionPullAhead                          // go Ahead/Behind
	CongestionDisconnect                         // drop the connection
)

func (c OnCongestion) String() string { return enumString(onCongestionNames, int(c), "OnCongestion") }

// ReadBalancing is the disk option read-balancing.
type ReadBalancing int

const (
	ReadPreferLocal ReadBalancing = iota + 1 // default
	ReadPreferRemote
	ReadRoundRobin
	ReadLeastPending
	ReadWhenCongestedRemote
	Read32KStriping
	Read64KStriping
	Read128KStriping
	Read256KStriping
	Read512KStriping
	Read1MStriping
)

func (r ReadBalancing) String() string {
	return enumString(readBalancingNames, int(r), "ReadBalancing")
}

// OnNoData is the resource option on-no-data-accessible.
type OnNoData int

const (
	OnNoDataIOError   OnNoData = iota + 1 // fail I/O (default)
	OnNoDataSuspendIO                     // freeze I/O until data is reachable again
)

func (o OnNoData) String() string { return enumString(onNoDataNames, int(o), "OnNoData") }

// UsageCount is the global usage-count setting.
type UsageCount int

const (
	UsageCountAsk UsageCount = iota + 1 // default
	UsageCountYes
	UsageCountNo
)

func (u UsageCount) String() string {
	return enumString([]string{"ask", "yes", "no"}, int(u), "UsageCount")
}
